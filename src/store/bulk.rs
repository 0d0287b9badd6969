//! Bulk actions: cancel, retry or delete every task a [`ListFilter`] matches.
//!
//! The work goes page by page, newest first, down the same keyset the list uses: each
//! page is a search (at most [`BULK_PAGE`] tasks) followed by one short write of its
//! ids, so no lock is held longer than one page's write and a task never comes round
//! twice (the cursor only moves down). Each write is fenced by status exactly as the
//! single-task action is: a task whose status no longer allows the action when the
//! write reaches it (a queued task that started meanwhile, say) is left alone and
//! counted as skipped. Cancel and retry write each task's history event in the same
//! transaction, as `POST /api/tasks/{id}/cancel` and `/retry` do; delete removes the
//! task with its history, as the Pruner does.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ListFilter, Result, Store};

/// Tasks per page of a bulk action: one search and one write each.
pub const BULK_PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// `queued` (scheduled included) → `cancelled`.
    Cancel,
    /// `failed` or `cancelled` → `queued`, with its retries restored.
    Retry,
    /// Removes a `succeeded`, `failed` or `cancelled` task and its history.
    Delete,
}

/// What a bulk action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    /// Tasks the filter matched.
    pub matched: u64,
    /// Tasks the action changed.
    pub done: u64,
    /// Matched tasks whose status did not allow the action when it reached them.
    pub skipped: u64,
    /// Where a bulk action limited to one page stopped: pass it as the filter's
    /// `cursor` to go on; `null` once every match was reached.
    pub next_cursor: Option<String>,
}

/// How much of the filter's matches a bulk action goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkScope {
    /// Every match, page after page.
    All,
    /// The one page the filter's `limit` and `cursor` select, as `GET /api/tasks`
    /// would list it.
    Page,
}

/// Runs `action` (or only counts the matches, with `dry_run`) on the tasks `filter`
/// matches, within `scope`.
pub async fn run_bulk(
    store: &dyn Store,
    filter: &ListFilter,
    action: BulkAction,
    scope: BulkScope,
    dry_run: bool,
) -> Result<BulkOutcome> {
    let mut page = filter.clone();
    if scope == BulkScope::All {
        page.limit = BULK_PAGE;
    }
    let mut outcome = BulkOutcome::default();
    loop {
        let ids: Vec<Uuid> = store.list_tasks(&page).await?.into_iter().map(|task| task.id).collect();
        outcome.matched += ids.len() as u64;
        if !dry_run && !ids.is_empty() {
            outcome.done += store.bulk(&ids, action).await?.len() as u64;
        }
        let next = ids.last().copied().filter(|_| ids.len() == page.limit as usize);
        match (next, scope) {
            (Some(cursor), BulkScope::All) => page.before = Some(cursor),
            (next, _) => {
                outcome.next_cursor = next.map(|id| id.to_string());
                break;
            }
        }
    }
    outcome.skipped = if dry_run { 0 } else { outcome.matched - outcome.done };
    Ok(outcome)
}
