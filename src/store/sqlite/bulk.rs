//! Bulk actions on SQLite (`src/store/bulk.rs` has the protocol): one `BEGIN
//! IMMEDIATE` transaction per page of ids, each task's write fenced by status like the
//! single-task action and followed by its history event in the same transaction.

use uuid::Uuid;

use super::super::{BulkAction, CANCELLED_BY_BULK, EventType, Result, Task, cancel_note};
use super::{SqliteStore, now};

pub(super) const CANCEL: &str = r#"
    UPDATE tasks SET status = 'cancelled', completed_at = $2, updated_at = $2
    WHERE id = $1 AND status = 'queued'
    RETURNING *
"#;

const RETRY: &str = r#"
    UPDATE tasks SET status = 'queued', retry_count = 0, snooze_count = 0, run_at = $2,
                     completed_at = NULL, result = NULL, cancel_requested_at = NULL,
                         cancel_reason = NULL, updated_at = $2
    WHERE id = $1 AND status IN ('failed', 'cancelled')
    RETURNING *
"#;

const DELETE: &str = r#"
    DELETE FROM tasks WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled')
    RETURNING *
"#;

/// Applies `action` to the tasks of `ids` whose status allows it; returns each changed
/// task's id and queue.
pub(super) async fn act(
    store: &SqliteStore,
    ids: &[Uuid],
    action: BulkAction,
) -> Result<Vec<(Uuid, String)>> {
    let (sql, event) = match action {
        BulkAction::Cancel => (CANCEL, Some(EventType::TaskCancelled)),
        BulkAction::Retry => (RETRY, Some(EventType::TaskRequeued)),
        BulkAction::Delete => (DELETE, None),
    };
    let mut tx = store.write().await?;
    let at = now();
    let mut changed = Vec::new();
    for id in ids {
        let Some(task): Option<Task> = sqlx::query_as(sql).bind(id).bind(at).fetch_optional(&mut *tx).await?
        else {
            continue;
        };
        // A deleted task's events go with it (the foreign key cascades).
        if let Some(event) = event {
            let note = match event {
                EventType::TaskCancelled => cancel_note(CANCELLED_BY_BULK, None, None),
                _ => "manual retry".to_owned(),
            };
            SqliteStore::insert_event(&mut tx, &task, event, Some(&note), None).await?;
        }
        changed.push((task.id, task.queue));
    }
    tx.commit().await?;
    Ok(changed)
}
