//! Task handlers: the code that does a task's work, and the registry that finds it by
//! the task's `type`.
//!
//! A handler never touches the queue: it gets a [`TaskContext`], does its work, and
//! returns a [`HandlerResult`]. The executor turns that into the task's next state:
//! `Ok` acknowledges (with an optional JSON result), [`HandlerError::Retryable`] spends
//! a retry, [`HandlerError::Fatal`] fails the task without retrying, and
//! [`HandlerError::Snooze`] puts it back in the queue for later without spending one.
//! A panic is a retryable failure; a handler that overruns `timeout_seconds` is stopped
//! and retried. While it runs, a handler may report its progress
//! ([`TaskContext::progress`], which restarts its timeout) and learn that its task was
//! cancelled ([`TaskContext::cancelled`]).
//!
//! Handlers run on a runtime of their own, apart from the actors, so a handler that
//! blocks its thread delays other handlers at worst, never the claim loop or timeouts.
//!
//! ```no_run
//! use taskq::handlers::{Handler, HandlerError, HandlerResult, Registry, TaskContext};
//!
//! struct Resize;
//!
//! #[async_trait::async_trait]
//! impl Handler for Resize {
//!     fn validate(&self, payload: &serde_json::Value) -> Result<(), String> {
//!         payload.get("image").and_then(|v| v.as_str()).map(|_| ()).ok_or("image is required".into())
//!     }
//!
//!     async fn run(&self, task: TaskContext) -> HandlerResult {
//!         let image = task.payload["image"].as_str().unwrap_or_default();
//!         if image.is_empty() {
//!             return Err(HandlerError::Fatal("empty image name".into()));
//!         }
//!         Ok(Some(serde_json::json!({ "resized": image })))
//!     }
//! }
//!
//! let mut registry = Registry::with_builtins(1.0);
//! registry.register("resize", Resize);
//! ```

mod builtin;
mod demo;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a handler is told about the attempt it runs, and its line back to the
/// executor while it runs ([`TaskContext::progress`]).
#[derive(Clone)]
pub struct TaskContext {
    pub id: Uuid,
    pub name: String,
    pub task_type: String,
    pub payload: Value,
    /// 1 for the first run; counts every claim, including rescued attempts.
    pub attempt: i32,
    /// Retries spent so far.
    pub retry_count: i32,
    pub worker_id: Arc<str>,
    /// The executor's side of the attempt.
    pub(crate) control: Arc<dyn AttemptControl>,
    /// Fired when a cancel of the task is requested.
    pub(crate) cancel: CancellationToken,
}

/// The longest progress message kept, in characters; a longer one is cut to this.
pub const PROGRESS_MESSAGE_MAX: usize = 200;

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("task_type", &self.task_type)
            .field("attempt", &self.attempt)
            .field("retry_count", &self.retry_count)
            .field("worker_id", &self.worker_id)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// The executor's side of a running attempt, as [`TaskContext`] reaches it (the worker
/// implements it: `actors::attempt`).
pub(crate) trait AttemptControl: Send + Sync + 'static {
    /// Records a checked report: restarts the attempt's deadline at once, and writes
    /// the report (coalesced) with the lease it restarts.
    fn progress(
        self: Arc<Self>,
        percent: u8,
        message: String,
    ) -> BoxFuture<'static, Result<(), ProgressError>>;
}

impl TaskContext {
    /// Reports how far the attempt is: `percent` from 0 to 100 and a short `message`
    /// (cut to [`PROGRESS_MESSAGE_MAX`], 200 characters).
    ///
    /// Each report **restarts the attempt's deadline**: `timeout_seconds` is the
    /// longest a handler may go without reporting (or in all, if it never reports). The
    /// executor's timer restarts at once, and the lease is extended with the write, so
    /// a rescue still comes at the worker's missed heartbeats or `timeout_seconds`
    /// plus the lease grace after the last report written. The report is stored on the
    /// task (`progress` in its JSON, and the live stream) for dashboards.
    ///
    /// Reports are cheap to make in a loop: at most one is written per task every
    /// 500 ms, the latest winning (the others only restart the timer). A report that
    /// goes to the database is awaited; one held back returns at once.
    ///
    /// `Err(ProgressError::Lost)` says the attempt is no longer this worker's (it was
    /// rescued after a lost lease, or it ended): the handler should stop, since its
    /// outcome will not be recorded. `Err(ProgressError::Cancelled)` says the task's
    /// cancel was requested (nothing is written then). `?` turns either into a
    /// [`HandlerError`].
    pub async fn progress(&self, percent: u8, message: impl Into<String>) -> Result<(), ProgressError> {
        if percent > 100 {
            return Err(ProgressError::Invalid(percent));
        }
        if self.is_cancelled() {
            return Err(ProgressError::Cancelled);
        }
        let message: String = message.into().chars().take(PROGRESS_MESSAGE_MAX).collect();
        Arc::clone(&self.control).progress(percent, message).await
    }
}

impl TaskContext {
    /// Whether a cancel of the task was requested (`POST /api/tasks/{id}/cancel` on the
    /// running task). Its worker hears within a second; the handler then has
    /// `CANCEL_GRACE` (default 10 s) to stop before the attempt is aborted. However it
    /// ends, the task ends `cancelled` and is not retried, unless the handler succeeds:
    /// work done is kept.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once a cancel of the task is requested: something to `select!` on.
    ///
    /// ```ignore
    /// tokio::select! {
    ///     () = task.cancelled() => Err(HandlerError::Fatal("cancelled".into())),
    ///     result = do_the_work(&task) => result,
    /// }
    /// ```
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// The task's cancellation token, for work the handler hands to tasks of its own.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Why a progress report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("progress must be from 0 to 100 percent, got {0}")]
    Invalid(u8),
    #[error("the attempt is no longer this worker's: it was rescued or has ended")]
    Lost,
    #[error("the task was cancelled")]
    Cancelled,
}

impl From<ProgressError> for HandlerError {
    fn from(error: ProgressError) -> Self {
        match error {
            ProgressError::Invalid(_) | ProgressError::Cancelled => Self::Fatal(error.to_string()),
            // Its outcome is fenced out anyway; another attempt owns the task.
            ProgressError::Lost => Self::Retryable(error.to_string()),
        }
    }
}

/// An attempt that did not succeed, with the handler's intent for what happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (a timeout, a 5xx, a lost connection).
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help (bad input, a 4xx): the task fails now.
    #[error("{0}")]
    Fatal(String),
    /// Not an error: "not yet, try again in this long" (an upstream not ready, a rate
    /// limit's window). The task goes back to the queue, runnable after the delay (at
    /// most [`MAX_SNOOZE`]), without spending a retry; the history records
    /// `task_snoozed`. A task snoozes at most `max_snoozes` times (default 25): one more
    /// fails it for good ("snoozed 26 times; max_snoozes is 25").
    #[error("snoozed for {}", humantime::format_duration(*.0))]
    Snooze(Duration),
}

/// The longest snooze: a longer one is cut to this (a year, like `delay_seconds`).
pub const MAX_SNOOZE: Duration = Duration::from_secs(31_536_000);

pub type HandlerResult = Result<Option<Value>, HandlerError>;

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Checks a payload when the task is enqueued, so bad tasks are refused with 400
    /// instead of failing later. The message is shown to the client as it is.
    fn validate(&self, _payload: &Value) -> Result<(), String> {
        Ok(())
    }

    async fn run(&self, task: TaskContext) -> HandlerResult;
}

/// Handlers by task type. Look-ups are case-insensitive, as in TaskQueue-Go; the
/// canonical (lower-case) name is what the store records.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in types: `noop`, `sleep`, `fail`, `webhook`, and the original demo
    /// handlers `send_email` and `run_query`, whose durations are multiplied by
    /// `demo_time_scale` (`DEMO_TIME_SCALE`).
    pub fn with_builtins(demo_time_scale: f64) -> Self {
        let mut registry = Self::new();
        registry.register("noop", builtin::Noop);
        registry.register("sleep", builtin::Sleep);
        registry.register("fail", builtin::Fail);
        registry.register("webhook", webhook::Webhook::new());
        registry.register("send_email", demo::SendEmail { time_scale: demo_time_scale });
        registry.register("run_query", demo::RunQuery { time_scale: demo_time_scale });
        registry
    }

    /// Adds or replaces the handler of `task_type`.
    pub fn register(&mut self, task_type: &str, handler: impl Handler) -> &mut Self {
        self.handlers.insert(task_type.to_lowercase(), Arc::new(handler));
        self
    }

    /// The handler and canonical name of a type, whatever its case.
    pub fn get(&self, task_type: &str) -> Option<(&str, &Arc<dyn Handler>)> {
        self.handlers.get_key_value(&task_type.to_lowercase()).map(|(name, handler)| (name.as_str(), handler))
    }

    /// The registered types, sorted.
    pub fn types(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }
}

/// Reads an optional field of a payload object with a type check, for `validate`.
fn field<'a>(payload: &'a Value, name: &str) -> Option<&'a Value> {
    payload.get(name).filter(|v| !v.is_null())
}

/// Checks that a payload field is a non-empty string.
fn required_string(payload: &Value, name: &str) -> Result<(), String> {
    match field(payload, name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
        Some(_) => Err(format!("payload.{name} must be a non-empty string")),
        None => Err(format!("payload.{name} is required")),
    }
}

/// Sleeps for `seconds × scale`, for the demo handlers.
async fn scaled_sleep(seconds: f64, scale: f64) {
    tokio::time::sleep(Duration::from_secs_f64((seconds * scale).max(0.0))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_return_the_canonical_name() {
        let registry = Registry::with_builtins(1.0);
        assert_eq!(registry.get("NoOp").map(|(name, _)| name), Some("noop"));
        assert_eq!(registry.get("SEND_EMAIL").map(|(name, _)| name), Some("send_email"));
        assert!(registry.get("nope").is_none());
        assert_eq!(registry.types(), ["fail", "noop", "run_query", "send_email", "sleep", "webhook"]);
    }
}
