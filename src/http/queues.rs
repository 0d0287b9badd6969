//! The queue API: list queues with their figures, change a queue's limits (running,
//! rate, per key) and a task type's, pause and resume a queue. Settings live in the database, so every worker process sees
//! them; a change reaches workers at once by NOTIFY, and at their next poll without.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use super::{AppState, only};
use crate::store::flow::RateLimit;
use crate::store::{self, QueueChange, QueueSettings, QueueStats, TypeChange, TypeSettings};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/queues").route(web::get().to(list)).default_service(only("GET")))
        .service(
            web::resource("/queues/{name}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .default_service(only("GET, PATCH")),
        )
        .service(
            web::resource("/task-types/{type}")
                .route(web::patch().to(update_type))
                .default_service(only("PATCH")),
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

/// `PATCH /api/queues/{name}`: each field left out stays as it is; `null` removes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQueue {
    /// At most this many of the queue's tasks run at once across all workers, 1 to
    /// 1000000.
    #[serde(default, deserialize_with = "max_running")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub max_running: Option<Option<i64>>,
    /// At most `max` of the queue's tasks start per `per`, spaced evenly.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::store::flow::RateLimitJson>)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Tasks of the queue with one `concurrency_key` that may run at once, 1 to 1000000
    /// (1 when unset).
    #[serde(default, deserialize_with = "max_per_key")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub max_per_key: Option<Option<i64>>,
}

/// `PATCH /api/task-types/{type}`, as [`UpdateQueue`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateType {
    /// At most `max` tasks of the type start per `per`, whatever their queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::store::flow::RateLimitJson>)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Overrides the queue's `max_per_key` for tasks of this type, 1 to 1000000.
    #[serde(default, deserialize_with = "max_per_key")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub max_per_key: Option<Option<i64>>,
}

/// A request body read into `T` only if it is a JSON object: serde would read a struct
/// from an array of its fields, in order, too.
fn object<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest("invalid JSON body: expected a JSON object".into()));
    }
    serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Tells a field given as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// [`present`] for a count, naming the field when its value is no whole number.
fn present_count<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<Option<i64>>, D::Error> {
    use serde::de::Error as _;
    super::validate::whole_number(d).map(Some).map_err(|e| D::Error::custom(format!("{field}: {e}")))
}

fn max_running<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    present_count(d, "max_running")
}

fn max_per_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    present_count(d, "max_per_key")
}

/// The largest `max_running` and `max_per_key`, as the schema's CHECKs have them.
const MAX_COUNT: i64 = 1_000_000;

/// A count limit given in a request: from 1 to [`MAX_COUNT`], or `null` for none.
fn count_limit(field: &str, value: Option<Option<i64>>) -> Result<Option<Option<i32>>, ApiError> {
    value
        .map(|limit| match limit {
            None => Ok(None),
            Some(n) if (1..=MAX_COUNT).contains(&n) => Ok(Some(n as i32)),
            Some(n) => Err(ApiError::BadRequest(format!(
                "{field} must be from 1 to {MAX_COUNT} (or null to remove it), got {n}"
            ))),
        })
        .transpose()
}

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

/// Change a queue's limits (`max_running`, `rate_limit`, `max_per_key`); an unknown
/// queue is created.
#[utoipa::path(patch, path = "/api/queues/{name}", tag = "queues", request_body = UpdateQueue,
    params(("name" = String, Path, pattern = "^[a-z0-9_.-]{1,64}$", description = "Queue name")),
    responses((status = 200, body = QueueSettings), (status = 400, body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let name = queue_name(&name)?;
    let body: UpdateQueue = object(body.into_inner())?;
    let change = QueueChange {
        paused: None,
        max_running: count_limit("max_running", body.max_running)?,
        rate_limit: body.rate_limit,
        max_per_key: count_limit("max_per_key", body.max_per_key)?,
    };
    if change == QueueChange::default() {
        return Err(ApiError::BadRequest(
            "nothing to change: give max_running, rate_limit or max_per_key (a value, or null)".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(state.store.change_queue(name, change).await?))
}

/// Change a task type's flow settings (`rate_limit`, `max_per_key`), which apply in
/// every queue. The type need not be registered: workers elsewhere may serve it.
#[utoipa::path(patch, path = "/api/task-types/{type}", tag = "queues", request_body = UpdateType,
    params(("type" = String, Path, description = "Task type (case-insensitive)")),
    responses((status = 200, body = TypeSettings), (status = 400, body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn update_type(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // Checked as a task's `type` is: 1 to 255 characters, not all whitespace, no NUL.
    let name = super::validate::text("type", Some(name.into_inner()), true)?
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let body: UpdateType = object(body.into_inner())?;
    let change = TypeChange {
        rate_limit: body.rate_limit,
        max_per_key: count_limit("max_per_key", body.max_per_key)?,
    };
    if change == TypeChange::default() {
        return Err(ApiError::BadRequest(
            "nothing to change: give rate_limit or max_per_key (a value, or null)".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(state.store.change_type(&name, change).await?))
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
        state.store.change_queue(name, QueueChange { paused: Some(paused), ..Default::default() }).await?;
    Ok(HttpResponse::Ok().json(settings))
}
