//! The demo handlers of TaskQueue-Go, with its behaviour, so its clients and demos
//! keep working: random failures and multi-second durations. `DEMO_TIME_SCALE` scales
//! the durations (tests run them at a fraction of a second).

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Handler, HandlerError, HandlerResult, TaskContext, required_string, scaled_sleep};

/// Needs `to` and `subject`; fails 25% of the time, else succeeds after about 3 s.
pub struct SendEmail {
    pub time_scale: f64,
}

#[async_trait]
impl Handler for SendEmail {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        required_string(payload, "to")?;
        required_string(payload, "subject")
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        if rand::random::<f64>() < 0.25 {
            return Err(HandlerError::Retryable("smtp server unavailable".into()));
        }
        scaled_sleep(3.0, self.time_scale).await;
        Ok(Some(json!({ "delivered_to": task.payload["to"] })))
    }
}

/// Needs `query`; 20% fail at once, 20% fail after about 5 s, 60% succeed after about 3 s.
pub struct RunQuery {
    pub time_scale: f64,
}

#[async_trait]
impl Handler for RunQuery {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        required_string(payload, "query")
    }

    async fn run(&self, _task: TaskContext) -> HandlerResult {
        let roll = rand::random::<f64>();
        if roll < 0.2 {
            return Err(HandlerError::Retryable("query rejected: connection reset".into()));
        }
        if roll < 0.4 {
            scaled_sleep(5.0, self.time_scale).await;
            return Err(HandlerError::Retryable("query failed after 5s: deadlock detected".into()));
        }
        scaled_sleep(3.0, self.time_scale).await;
        Ok(Some(json!({ "rows": 42 })))
    }
}
