//! `POST /api/tasks/bulk`: cancel, retry or delete every task a search matches
//! (`src/store/bulk.rs` has the protocol: pages, fences, history).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::error::ApiError;
use super::search::TaskQuery;
use super::tasks::ErrorBody;
use super::{AppState, only};
use crate::store::{BulkAction, BulkOutcome, BulkScope, run_bulk};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tasks/bulk").route(web::post().to(bulk)).default_service(only("POST")));
}

/// A bulk action.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The search whose tasks to act on: the keys of `GET /api/tasks`. Without
    /// `limit`, every match; with `limit` (and `cursor`), the one page
    /// `GET /api/tasks` would list, and `next_cursor` says where to go on.
    filter: TaskQuery,
    /// `cancel` acts on queued tasks (scheduled ones included), `retry` on failed and
    /// cancelled ones, `delete` on succeeded, failed and cancelled ones (with their
    /// history); the other matches are skipped.
    action: BulkAction,
    /// Only count the matches; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Act on every task a search matches.
#[utoipa::path(post, path = "/api/tasks/bulk", tag = "tasks", request_body = BulkRequest,
    responses((status = 200, description = "What was matched, done and skipped", body = BulkOutcome),
              (status = 400, description = "Invalid request, naming the key", body = ErrorBody),
              (status = 503, description = "Database unavailable", body = ErrorBody)))]
pub(super) async fn bulk(
    state: web::Data<AppState>,
    body: web::Json<BulkRequest>,
) -> Result<HttpResponse, ApiError> {
    let BulkRequest { filter, action, dry_run } = body.into_inner();
    let scope = if filter.limit.is_some() { BulkScope::Page } else { BulkScope::All };
    let filter = filter.into_filter(&state.registry)?;
    let outcome = run_bulk(state.store.as_ref(), &filter, action, scope, dry_run).await?;
    Ok(HttpResponse::Ok().json(outcome))
}
