//! Bulk actions on PostgreSQL (`src/store/bulk.rs` has the protocol): one statement
//! per page of ids, fenced by status, its history events written by a data-modifying
//! CTE of the same statement. The single-task cancel and retry are the same statements
//! on one id.

use sqlx::PgPool;
use uuid::Uuid;

use super::super::{BulkAction, Result, Task};

pub(super) const CANCEL: &str = r#"
    WITH changed AS (
        UPDATE tasks SET status = 'cancelled', completed_at = now(), updated_at = now()
        WHERE id = ANY($1) AND status = 'queued'
        RETURNING *
    ), history AS (
        INSERT INTO task_history (task_id, event_type, status, retry_count)
        SELECT id, 'task_cancelled', 'cancelled', retry_count FROM changed
    )
    SELECT * FROM changed
"#;

pub(super) const RETRY: &str = r#"
    WITH changed AS (
        UPDATE tasks SET status = 'queued', retry_count = 0, snooze_count = 0, run_at = now(),
                         completed_at = NULL, result = NULL, updated_at = now()
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
    let changed: Vec<Task> = sqlx::query_as(sql).bind(ids).fetch_all(pool).await?;
    Ok(changed.into_iter().map(|task| (task.id, task.queue)).collect())
}
