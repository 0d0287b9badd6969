-- Back to the history of 20261128000001_schema; a snooze becomes the release it is
-- closest to (back to the queue, no retry spent).
DROP VIEW task_events;
CREATE TABLE task_history_before (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id       BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event_type    TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    retry_count   INTEGER NOT NULL,
    worker_id     TEXT,
    error_message TEXT,
    next_run_at   TEXT,
    created_at    TEXT    NOT NULL,

    CONSTRAINT task_history_event_type_valid CHECK (event_type IN (
        'task_queued', 'task_started', 'task_succeeded', 'task_failed', 'retry_scheduled',
        'timeout_occurred', 'worker_lock_expired', 'task_failed_final', 'task_cancelled',
        'task_requeued')),
    CONSTRAINT task_history_status_valid
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT task_history_retry_scheduled_has_next_run
        CHECK ((event_type = 'retry_scheduled') = (next_run_at IS NOT NULL))
);
INSERT INTO task_history_before
    (id, task_id, event_type, status, retry_count, worker_id, error_message, next_run_at, created_at)
SELECT id, task_id,
       CASE WHEN event_type = 'task_snoozed' THEN 'task_requeued' ELSE event_type END,
       status, retry_count, worker_id, error_message,
       CASE WHEN event_type = 'task_snoozed' THEN NULL ELSE next_run_at END,
       created_at
FROM task_history;
DELETE FROM sqlite_sequence WHERE name = 'task_history_before';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'task_history_before', seq FROM sqlite_sequence WHERE name = 'task_history';
DROP TABLE task_history;
ALTER TABLE task_history_before RENAME TO task_history;
CREATE INDEX task_history_task_idx ON task_history (task_id, id);
CREATE VIEW task_events AS SELECT *, id AS recorded_id FROM task_history;

ALTER TABLE tasks DROP COLUMN cancel_reason;
ALTER TABLE tasks DROP COLUMN cancel_requested_at;
ALTER TABLE tasks DROP COLUMN progress;
ALTER TABLE tasks DROP COLUMN snooze_count;
ALTER TABLE tasks DROP COLUMN max_snoozes;
