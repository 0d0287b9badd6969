//! The task search's keys, as `GET /api/tasks` takes them in its query and
//! `POST /api/tasks/bulk` in its `filter`, checked into a [`ListFilter`]. A bad value
//! is a 400 that names its key.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use crate::handlers::Registry;
use crate::store::search::{PAYLOAD_SPAN, prefix_range};
use crate::store::{ListFilter, PayloadMatch, TaskStatus, check_queue_name, check_schedule_name};

/// The default and largest page of `GET /api/tasks` (and of a bulk action's page).
pub const PAGE: (u32, u32) = (50, 500);
/// The longest name or payload value a search takes: the longest a task may have.
const MAX_TEXT: usize = 1000;

/// Every search key; each one given narrows the search (empty means not given).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks with this status.
    #[param(value_type = Option<TaskStatus>)]
    #[schema(value_type = Option<TaskStatus>)]
    pub status: Option<String>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    pub task_type: Option<String>,
    /// Only tasks of this queue.
    pub queue: Option<String>,
    /// Only tasks enqueued by this schedule.
    pub schedule: Option<String>,
    /// A task's id, or the start of one (hex digits; hyphens optional).
    pub id: Option<String>,
    /// Only tasks whose name contains this, ignoring case.
    pub name: Option<String>,
    /// Only tasks created at or after this instant (RFC 3339).
    pub created_after: Option<String>,
    /// Only tasks created before this instant (RFC 3339).
    pub created_before: Option<String>,
    /// Only tasks that finished (reached a terminal status) at or after this instant.
    pub finished_after: Option<String>,
    /// Only tasks that finished before this instant.
    pub finished_before: Option<String>,
    /// `key=value`: only tasks whose payload's top-level `key` holds `value` (a string
    /// or a number, compared as text). Reads at most 24 hours of created tasks:
    /// `created_after` defaults to 24 hours before `created_before` (or now), and a
    /// longer range is refused.
    pub payload: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A value given: neither absent nor empty.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A name given, checked by `check`.
fn name(
    key: &str,
    value: Option<String>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, ApiError> {
    given(value)
        .map(|v| check(&v).map(|()| v).map_err(|why| ApiError::BadRequest(format!("{key}: {why}"))))
        .transpose()
}

fn time(key: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    given(value)
        .map(|v| {
            DateTime::parse_from_rfc3339(&v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::BadRequest(format!("{key} must be an RFC 3339 time such as 2026-12-01T09:30:00Z"))
            })
        })
        .transpose()
}

fn text(key: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match given(value) {
        Some(v) if v.chars().count() > MAX_TEXT => {
            Err(ApiError::BadRequest(format!("{key} must be at most {MAX_TEXT} characters")))
        }
        other => Ok(other),
    }
}

fn payload_match(value: &str) -> Result<PayloadMatch, ApiError> {
    let (key, value) = value.split_once('=').ok_or_else(|| {
        ApiError::BadRequest("payload must be key=value, for example customer_id=42".into())
    })?;
    let key_ok = (1..=64).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !key_ok {
        return Err(ApiError::BadRequest(
            "payload: the key must be 1 to 64 characters of letters, digits, _ . -".into(),
        ));
    }
    Ok(PayloadMatch { key: key.to_owned(), value: value.to_owned() })
}

impl TaskQuery {
    /// The search this query asks for; `registry` spells task types as registered.
    pub fn into_filter(self, registry: &Registry) -> Result<ListFilter, ApiError> {
        let status = given(self.status)
            .map(|s| s.parse::<TaskStatus>().map_err(|e| ApiError::BadRequest(format!("status: {e}"))))
            .transpose()?;
        let limit = self.limit.unwrap_or(PAGE.0);
        if !(1..=PAGE.1).contains(&limit) {
            return Err(ApiError::BadRequest(format!("limit must be from 1 to {}, got {limit}", PAGE.1)));
        }
        // A `next_cursor` as answered: a hyphenated UUID (`format: uuid`), nothing looser.
        let before = given(self.cursor)
            .map(|c| {
                Some(c.as_str())
                    .filter(|c| c.len() == 36)
                    .and_then(|c| Uuid::parse_str(c).ok())
                    .ok_or_else(|| ApiError::BadRequest("cursor is not valid".into()))
            })
            .transpose()?;
        let task_type = given(self.task_type)
            .map(|t| registry.get(&t).map_or(t.clone(), |(canonical, _)| canonical.to_owned()));
        let queue = name("queue", self.queue, check_queue_name)?;
        let schedule = name("schedule", self.schedule, check_schedule_name)?;
        let ids = given(self.id)
            .map(|id| {
                prefix_range(&id).ok_or_else(|| {
                    ApiError::BadRequest("id must be a task id or its start: up to 32 hex digits".into())
                })
            })
            .transpose()?;
        let payload = text("payload", self.payload)?.map(|p| payload_match(&p)).transpose()?;
        let created_before = time("created_before", self.created_before)?;
        let mut created_after = time("created_after", self.created_after)?;
        if payload.is_some() {
            let end = created_before.unwrap_or_else(Utc::now);
            let start = *created_after.get_or_insert(end - PAYLOAD_SPAN);
            if end - start > PAYLOAD_SPAN {
                return Err(ApiError::BadRequest(format!(
                    "created_after: a payload search covers at most {} hours of created tasks",
                    PAYLOAD_SPAN.num_hours()
                )));
            }
        }
        Ok(ListFilter {
            status,
            task_type,
            queue,
            schedule,
            before,
            limit,
            ids,
            name: text("name", self.name)?,
            created_after,
            created_before,
            finished_after: time("finished_after", self.finished_after)?,
            finished_before: time("finished_before", self.finished_before)?,
            payload,
        })
    }
}
