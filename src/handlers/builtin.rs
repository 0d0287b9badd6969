//! Built-in handlers for smoke tests, benchmarks and trying the retry path.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Handler, HandlerError, HandlerResult, TaskContext, field};

/// The longest `sleep` accepts: one day, the longest task timeout.
const MAX_SLEEP_MS: u64 = 86_400_000;

/// Does nothing and succeeds: measures the queue itself.
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _task: TaskContext) -> HandlerResult {
        Ok(None)
    }
}

/// `{"ms": n, "snooze_ms": s, "progress": bool}`: waits `n` milliseconds
/// (asynchronously) and succeeds. With `snooze_ms`, its first attempt snoozes for `s`
/// milliseconds instead (the task comes back after them without spending a retry, and
/// then sleeps). With `progress`, it sleeps in ten steps and reports its progress after
/// each (10 %, 20 %, …), so a sleep longer than `timeout_seconds` finishes as long as
/// each step is shorter. A cancel of the task stops it at once. All three make long
/// work visible through the HTTP API.
pub struct Sleep;

/// Sleeps `ms` milliseconds, or less if the task's cancel is requested meanwhile.
async fn sleep_unless_cancelled(task: &TaskContext, ms: u64) -> Result<(), HandlerError> {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        () = task.cancelled() => Err(HandlerError::Fatal("cancelled while sleeping".into())),
    }
}

/// Steps of a sleep that reports its progress.
const SLEEP_STEPS: u64 = 10;

/// A payload field of milliseconds: absent is 0, else a whole number up to a day.
fn millis(payload: &Value, name: &str) -> Result<u64, String> {
    match field(payload, name) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .filter(|ms| *ms <= MAX_SLEEP_MS)
            .ok_or_else(|| format!("payload.{name} must be a whole number from 0 to {MAX_SLEEP_MS}")),
    }
}

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        millis(payload, "ms")?;
        millis(payload, "snooze_ms")?;
        if field(payload, "progress").is_some_and(|v| !v.is_boolean()) {
            return Err("payload.progress must be true or false".into());
        }
        Ok(())
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        let ms = millis(&task.payload, "ms").map_err(HandlerError::Fatal)?;
        if task.attempt == 1 && field(&task.payload, "snooze_ms").is_some() {
            let snooze = millis(&task.payload, "snooze_ms").map_err(HandlerError::Fatal)?;
            return Err(HandlerError::Snooze(Duration::from_millis(snooze)));
        }
        if !field(&task.payload, "progress").and_then(Value::as_bool).unwrap_or(false) {
            sleep_unless_cancelled(&task, ms).await?;
            return Ok(Some(json!({ "slept_ms": ms })));
        }
        for step in 1..=SLEEP_STEPS {
            let (before, slept) = (ms * (step - 1) / SLEEP_STEPS, ms * step / SLEEP_STEPS);
            sleep_unless_cancelled(&task, slept - before).await?;
            task.progress((step * 100 / SLEEP_STEPS) as u8, format!("slept {slept} of {ms} ms")).await?;
        }
        Ok(Some(json!({ "slept_ms": ms })))
    }
}

/// `{"message": "...", "fatal": bool}`: fails every attempt, retryably unless `fatal`.
pub struct Fail;

#[async_trait]
impl Handler for Fail {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        if field(payload, "message").is_some_and(|v| !v.is_string()) {
            return Err("payload.message must be a string".into());
        }
        if field(payload, "fatal").is_some_and(|v| !v.is_boolean()) {
            return Err("payload.fatal must be true or false".into());
        }
        Ok(())
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        let message = field(&task.payload, "message")
            .and_then(Value::as_str)
            .unwrap_or("task failed on purpose")
            .to_owned();
        if field(&task.payload, "fatal").and_then(Value::as_bool).unwrap_or(false) {
            Err(HandlerError::Fatal(message))
        } else {
            Err(HandlerError::Retryable(message))
        }
    }
}
