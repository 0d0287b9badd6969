//! The task API: create (one or a batch), read, list, history, cancel, retry, types.
//! (`POST /tasks/batch` is mounted by the caller, with a larger body limit.)

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use super::validate::{CreateBatch, CreateTask, MAX_BATCH};
use super::{AppState, only};
use crate::metrics;
use crate::store::{HistoryEvent, ListFilter, Task, TaskStatus, Transition};

/// The default and largest page of `GET /api/tasks`.
const PAGE: (u32, u32) = (50, 500);

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

/// The registered task types.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskTypes {
    pub types: Vec<String>,
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
    responses((status = 200, body = Task), (status = 404, description = "Unknown or malformed id", body = ErrorBody)))]
pub(super) async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get_task(task_id(&id)?).await?.ok_or(ApiError::NotFound("task not found"))?;
    Ok(HttpResponse::Ok().json(task))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    queue: Option<String>,
    schedule: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Tasks, newest first, one page at a time.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks",
    params(("status" = Option<TaskStatus>, Query, description = "Only tasks with this status"),
           ("type" = Option<String>, Query, description = "Only tasks of this type"),
           ("queue" = Option<String>, Query, description = "Only tasks of this queue"),
           ("schedule" = Option<String>, Query, description = "Only tasks enqueued by this schedule"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<TaskStatus>().map_err(ApiError::BadRequest)?),
        None => None,
    };
    let limit = query.limit.unwrap_or(PAGE.0);
    if !(1..=PAGE.1).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be from 1 to {}, got {limit}", PAGE.1)));
    }
    let before = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        // A `next_cursor` as answered: a hyphenated UUID (`format: uuid`), nothing looser.
        Some(cursor) => Some(
            Some(cursor)
                .filter(|c| c.len() == 36)
                .and_then(|c| Uuid::parse_str(c).ok())
                .ok_or_else(|| ApiError::BadRequest("cursor is not valid".into()))?,
        ),
        None => None,
    };
    let task_type = query
        .task_type
        .filter(|t| !t.is_empty())
        .map(|t| state.registry.get(&t).map_or(t.clone(), |(canonical, _)| canonical.to_owned()));
    let queue = name_filter("queue", query.queue, crate::store::check_queue_name)?;
    let schedule = name_filter("schedule", query.schedule, crate::store::check_schedule_name)?;
    let tasks =
        state.store.list_tasks(&ListFilter { status, task_type, queue, schedule, before, limit }).await?;
    let next_cursor = (tasks.len() as u32 == limit).then(|| tasks.last().map(|t| t.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(TaskList { tasks, next_cursor }))
}

/// A filter by name: none when absent or empty, else a name `check` accepts.
fn name_filter(
    field: &str,
    value: Option<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, ApiError> {
    let Some(name) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    check(&name).map_err(|why| ApiError::BadRequest(format!("{field}: {why}")))?;
    Ok(Some(name))
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

/// Cancel a queued task.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
              (status = 409, description = "The task is not queued", body = ErrorBody)))]
pub(super) async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(state.store.cancel(task_id(&id)?).await?, "cancelled", "queued")
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

/// The registered task types.
#[utoipa::path(get, path = "/api/task-types", tag = "tasks", responses((status = 200, body = TaskTypes)))]
pub(super) async fn task_types(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .json(TaskTypes { types: state.registry.types().into_iter().map(str::to_owned).collect() })
}
