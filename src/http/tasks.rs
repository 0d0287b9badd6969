//! The task API: create (one or a batch), read, list, history, cancel, retry, types.
//! (`POST /tasks/batch` is mounted by the caller, with a larger body limit.)

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::validate::{CreateBatch, CreateTask, MAX_BATCH};
use crate::metrics;
use crate::store::{ListFilter, Task, TaskStatus, Transition};

/// The default and largest page of `GET /api/tasks`.
const PAGE: (u32, u32) = (50, 500);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks", web::post().to(create))
        .route("/tasks", web::get().to(list))
        .route("/tasks/{id}", web::get().to(get))
        .route("/tasks/{id}/history", web::get().to(history))
        .route("/tasks/{id}/cancel", web::post().to(cancel))
        .route("/tasks/{id}/retry", web::post().to(retry))
        .route("/task-types", web::get().to(task_types));
}

/// Malformed ids are answered like unknown ones: 404.
fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("task not found"))
}

async fn create(state: web::Data<AppState>, body: web::Json<CreateTask>) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().validate(&state.registry, state.default_timeout, "")?;
    let created = state.store.create_tasks(std::slice::from_ref(&new)).await?;
    let created = created.into_iter().next().ok_or(ApiError::NotFound("task not found"))?;
    if created.inserted {
        metrics::task_created(&created.task.task_type);
        Ok(HttpResponse::Created().json(created.task))
    } else {
        Ok(HttpResponse::Ok().json(created.task))
    }
}

#[derive(Serialize)]
struct TaskList {
    tasks: Vec<Task>,
    next_cursor: Option<String>,
}

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

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get_task(task_id(&id)?).await?.ok_or(ApiError::NotFound("task not found"))?;
    Ok(HttpResponse::Ok().json(task))
}

async fn history(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let events = state.store.history(id).await?;
    if events.is_empty() && state.store.get_task(id).await?.is_none() {
        return Err(ApiError::NotFound("task not found"));
    }
    Ok(HttpResponse::Ok().json(events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
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
        Some(cursor) => {
            Some(Uuid::parse_str(cursor).map_err(|_| ApiError::BadRequest("cursor is not valid".into()))?)
        }
        None => None,
    };
    let task_type = query
        .task_type
        .filter(|t| !t.is_empty())
        .map(|t| state.registry.get(&t).map_or(t.clone(), |(canonical, _)| canonical.to_owned()));
    let tasks = state.store.list_tasks(&ListFilter { status, task_type, before, limit }).await?;
    let next_cursor = (tasks.len() as u32 == limit).then(|| tasks.last().map(|t| t.id.to_string())).flatten();
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

async fn cancel(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    transition(state.store.cancel(task_id(&id)?).await?, "cancelled", "queued")
}

async fn retry(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    transition(state.store.retry(task_id(&id)?).await?, "retried", "failed or cancelled")
}

async fn task_types(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "types": state.registry.types() }))
}
