//! Bulk actions on PostgreSQL (`src/store/bulk.rs` has the protocol): one statement
//! per page of ids, fenced by status, its history events written by a data-modifying
//! CTE of the same statement. The single-task cancel and retry are the same statements
//! on one id.

use sqlx::PgPool;
use uuid::Uuid;

use super::super::{BulkAction, CANCEL_CHANNEL, CANCELLED_BY_BULK, Result, Task, cancel_note};

/// Cancels the queued tasks of `$1` (their event's note `$2`); when `$4`, also marks the
/// running ones (`cancel_requested_at`, reason `$3`, a second request keeping the first)
/// and tells their workers with a NOTIFY on `$5` (`CANCEL_CHANNEL`) in the same transaction. A running task is not
/// changed otherwise: its worker stops it and the outcome write ends it `cancelled`.
pub(super) const CANCEL: &str = r#"
    WITH changed AS (
        UPDATE tasks SET status = 'cancelled', completed_at = now(), updated_at = now()
        WHERE id = ANY($1) AND status = 'queued'
        RETURNING *
    ), history AS (
        INSERT INTO task_history (task_id, event_type, status, retry_count, error_message)
        SELECT id, 'task_cancelled', 'cancelled', retry_count, $2 FROM changed
    ), requested AS (
        UPDATE tasks SET
            cancel_requested_at = coalesce(cancel_requested_at, now()),
            cancel_reason = CASE WHEN cancel_requested_at IS NULL THEN $3 ELSE cancel_reason END
        WHERE id = ANY($1) AND status = 'running' AND $4
        RETURNING *
    )
    SELECT * FROM changed
    UNION ALL
    SELECT r.* FROM requested AS r CROSS JOIN LATERAL pg_notify($5, r.id::text) AS n
"#;

pub(super) const RETRY: &str = r#"
    WITH changed AS (
        UPDATE tasks SET status = 'queued', retry_count = 0, snooze_count = 0, run_at = now(),
                         completed_at = NULL, result = NULL, cancel_requested_at = NULL,
                         cancel_reason = NULL, updated_at = now()
        WHERE id = ANY($1) AND status IN ('failed', 'cancelled')
        RETURNING *
    ), history AS (
        INSERT INTO task_history (task_id, event_type, status, retry_count, error_message)
        SELECT id, 'task_requeued', 'queued', 0, 'manual retry' FROM changed
    )
    SELECT * FROM changed
"#;

/// A task's events go with it (task_history has no foreign key to cascade).
const DELETE: &str = r#"
    WITH deleted AS (
        DELETE FROM tasks WHERE id = ANY($1) AND status IN ('succeeded', 'failed', 'cancelled')
        RETURNING *
    ), events AS (
        DELETE FROM task_history WHERE task_id IN (SELECT id FROM deleted)
    )
    SELECT * FROM deleted
"#;

/// Applies `action` to the tasks of `ids` whose status allows it; returns each changed
/// task's id and queue.
pub(super) async fn act(pool: &PgPool, ids: &[Uuid], action: BulkAction) -> Result<Vec<(Uuid, String)>> {
    let sql = match action {
        BulkAction::Cancel => CANCEL,
        BulkAction::Retry => RETRY,
        BulkAction::Delete => DELETE,
    };
    let mut query = sqlx::query_as(sql).bind(ids);
    if action == BulkAction::Cancel {
        // Queued tasks only: a bulk action does not stop running ones.
        let note = cancel_note(CANCELLED_BY_BULK, None, None);
        query = query.bind(note).bind(None::<&str>).bind(false).bind(CANCEL_CHANNEL);
    }
    let changed: Vec<Task> = query.fetch_all(pool).await?;
    Ok(changed.into_iter().map(|task| (task.id, task.queue)).collect())
}
