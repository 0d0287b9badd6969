//! Request bodies of the task API and their validation into store inputs.
//!
//! Unknown fields are rejected (a typo like `max_retry` would otherwise be silently
//! ignored), numbers are range-checked with messages naming the field, and strings
//! and payloads may not contain NUL characters (PostgreSQL cannot store them).

use chrono::{DateTime, Utc};
use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::ApiError;
use crate::handlers::Registry;
use crate::store::NewTask;

/// The largest payload, serialised: 1 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The most tasks in one batch request.
pub const MAX_BATCH: usize = 1000;

/// A whole number as JSON Schema's `integer` has it: any number without a fractional
/// part, `5` as well as `5.0` or `5e0`, so no request the OpenAPI document calls valid is
/// refused for how it spells a number. `null` is `None`.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        // Beyond ±2^53 an f64 is whole anyway; the ranges checked later are far smaller.
        Some(f) if f.fract() == 0.0 && (-9.0e18..=9.0e18).contains(&f) => Ok(Some(f as i64)),
        Some(f) if f.fract() == 0.0 => {
            Err(D::Error::invalid_value(Unexpected::Float(f), &"a whole number within ±9e18"))
        }
        _ => Err(D::Error::invalid_type(Unexpected::Other(&format!("number {number}")), &"a whole number")),
    }
}

/// What [`text`] accepts, as the OpenAPI document says it: at least one character
/// that is neither whitespace (what `str::trim` removes: `char::is_whitespace`) nor NUL,
/// and no NUL anywhere. Built from `char::is_whitespace` itself, so the two agree.
pub fn text_pattern() -> &'static str {
    static PATTERN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let escape = |c: char| format!("\\u{:04X}", c as u32);
        let mut class = escape('\0');
        let mut chars = (char::MIN..=char::MAX).filter(|c| c.is_whitespace()).peekable();
        while let Some(first) = chars.next() {
            let mut last = first;
            while chars.peek().is_some_and(|&next| next as u32 == last as u32 + 1) {
                last = chars.next().unwrap_or(last);
            }
            class.push_str(&escape(first));
            if last != first {
                class.push('-');
                class.push_str(&escape(last));
            }
        }
        format!("^[^\\u0000]*[^{class}][^\\u0000]*$")
    })
}

/// `POST /api/tasks`. Field names are TaskQueue-Go's, plus the scheduling and
/// idempotency fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// 1 to 255 characters, not all whitespace, no NUL.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, example = "Send welcome email")]
    pub name: Option<String>,
    /// A registered task type (case-insensitive); see `GET /api/task-types`.
    #[serde(rename = "type")]
    #[schema(value_type = String, required = true, example = "noop")]
    pub task_type: Option<String>,
    /// A JSON object of at most 1 MiB, checked by the type's handler.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// Higher runs first; -1000 to 1000, default 0.
    #[schema(minimum = -1000, maximum = 1000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub priority: Option<i64>,
    /// 0 to 100, default 3.
    #[schema(minimum = 0, maximum = 100)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_retries: Option<i64>,
    /// How many times the handler may snooze the task ("not yet, try again later",
    /// which spends no retry); one more fails it for good. 0 to 10000, default 25.
    #[schema(minimum = 0, maximum = 10000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_snoozes: Option<i64>,
    /// 1 to 86400, default `WORKER_TIMEOUT`.
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "whole_number")]
    pub timeout_seconds: Option<i64>,
    /// Base of the exponential backoff; 0 to 86400, default 1.
    #[schema(minimum = 0, maximum = 86400)]
    #[serde(default, deserialize_with = "whole_number")]
    pub backoff_seconds: Option<i64>,
    /// When the task becomes runnable (RFC 3339); not with `delay_seconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// Seconds from now until the task becomes runnable; 0 to 31536000.
    #[schema(minimum = 0, maximum = 31536000)]
    pub delay_seconds: Option<f64>,
    /// A repeat with the same key returns the existing task (200) instead of creating one.
    /// 1 to 255 characters, not all whitespace, no NUL.
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    /// The named queue: 1 to 64 characters of `[a-z0-9_.-]`, default `default`.
    #[serde(default, deserialize_with = "queue_field")]
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_.-]{1,64}$", example = "emails")]
    pub queue: Option<String>,
    /// Tasks of a queue with the same key (a tenant, an account) run at most the key
    /// limit at a time (`max_per_key` of the type, else of the queue, else 1).
    /// 1 to 255 characters, not all whitespace, no NUL.
    #[schema(min_length = 1, max_length = 255, example = "tenant-42")]
    pub concurrency_key: Option<String>,
}

/// The optional body of `POST /api/tasks/{id}/cancel`. TaskQueue-Go's clients send
/// none; an empty body (or `null`) is no reason.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, recorded in the task's `cancel_reason` (a running task) and its
    /// `task_cancelled` note. 1 to 255 characters, not all whitespace, no NUL.
    #[schema(min_length = 1, max_length = 255, example = "the customer closed the account")]
    pub reason: Option<String>,
}

/// The largest body a cancel reads: a reason and its envelope.
const CANCEL_BODY_LIMIT: usize = 64 * 1024;

impl CancelRequest {
    /// The reason of a cancel's body, if it has one.
    pub async fn read(body: actix_web::web::Payload) -> Result<Option<String>, ApiError> {
        let bytes = match body.to_bytes_limited(CANCEL_BODY_LIMIT).await {
            Err(_) => {
                return Err(ApiError::PayloadTooLarge(format!(
                    "request body is larger than {CANCEL_BODY_LIMIT} bytes"
                )));
            }
            Ok(Err(error)) => return Err(ApiError::BadRequest(format!("invalid request body: {error}"))),
            Ok(Ok(bytes)) => bytes,
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let request: Option<Self> = serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
        text("reason", request.and_then(|r| r.reason), false)
    }
}

/// `POST /api/tasks/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1 to 1000 tasks, created in one transaction: all or none.
    #[schema(min_items = 1, max_items = 1000)]
    pub tasks: Vec<CreateTask>,
}

/// `queue` as given, with its name in the message when it is not a string (serde's
/// messages name the type, not the field).
fn queue_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d).map_err(|e| D::Error::custom(format!("queue: {e}")))
}

/// A task's queue: `default` when absent, else a valid queue name.
fn queue_name(field: &str, queue: Option<String>) -> Result<String, ApiError> {
    let Some(queue) = queue else {
        return Ok(crate::store::DEFAULT_QUEUE.to_owned());
    };
    crate::store::check_queue_name(&queue).map_err(|why| ApiError::BadRequest(format!("{field}: {why}")))?;
    Ok(queue)
}

/// The documented ranges.
pub const PRIORITY: (i64, i64) = (-1000, 1000);
pub const MAX_RETRIES: (i64, i64) = (0, 100);
pub const MAX_SNOOZES: (i64, i64) = (0, 10_000);
pub const TIMEOUT_SECONDS: (i64, i64) = (1, 86_400);
pub const BACKOFF_SECONDS: (i64, i64) = (0, 86_400);
/// Scheduling at most a year ahead.
pub const DELAY_SECONDS: (f64, f64) = (0.0, 31_536_000.0);

fn in_range(field: &str, value: Option<i64>, (low, high): (i64, i64), default: i64) -> Result<i32, ApiError> {
    let value = value.unwrap_or(default);
    if (low..=high).contains(&value) {
        Ok(value as i32)
    } else {
        Err(ApiError::BadRequest(format!("{field} must be from {low} to {high}, got {value}")))
    }
}

pub(super) fn text(field: &str, value: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    match value {
        None if required => Err(ApiError::BadRequest(format!("{field} is required"))),
        None => Ok(None),
        Some(value) => {
            if value.trim().is_empty() {
                return Err(ApiError::BadRequest(format!("{field} must not be empty")));
            }
            if value.chars().count() > 255 {
                return Err(ApiError::BadRequest(format!("{field} must be at most 255 characters")));
            }
            if value.contains('\0') {
                return Err(ApiError::BadRequest(format!("{field} must not contain NUL characters")));
            }
            Ok(Some(value))
        }
    }
}

/// Whether any string or key anywhere in the value holds a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

impl CreateTask {
    /// Validates the request against the ranges and the registered handlers. `field`
    /// prefixes messages (`tasks[3].` in a batch).
    pub fn validate(
        self,
        registry: &Registry,
        default_timeout: i64,
        field: &str,
    ) -> Result<NewTask, ApiError> {
        let name = text(&format!("{field}name"), self.name, true)?.unwrap_or_default();
        let requested_type = text(&format!("{field}type"), self.task_type, true)?.unwrap_or_default();
        let Some((task_type, handler)) = registry.get(&requested_type) else {
            return Err(ApiError::BadRequestWith {
                message: format!("{field}type {requested_type:?} is not a registered task type"),
                extra: json!({ "known_types": registry.types() }),
            });
        };
        let payload = match self.payload {
            None | Some(Value::Null) => json!({}),
            Some(payload @ Value::Object(_)) => payload,
            Some(_) => return Err(ApiError::BadRequest(format!("{field}payload must be a JSON object"))),
        };
        if has_nul(&payload) {
            return Err(ApiError::BadRequest(format!("{field}payload must not contain NUL characters")));
        }
        let size = payload.to_string().len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "{field}payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )));
        }
        handler.validate(&payload).map_err(|message| ApiError::BadRequest(format!("{field}{message}")))?;

        let run_at = match (self.run_at, self.delay_seconds) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(format!(
                    "{field}run_at and delay_seconds cannot both be set"
                )));
            }
            (Some(at), None) => Some(at),
            (None, Some(delay)) if (DELAY_SECONDS.0..=DELAY_SECONDS.1).contains(&delay) => {
                Some(Utc::now() + chrono::Duration::milliseconds((delay * 1000.0) as i64))
            }
            (None, Some(delay)) => {
                return Err(ApiError::BadRequest(format!(
                    "{field}delay_seconds must be from {} to {}, got {delay}",
                    DELAY_SECONDS.0, DELAY_SECONDS.1
                )));
            }
            (None, None) => None,
        };

        Ok(NewTask {
            id: Uuid::now_v7(),
            name,
            task_type: task_type.to_owned(),
            payload,
            priority: in_range(&format!("{field}priority"), self.priority, PRIORITY, 0)?,
            max_retries: in_range(&format!("{field}max_retries"), self.max_retries, MAX_RETRIES, 3)?,
            max_snoozes: in_range(
                &format!("{field}max_snoozes"),
                self.max_snoozes,
                MAX_SNOOZES,
                i64::from(crate::store::DEFAULT_MAX_SNOOZES),
            )?,
            backoff_seconds: in_range(
                &format!("{field}backoff_seconds"),
                self.backoff_seconds,
                BACKOFF_SECONDS,
                1,
            )?,
            timeout_seconds: in_range(
                &format!("{field}timeout_seconds"),
                self.timeout_seconds,
                TIMEOUT_SECONDS,
                default_timeout,
            )?,
            run_at,
            idempotency_key: text(&format!("{field}idempotency_key"), self.idempotency_key, false)?,
            queue: queue_name(&format!("{field}queue"), self.queue)?,
            concurrency_key: text(&format!("{field}concurrency_key"), self.concurrency_key, false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_text_pattern_names_every_whitespace_character() {
        assert_eq!(
            super::text_pattern(),
            "^[^\\u0000]*[^\\u0000\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000][^\\u0000]*$"
        );
    }
}
