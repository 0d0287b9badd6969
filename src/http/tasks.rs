//! The task API: create (one or a batch), read, list, history, cancel, retry, types.
//! (`POST /tasks/batch` is mounted by the caller, with a larger body limit.)

use actix_web::{HttpResponse, web};
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::search::TaskQuery;
use super::validate::{CancelRequest, CreateBatch, CreateTask, MAX_BATCH};
use super::{AppState, only};
use crate::metrics;
use crate::store::{HistoryEvent, Task, Transition};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tasks")
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(only("GET, POST")),
    )
    .service(web::resource("/tasks/{id}").route(web::get().to(get)).default_service(only("GET")))
    .service(web::resource("/tasks/{id}/history").route(web::get().to(history)).default_service(only("GET")))
    .service(web::resource("/tasks/{id}/cancel").route(web::post().to(cancel)).default_service(only("POST")))
    .service(web::resource("/tasks/{id}/retry").route(web::post().to(retry)).default_service(only("POST")))
    .service(web::resource("/task-types").route(web::get().to(task_types)).default_service(only("GET")));
}

/// Malformed ids are answered like unknown ones: 404.
fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("task not found"))
}

/// Create a task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 201, description = "Created", body = Task),
              (status = 200, description = "An earlier task with the same idempotency key", body = Task),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 413, description = "Payload too large", body = ErrorBody),
              (status = 503, description = "Database unavailable", body = ErrorBody)))]
pub(super) async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateTask>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().validate(&state.registry, state.default_timeout, "")?;
    let created = state.creator.create(new).await?;
    if created.inserted {
        metrics::task_created(&created.task.task_type);
        Ok(HttpResponse::Created().json(created.task))
    } else {
        Ok(HttpResponse::Ok().json(created.task))
    }
}

/// A page of tasks, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, naming the field or the problem.
    pub error: String,
}

/// The registered task types, and every type's flow settings.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskTypes {
    pub types: Vec<String>,
    /// The types with a rate limit or a key limit (`PATCH /api/task-types/{type}`),
    /// registered here or not.
    pub settings: Vec<crate::store::TypeSettings>,
}

/// Create up to 1000 tasks in one transaction.
#[utoipa::path(post, path = "/api/tasks/batch", tag = "tasks", request_body = CreateBatch,
    responses((status = 201, description = "All created", body = TaskList),
              (status = 400, description = "Invalid request; nothing created", body = ErrorBody),
              (status = 503, description = "Database unavailable", body = ErrorBody)))]
pub(super) async fn create_batch(
    state: web::Data<AppState>,
    body: web::Json<CreateBatch>,
) -> Result<HttpResponse, ApiError> {
    let requests = body.into_inner().tasks;
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "tasks must hold from 1 to {MAX_BATCH} tasks, got {}",
            requests.len()
        )));
    }
    let tasks = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| request.validate(&state.registry, state.default_timeout, &format!("tasks[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let created = state.store.create_tasks(&tasks).await?;
    for task in created.iter().filter(|c| c.inserted) {
        metrics::task_created(&task.task.task_type);
    }
    Ok(HttpResponse::Created()
        .json(TaskList { tasks: created.into_iter().map(|c| c.task).collect(), next_cursor: None }))
}

/// One task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskDetail), (status = 404, description = "Unknown or malformed id", body = ErrorBody)))]
pub(super) async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get_task(task_id(&id)?).await?.ok_or(ApiError::NotFound("task not found"))?;
    let held = state.store.hold_reason(&task).await?;
    Ok(HttpResponse::Ok().json(TaskDetail { task, held }))
}

/// A task, and why it waits if its limits hold it back.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    /// Set on a runnable queued task that a limit holds back: its queue is paused or
    /// full, a rate limit has no slot yet, or its concurrency key is busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::store::flow::HoldReason>,
}

/// A task's history, oldest first.
#[utoipa::path(get, path = "/api/tasks/{id}/history", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Vec<HistoryEvent>), (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let events = state.store.history(id).await?;
    if events.is_empty() && state.store.get_task(id).await?.is_none() {
        return Err(ApiError::NotFound("task not found"));
    }
    Ok(HttpResponse::Ok().json(events))
}

/// Tasks, newest first, one page at a time, narrowed by any of the search keys.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, body = TaskList), (status = 400, description = "Invalid search, naming the key", body = ErrorBody)))]
pub(super) async fn list(
    state: web::Data<AppState>,
    query: web::Query<TaskQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.into_inner().into_filter(&state.registry)?;
    let tasks = state.store.list_tasks(&filter).await?;
    let next_cursor =
        (tasks.len() as u32 == filter.limit).then(|| tasks.last().map(|t| t.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(TaskList { tasks, next_cursor }))
}

fn transition(outcome: Transition, verb: &str, allowed: &str) -> Result<HttpResponse, ApiError> {
    match outcome {
        Transition::Done(task) => Ok(HttpResponse::Ok().json(task)),
        Transition::NotFound => Err(ApiError::NotFound("task not found")),
        Transition::Conflict(status) => Err(ApiError::Conflict {
            message: format!("task is {}; only {allowed} tasks can be {verb}", status.as_str()),
            status: status.as_str(),
        }),
    }
}

/// Cancel a task: a queued one at once; a running one is stopped by its worker (the
/// answer shows it still running, with `cancel_requested_at` set) and ends `cancelled`.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    request_body(content = Option<CancelRequest>, description = "Optional: why, recorded with the cancel"),
    responses((status = 200, description = "Cancelled (queued), or cancel requested (running)", body = Task),
              (status = 400, description = "Invalid body", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The task is neither queued nor running", body = ErrorBody),
              (status = 413, description = "Body too large", body = ErrorBody)))]
pub(super) async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let reason = CancelRequest::read(body).await?;
    transition(state.store.cancel(id, reason.as_deref()).await?, "cancelled", "queued or running")
}

/// Queue a failed or cancelled task again, with its retries restored.
#[utoipa::path(post, path = "/api/tasks/{id}/retry", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
              (status = 409, description = "The task is not failed or cancelled", body = ErrorBody)))]
pub(super) async fn retry(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(state.store.retry(task_id(&id)?).await?, "retried", "failed or cancelled")
}

/// The registered task types, and every type's flow settings.
#[utoipa::path(get, path = "/api/task-types", tag = "tasks",
    responses((status = 200, body = TaskTypes), (status = 503, body = ErrorBody)))]
pub(super) async fn task_types(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let settings = state.store.type_settings().await?;
    let types = state.registry.types().into_iter().map(str::to_owned).collect();
    Ok(HttpResponse::Ok().json(TaskTypes { types, settings }))
}
