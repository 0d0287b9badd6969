//! Bearer-token authentication of `/api/*` when `API_TOKEN` is set.
//!
//! Several tokens may be valid at once (a comma-separated list), so a token can be
//! rotated without downtime. Each candidate is compared in constant time and all are
//! always compared, so timing reveals neither a token nor which one matched. The
//! dashboard sends the token as a header on its event stream too (it reads the stream
//! with `fetch`), so a token never appears in a URL or an access log.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

fn authorized(tokens: &[String], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
        return false;
    };
    tokens.iter().fold(false, |matched, token| matched | bool::from(token.as_bytes().ct_eq(given.as_bytes())))
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let tokens = req.app_data::<web::Data<AppState>>().map(|s| s.api_tokens.clone()).unwrap_or_default();
    if !tokens.is_empty() && req.path().starts_with("/api/") && req.path() != "/api/openapi.json" {
        let header = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        if !authorized(&tokens, header) {
            return Err(ApiError::Unauthorized.into());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn any_listed_token_is_accepted_and_nothing_else() {
        let tokens = vec!["new-token".to_owned(), "old-token".to_owned()];
        assert!(authorized(&tokens, Some("Bearer new-token")));
        assert!(authorized(&tokens, Some("Bearer old-token")));
        assert!(!authorized(&tokens, Some("Bearer new-token-but-longer")));
        assert!(!authorized(&tokens, Some("new-token")));
        assert!(!authorized(&tokens, Some("Bearer ")));
        assert!(!authorized(&tokens, None));
    }
}
