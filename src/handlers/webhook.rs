//! `webhook`: POSTs a JSON body to a URL, so a team in any language can run its work
//! through taskq. 2xx succeeds (the response body, if JSON, becomes the result); 4xx is
//! fatal (the request itself is wrong); 5xx, 429, connection errors and timeouts are
//! retryable.
//!
//! Payload: `{"url": "https://...", "body": <any JSON>, "headers": {"name": "value"}}`.

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;

use super::{Handler, HandlerError, HandlerResult, TaskContext, field, required_string};

/// The most of a response body kept in an error message.
const ERROR_BODY_LIMIT: usize = 512;

pub struct Webhook {
    client: reqwest::Client,
}

impl Webhook {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("taskq/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's configuration is static and valid");
        Self { client }
    }
}

fn check(payload: &Value) -> Result<reqwest::Url, String> {
    required_string(payload, "url")?;
    let url = reqwest::Url::parse(payload["url"].as_str().unwrap_or_default())
        .map_err(|e| format!("payload.url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("payload.url must be an http or https URL".into());
    }
    if let Some(headers) = field(payload, "headers") {
        let headers = headers.as_object().ok_or("payload.headers must be an object")?;
        for (name, value) in headers {
            if !value.is_string() {
                return Err(format!("payload.headers.{name} must be a string"));
            }
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("payload.headers has an invalid header name {name:?}"))?;
        }
    }
    Ok(url)
}

#[async_trait]
impl Handler for Webhook {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        check(payload).map(|_| ())
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        let url = check(&task.payload).map_err(HandlerError::Fatal)?;
        let mut request = self
            .client
            .post(url)
            .header("X-Taskq-Task-Id", task.id.to_string())
            .header("X-Taskq-Attempt", task.attempt.to_string())
            .json(field(&task.payload, "body").unwrap_or(&Value::Null));
        for (name, value) in field(&task.payload, "headers").and_then(Value::as_object).into_iter().flatten()
        {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let response = request
            .send()
            .await
            .map_err(|e| HandlerError::Retryable(format!("webhook request failed: {e}")))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&body).ok());
        }
        let snippet: String = body.chars().take(ERROR_BODY_LIMIT).collect();
        let message = format!("webhook answered {status}: {snippet}");
        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            Err(HandlerError::Fatal(message))
        } else {
            Err(HandlerError::Retryable(message))
        }
    }
}
