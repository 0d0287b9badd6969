-- Long work (docs/design.md, "Long work"): a handler may snooze its task, report
-- progress (which restarts its attempt's deadline), and a running task may be
-- cancelled.

-- 1. Snoozes. A handler that answers "not yet, try again in D" puts its task back in
-- the queue for later without spending a retry; `snooze_count` counts those answers
-- and `max_snoozes` bounds them (one more fails the task for good).
ALTER TABLE tasks
    ADD COLUMN max_snoozes integer NOT NULL DEFAULT 25
        CONSTRAINT tasks_max_snoozes_range CHECK (max_snoozes BETWEEN 0 AND 10000),
    ADD COLUMN snooze_count integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT tasks_snooze_count_range CHECK (snooze_count BETWEEN 0 AND max_snoozes);

-- A snooze is recorded as `task_snoozed`, with the time it runs again in `next_run_at`
-- like a scheduled retry. The new value cannot be used in this transaction, so the
-- constraint compares the event's name as text.
ALTER TYPE task_event ADD VALUE 'task_snoozed';
ALTER TABLE task_history
    DROP CONSTRAINT task_history_retry_scheduled_has_next_run,
    ADD CONSTRAINT task_history_next_run_iff_run_later
        CHECK ((event_type::text IN ('retry_scheduled', 'task_snoozed')) = (next_run_at IS NOT NULL));
