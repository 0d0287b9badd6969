-- Long work, as in migrations/postgres: snoozes, progress reports that restart an
-- attempt's deadline, and cancelling a running task (docs/design.md, "Long work").

-- 1. Snoozes: `snooze_count` counts a task's "not yet" answers, `max_snoozes` bounds them.
ALTER TABLE tasks ADD COLUMN max_snoozes INTEGER NOT NULL DEFAULT 25
    CONSTRAINT tasks_max_snoozes_range CHECK (max_snoozes BETWEEN 0 AND 10000);
ALTER TABLE tasks ADD COLUMN snooze_count INTEGER NOT NULL DEFAULT 0
    CONSTRAINT tasks_snooze_count_range CHECK (snooze_count BETWEEN 0 AND max_snoozes);

-- 2. Progress: the latest report of the running attempt, `{"percent", "message", "at",
-- "attempt"}`; an event that ends an attempt records the time of its last report.
ALTER TABLE tasks ADD COLUMN progress TEXT
    CONSTRAINT tasks_progress_is_object CHECK (json_type(progress) = 'object');

-- 3. Cancelling a running task: the request marks it; it never goes back to the queue
-- before a manual retry clears the mark.
ALTER TABLE tasks ADD COLUMN cancel_requested_at TEXT
    CONSTRAINT tasks_cancel_requested_not_queued CHECK (cancel_requested_at IS NULL OR status <> 'queued');
ALTER TABLE tasks ADD COLUMN cancel_reason TEXT
    CONSTRAINT tasks_cancel_reason_valid
    CHECK (cancel_reason IS NULL
           OR (length(cancel_reason) BETWEEN 1 AND 255 AND cancel_requested_at IS NOT NULL));

-- The history's CHECK constraints name the event types, and SQLite cannot change a
-- constraint in place: the table is rebuilt with `task_snoozed` (which, like a
-- scheduled retry, says when the task runs again) and the `progress_at` column. Its id
-- sequence carries over, so no pruned event's id is handed out again.
DROP VIEW task_events;
CREATE TABLE task_history_long_work (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id       BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event_type    TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    retry_count   INTEGER NOT NULL,
    worker_id     TEXT,
    error_message TEXT,
    next_run_at   TEXT,
    created_at    TEXT    NOT NULL,
    progress_at   TEXT,

    CONSTRAINT task_history_event_type_valid CHECK (event_type IN (
        'task_queued', 'task_started', 'task_succeeded', 'task_failed', 'retry_scheduled',
        'timeout_occurred', 'worker_lock_expired', 'task_failed_final', 'task_cancelled',
        'task_requeued', 'task_snoozed')),
    CONSTRAINT task_history_status_valid
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT task_history_next_run_iff_run_later
        CHECK ((event_type IN ('retry_scheduled', 'task_snoozed')) = (next_run_at IS NOT NULL))
);
INSERT INTO task_history_long_work
    (id, task_id, event_type, status, retry_count, worker_id, error_message, next_run_at, created_at)
SELECT id, task_id, event_type, status, retry_count, worker_id, error_message, next_run_at, created_at
FROM task_history;
DELETE FROM sqlite_sequence WHERE name = 'task_history_long_work';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'task_history_long_work', seq FROM sqlite_sequence WHERE name = 'task_history';
DROP TABLE task_history;
ALTER TABLE task_history_long_work RENAME TO task_history;
CREATE INDEX task_history_task_idx ON task_history (task_id, id);
CREATE VIEW task_events AS SELECT *, id AS recorded_id FROM task_history;
