//! Operational endpoints: health and probes, statistics, and Prometheus metrics.
//!
//! `/livez` answers as long as the process serves HTTP; `/readyz` also needs the
//! database and a process that is not shutting down, so Kubernetes stops routing to a
//! pod as soon as it begins to stop. `/health` is TaskQueue-Go's.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::{metrics, store};

/// Routes every process serves, worker-only ones included.
pub fn probes(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(livez))
        .route("/readyz", web::get().to(readyz))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(prometheus));
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.shutting_down.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting_down" }));
    }
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready", "database": "connected" })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not_ready", "database": "disconnected" })),
    }
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "healthy", "database": "connected" })),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unhealthy", "database": "disconnected" })),
    }
}

/// Refreshes the queue-shape gauges (one stats query per scrape), then renders.
async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    match store::stats(&*state.store).await {
        Ok(stats) => metrics::queue_shape(&stats),
        Err(error) => tracing::warn!(error = %error, "metrics scrape could not read the queue shape"),
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics::handle().render())
}

/// Queue statistics: the original seven fields and more.
#[utoipa::path(get, path = "/api/stats", tag = "stats",
    responses((status = 200, body = crate::store::Stats), (status = 503, body = super::tasks::ErrorBody)))]
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    metrics::stats_query();
    Ok(HttpResponse::Ok().json(store::stats(&*state.store).await?))
}
