//! API errors: every failure is JSON `{"error": "..."}` with a status that names the
//! problem. Database internals never reach a client: a 503 says the database is
//! unavailable (with `Retry-After`), a 500 says only that something went wrong, and
//! the log keeps the whole cause chain.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use crate::store::StoreError;

/// Seconds a client should wait before retrying while the database is unavailable.
const RETRY_AFTER_SECONDS: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 with more fields than the message (for example the known task types).
    #[error("{message}")]
    BadRequestWith { message: String, extra: Value },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { message: String, status: &'static str },
    /// A 409 about something other than a task's status (a name taken, a concurrent change).
    #[error("{0}")]
    Clash(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() { Self::Unavailable(error) } else { Self::Internal(error) }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::BadRequestWith { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } | Self::Clash(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.to_string() });
        match self {
            Self::BadRequestWith { extra, .. } => {
                if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
                    body.extend(extra.clone());
                }
            }
            Self::Conflict { status, .. } => body["status"] = json!(status),
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "request failed: database unavailable")
            }
            Self::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS)));
            }
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        response.json(body)
    }
}

/// Turns body, query and path extraction failures into JSON 400 / 413 answers that
/// name the problem (serde's messages name the field: "unknown field `x`").
pub fn json_error(error: actix_web::error::JsonPayloadError, _: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    match error {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes")).into()
        }
        JsonPayloadError::ContentType => {
            ApiError::BadRequest("Content-Type must be application/json".into()).into()
        }
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")).into(),
        other => ApiError::BadRequest(format!("invalid request body: {other}")).into(),
    }
}

pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {error}")).into()
}

pub fn path_error(_: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::NotFound("not found").into()
}
