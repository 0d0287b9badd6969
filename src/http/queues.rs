//! The queue API: list queues with their figures, change a queue's global limit,
//! pause and resume it. Settings live in the database, so every worker process sees
//! them; a change reaches workers at once by NOTIFY, and at their next poll without.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use super::{AppState, only};
use crate::store::{self, QueueChange, QueueSettings, QueueStats};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/queues").route(web::get().to(list)).default_service(only("GET")))
        .service(
            web::resource("/queues/{name}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .default_service(only("GET, PATCH")),
        )
        .service(
            web::resource("/queues/{name}/pause").route(web::post().to(pause)).default_service(only("POST")),
        )
        .service(
            web::resource("/queues/{name}/resume")
                .route(web::post().to(resume))
                .default_service(only("POST")),
        );
}

/// Every known queue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueStats>,
}

/// `PATCH /api/queues/{name}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQueue {
    /// At most this many of the queue's tasks run at once across all workers, 1 to
    /// 1000000; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, required = true, minimum = 1, maximum = 1000000)]
    pub max_running: Option<Option<i64>>,
}

/// Tells a field given as `null` (`Some(None)`) from a field left out (`None`), and
/// names the field when its value is no whole number.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    use serde::de::Error as _;
    super::validate::whole_number(d).map(Some).map_err(|e| D::Error::custom(format!("max_running: {e}")))
}

/// The largest `max_running`, as the schema's CHECK has it.
const MAX_RUNNING: i64 = 1_000_000;

fn queue_name(raw: &str) -> Result<&str, ApiError> {
    store::check_queue_name(raw).map_err(ApiError::BadRequest)?;
    Ok(raw)
}

/// Every known queue with its counts, shape, throughput, settings and workers.
#[utoipa::path(get, path = "/api/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let queues = store::stats(&*state.store).await?.queues;
    Ok(HttpResponse::Ok().json(QueueList { queues }))
}

/// One queue.
#[utoipa::path(get, path = "/api/queues/{name}", tag = "queues",
    params(("name" = String, Path, pattern = "^[a-z0-9_.-]{1,64}$", description = "Queue name")),
    responses((status = 200, body = QueueStats), (status = 400, body = super::tasks::ErrorBody),
              (status = 404, body = super::tasks::ErrorBody)))]
pub(super) async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&name)?;
    let queues = store::stats(&*state.store).await?.queues;
    let queue = queues.into_iter().find(|q| q.name == name).ok_or(ApiError::NotFound("queue not found"))?;
    Ok(HttpResponse::Ok().json(queue))
}

/// Set or remove a queue's global limit; an unknown queue is created.
#[utoipa::path(patch, path = "/api/queues/{name}", tag = "queues", request_body = UpdateQueue,
    params(("name" = String, Path, pattern = "^[a-z0-9_.-]{1,64}$", description = "Queue name")),
    responses((status = 200, body = QueueSettings), (status = 400, body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<UpdateQueue>,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&name)?;
    let Some(max_running) = body.into_inner().max_running else {
        return Err(ApiError::BadRequest("nothing to change: give max_running (a number, or null)".into()));
    };
    let max_running = match max_running {
        None => None,
        Some(n) if (1..=MAX_RUNNING).contains(&n) => Some(n as i32),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "max_running must be from 1 to {MAX_RUNNING} (or null for no limit), got {n}"
            )));
        }
    };
    let change = QueueChange { max_running: Some(max_running), paused: None };
    Ok(HttpResponse::Ok().json(state.store.change_queue(name, change).await?))
}

/// Pause a queue: no task of it starts until it is resumed; running ones finish. An
/// unknown queue is created paused.
#[utoipa::path(post, path = "/api/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, pattern = "^[a-z0-9_.-]{1,64}$", description = "Queue name")),
    responses((status = 200, body = QueueSettings), (status = 400, body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn pause(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true).await
}

/// Resume a paused queue.
#[utoipa::path(post, path = "/api/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, pattern = "^[a-z0-9_.-]{1,64}$", description = "Queue name")),
    responses((status = 200, body = QueueSettings), (status = 400, body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn resume(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    let name = queue_name(name)?;
    let settings: QueueSettings =
        state.store.change_queue(name, QueueChange { paused: Some(paused), max_running: None }).await?;
    Ok(HttpResponse::Ok().json(settings))
}
