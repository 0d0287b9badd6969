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

-- 2. Progress. A handler's latest report on its running attempt: `{"percent", "message",
-- "at", "attempt"}`. Each report written restarts the attempt's lease, so an event that
-- ends the attempt records the time of its last report (`progress_at`): `taskq check`
-- measures the lease from it, as the fence did. A report writes neither `updated_at`
-- nor history: it changes no state.
ALTER TABLE tasks ADD COLUMN progress jsonb
    CONSTRAINT tasks_progress_is_object CHECK (jsonb_typeof(progress) = 'object');
ALTER TABLE task_history ADD COLUMN progress_at timestamptz;

-- 3. Cancelling a running task. The request marks the task and leaves it running; its
-- worker stops it and the outcome write ends it `cancelled`. A task whose cancel was
-- requested never goes back to the queue, except by a manual retry (which clears it).
ALTER TABLE tasks
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancel_reason text
        CONSTRAINT tasks_cancel_reason_length CHECK (char_length(cancel_reason) BETWEEN 1 AND 255),
    ADD CONSTRAINT tasks_cancel_requested_not_queued
        CHECK (cancel_requested_at IS NULL OR status <> 'queued'),
    ADD CONSTRAINT tasks_cancel_reason_only_when_requested
        CHECK (cancel_reason IS NULL OR cancel_requested_at IS NOT NULL);

-- The view of every event (20261202000001_lean_runs) gains `progress_at`: a success held
-- by its task row reads it from the task's progress, when that is of the same attempt.
CREATE OR REPLACE VIEW task_events AS
    SELECT id, task_id, event_type, status, retry_count, worker_id, error_message, next_run_at,
           created_at, id AS recorded_id, progress_at
    FROM task_history
    UNION ALL
    SELECT started_id, task_id, 'task_started', 'running',
           retry_count - (event_type IN ('task_failed', 'timeout_occurred', 'worker_lock_expired')
                          AND status = 'queued')::int,
           worker_id, NULL, NULL, started_at, id, NULL
    FROM task_history
    WHERE started_id IS NOT NULL
    UNION ALL
    SELECT started_event_id, id, 'task_started', 'running', retry_count, worker_id, NULL, NULL,
           started_at, started_event_id, NULL
    FROM tasks
    WHERE status = 'running' AND started_event_id IS NOT NULL
    UNION ALL
    SELECT e.id, t.id, e.event_type, e.status, t.retry_count, t.worker_id, NULL, NULL,
           e.created_at, t.completed_event_id,
           CASE WHEN e.event_type = 'task_succeeded' AND (t.progress ->> 'attempt')::int = t.attempt
                THEN (t.progress ->> 'at')::timestamptz END
    FROM tasks AS t
    CROSS JOIN LATERAL (VALUES
        (t.started_event_id, 'task_started'::task_event, 'running'::task_status, t.started_at),
        (t.completed_event_id, 'task_succeeded', 'succeeded', t.completed_at)
    ) AS e (id, event_type, status, created_at)
    WHERE t.status = 'succeeded' AND t.completed_event_id IS NOT NULL AND e.id IS NOT NULL;

-- The note of a `task_cancelled` event, as `store::cancel_note` writes it: who cancelled
-- the task, why if they said, and how its running attempt stopped.
CREATE FUNCTION taskq_cancel_note(p_by text, p_reason text, p_stopped text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'cancelled by ' || p_by || coalesce(' (reason: ' || p_reason || ')', '')
           || coalesce('; ' || p_stopped, '')
$$;
