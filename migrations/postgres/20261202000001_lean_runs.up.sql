-- Fewer writes for each task run. Every update of a task changes its status, which
-- partial indexes read, so none is a HOT update: each writes a new entry in every
-- index of the table whose predicate it meets. docs/benchmarks.md ("What a task
-- costs") counts the records before and after.

-- 1. A run writes no history row unless it fails. The claim no longer inserts a
-- `task_started` event: it draws the event's id from the history's sequence and keeps
-- it on the task (`started_event_id`, beside `started_at` and `worker_id`, which the
-- claim writes anyway). A success inserts no `task_succeeded` event either: it draws
-- that id into `completed_event_id`, beside `completed_at`. A failure, rescue or
-- release copies the start's id and time onto the event it inserts. The view
-- `task_events` shows every event with the id drawn for it: the events, their ids and
-- their order are what they were.
ALTER TABLE tasks ADD COLUMN started_event_id bigint, ADD COLUMN completed_event_id bigint;
-- A task that was running when this migration ran has its start as a row already, and
-- no `started_event_id`: its end copies a NULL id, and the view shows no second start.
ALTER TABLE task_history ADD COLUMN started_id bigint, ADD COLUMN started_at timestamptz;

-- The live stream reads the events after an id; successes are found by theirs. Only
-- succeeded tasks have an entry (one per task, written by its success).
CREATE INDEX tasks_succeeded_idx ON tasks (completed_event_id) WHERE status = 'succeeded';

-- Every event of every task, as the history API, the live stream and `taskq check`
-- read them:
--   - the events recorded as rows;
--   - the start of an attempt that ended otherwise than in success, recorded with its
--     end; its retry count is the task's when it was claimed (a failure that requeued
--     its task counted one retry more);
--   - the start of an attempt that runs, from its task;
--   - the start and the success of a succeeded task, from the task.
-- `recorded_id` is the id under which the event is found: its own id, except for an
-- attempt's start recorded with its end, whose id is higher. A reader that asks for
-- the events after an id asks for `recorded_id` after it too (the same events), which
-- reaches each part through an index.
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

-- 2. Indexes that every run paid for, for reads that do without them:
--    - listing by status or type walks the primary key newest first (ids are UUID v7,
--      time-ordered) and filters;
--    - the Pruner walks the primary key from the oldest id, bounded by the id of the
--      retention cutoff (taskq_v7_floor), since no task finished before it was created.
--    - a queue's shape (scheduled tasks, oldest runnable) is read from the claim index,
--      one priority at a time. The (queue, run_at) index it was read from also matched
--      the claim's conditions, and on a table whose statistics lagged a burst the
--      planner claimed through it, sorting the whole backlog for every claim.
DROP INDEX tasks_status_id_idx;
DROP INDEX tasks_type_id_idx;
DROP INDEX tasks_completed_idx;
DROP INDEX tasks_queued_run_at_idx;

-- Failed and cancelled tasks are few, and what an operator looks for: finding them by
-- status, or by type among them, must not walk every succeeded task. These two cost
-- nothing to a run that succeeds.
CREATE INDEX tasks_unsuccessful_idx ON tasks (id DESC) WHERE status IN ('failed', 'cancelled');
CREATE INDEX tasks_unsuccessful_type_idx ON tasks (type, id DESC) WHERE status IN ('failed', 'cancelled');

-- The smallest UUID v7 of the millisecond `at`: ids below it were made before.
CREATE FUNCTION taskq_v7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- 3. Room on every page for the new versions of its rows. An update whose new version
-- fits on the old one's page logs only the bytes that changed and needs no lock
-- record for the old version; at the default fillfactor (100) most did not fit.
ALTER TABLE tasks SET (fillfactor = 50);
