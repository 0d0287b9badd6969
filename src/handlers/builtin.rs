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

/// `{"ms": n}`: waits `n` milliseconds (asynchronously) and succeeds.
pub struct Sleep;

fn sleep_ms(payload: &Value) -> Result<u64, String> {
    match field(payload, "ms") {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .filter(|ms| *ms <= MAX_SLEEP_MS)
            .ok_or_else(|| format!("payload.ms must be a whole number from 0 to {MAX_SLEEP_MS}")),
    }
}

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        sleep_ms(payload).map(|_| ())
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        let ms = sleep_ms(&task.payload).map_err(HandlerError::Fatal)?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
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
