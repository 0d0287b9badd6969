//! The HTTP side: the JSON API under `/api`, the live stream, the dashboard, and the
//! operational endpoints. It depends on the store and on the StatsBroadcaster's
//! address, never on the worker.

mod auth;
mod body;
mod bulk;
mod dashboard;
pub mod error;
mod import;
mod openapi;
mod ops;
mod queues;
pub mod schedules;
mod search;
mod stream;
mod tasks;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use actix::Addr;
use actix_web::dev::Service;
use actix_web::{App, HttpResponse, middleware, web};
use tracing_actix_web::TracingLogger;

use crate::actors::StatsBroadcaster;
use crate::handlers::Registry;
use crate::metrics;
use crate::store::{CreateBatcher, Store};

/// The largest JSON body of a single request: a 1 MiB payload plus its envelope.
const JSON_LIMIT: usize = validate::MAX_PAYLOAD_BYTES + 64 * 1024;
/// The largest batch body.
const BATCH_JSON_LIMIT: usize = 32 * 1024 * 1024;

/// What request handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Inserts `POST /api/tasks` requests in shared transactions (group commit).
    pub creator: CreateBatcher,
    pub registry: Arc<Registry>,
    /// `None` in a worker's ops listener, which serves no stream.
    pub broadcaster: Option<Addr<StatsBroadcaster>>,
    pub api_tokens: Vec<String>,
    /// `timeout_seconds` of tasks created without one (`WORKER_TIMEOUT`).
    pub default_timeout: i64,
    /// Set when shutdown begins; `/readyz` answers 503 from then on.
    pub shutting_down: Arc<AtomicBool>,
}

/// The answer of an API resource to a method it does not serve: 405 with the methods
/// it does in `Allow`.
fn only(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .json(serde_json::json!({ "error": format!("method not allowed; allowed: {allow}") }))
    })
}

/// Builds the actix-web `App` for the server role (`full`) or a worker's ops listener.
pub fn app(
    state: web::Data<AppState>,
    full: bool,
    cors_origins: Vec<String>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors = if cors_origins.is_empty() {
        actix_cors::Cors::default().block_on_origin_mismatch(false)
    } else {
        cors_origins
            .iter()
            .fold(actix_cors::Cors::default(), |cors, origin| cors.allowed_origin(origin))
            .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
            .allowed_headers([actix_web::http::header::AUTHORIZATION, actix_web::http::header::CONTENT_TYPE])
            .max_age(3600)
    };
    App::new()
        .app_data(state.clone())
        .wrap(middleware::from_fn(auth::require_token))
        .wrap(middleware::Condition::new(!cors_origins.is_empty(), cors))
        .wrap_fn(|req, srv| {
            let started = Instant::now();
            let method = req.method().to_string();
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            let response = srv.call(req);
            async move {
                let response = response.await?;
                metrics::http_request(&method, &route, response.status().as_u16(), started.elapsed());
                Ok(response)
            }
        })
        .wrap(TracingLogger::default())
        .wrap(middleware::from_fn(body::drain_unread_body))
        .app_data(web::JsonConfig::default().limit(JSON_LIMIT).error_handler(error::json_error))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .configure(ops::probes)
        .configure(move |cfg| {
            if full {
                cfg.configure(dashboard::routes).service(
                    web::scope("/api")
                        .service(
                            web::resource("/stats")
                                .route(web::get().to(ops::stats))
                                .default_service(only("GET")),
                        )
                        .service(
                            web::resource("/openapi.json")
                                .route(web::get().to(openapi::serve))
                                .default_service(only("GET")),
                        )
                        .service(
                            web::resource("/tasks/stream")
                                .route(web::get().to(stream::stream))
                                .default_service(only("GET")),
                        )
                        .service(
                            web::resource("/tasks/batch")
                                .app_data(
                                    web::JsonConfig::default()
                                        .limit(BATCH_JSON_LIMIT)
                                        .error_handler(error::json_error),
                                )
                                .route(web::post().to(tasks::create_batch))
                                .default_service(only("POST")),
                        )
                        .service(
                            web::resource("/tasks/import")
                                .route(web::post().to(import::import))
                                .default_service(only("POST")),
                        )
                        .configure(bulk::routes)
                        .configure(tasks::routes)
                        .configure(queues::routes)
                        .configure(schedules::routes),
                );
            }
        })
        .default_service(web::to(|| async {
            HttpResponse::NotFound().json(serde_json::json!({ "error": "not found" }))
        }))
}
