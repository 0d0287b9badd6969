DROP FUNCTION taskq_cancel_note(text, text, text);
-- The view and the event type go back to what 20261202000001_lean_runs made them. A
-- snooze becomes the release it is closest to (back to the queue, no retry spent).
DROP VIEW task_events;
ALTER TABLE task_history DROP CONSTRAINT task_history_next_run_iff_run_later;
UPDATE task_history SET event_type = 'task_requeued', next_run_at = NULL
WHERE event_type::text = 'task_snoozed';

ALTER TYPE task_event RENAME TO task_event_long_work;
CREATE TYPE task_event AS ENUM (
    'task_queued', 'task_started', 'task_succeeded', 'task_failed', 'retry_scheduled',
    'timeout_occurred', 'worker_lock_expired', 'task_failed_final', 'task_cancelled',
    'task_requeued'
);
ALTER TABLE task_history ALTER COLUMN event_type TYPE task_event USING event_type::text::task_event;
DROP TYPE task_event_long_work;
ALTER TABLE task_history ADD CONSTRAINT task_history_retry_scheduled_has_next_run
    CHECK ((event_type = 'retry_scheduled') = (next_run_at IS NOT NULL));

ALTER TABLE task_history DROP COLUMN progress_at;
ALTER TABLE tasks
    DROP COLUMN cancel_reason,
    DROP COLUMN cancel_requested_at,
    DROP COLUMN progress,
    DROP COLUMN snooze_count,
    DROP COLUMN max_snoozes;

CREATE VIEW task_events AS
    SELECT id, task_id, event_type, status, retry_count, worker_id, error_message, next_run_at,
           created_at, id AS recorded_id
    FROM task_history
    UNION ALL
    SELECT started_id, task_id, 'task_started', 'running',
           retry_count - (event_type IN ('task_failed', 'timeout_occurred', 'worker_lock_expired')
                          AND status = 'queued')::int,
           worker_id, NULL, NULL, started_at, id
    FROM task_history
    WHERE started_id IS NOT NULL
    UNION ALL
    SELECT started_event_id, id, 'task_started', 'running', retry_count, worker_id, NULL, NULL,
           started_at, started_event_id
    FROM tasks
    WHERE status = 'running' AND started_event_id IS NOT NULL
    UNION ALL
    SELECT e.id, t.id, e.event_type, e.status, t.retry_count, t.worker_id, NULL, NULL,
           e.created_at, t.completed_event_id
    FROM tasks AS t
    CROSS JOIN LATERAL (VALUES
        (t.started_event_id, 'task_started'::task_event, 'running'::task_status, t.started_at),
        (t.completed_event_id, 'task_succeeded', 'succeeded', t.completed_at)
    ) AS e (id, event_type, status, created_at)
    WHERE t.status = 'succeeded' AND t.completed_event_id IS NOT NULL AND e.id IS NOT NULL;
