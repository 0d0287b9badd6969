-- The durable queue: tasks, their audit trail, and the live-worker registry.
--
-- The schema enforces the state machine so that no code path can store a task
-- in a shape the rest of taskq does not expect (see docs/design.md, "Task model").

CREATE TYPE task_status AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TYPE task_event AS ENUM (
    'task_queued', 'task_started', 'task_succeeded', 'task_failed', 'retry_scheduled',
    'timeout_occurred', 'worker_lock_expired', 'task_failed_final', 'task_cancelled',
    'task_requeued'
);

CREATE TABLE tasks (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    type            text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}',
    status          task_status NOT NULL DEFAULT 'queued',
    priority        integer     NOT NULL DEFAULT 0,
    retry_count     integer     NOT NULL DEFAULT 0,
    max_retries     integer     NOT NULL DEFAULT 3,
    backoff_seconds integer     NOT NULL DEFAULT 1,
    timeout_seconds integer     NOT NULL DEFAULT 30,
    -- Number of times the task was claimed. Outcome writes are fenced on it, so a
    -- worker that lost its lease can never overwrite a later attempt.
    attempt         integer     NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    result          jsonb,
    worker_id       text,
    locked_until    timestamptz,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,

    CONSTRAINT tasks_name_length CHECK (char_length(name) BETWEEN 1 AND 255),
    CONSTRAINT tasks_type_length CHECK (char_length(type) BETWEEN 1 AND 255),
    CONSTRAINT tasks_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT tasks_max_retries_range CHECK (max_retries BETWEEN 0 AND 100),
    CONSTRAINT tasks_retry_count_range CHECK (retry_count BETWEEN 0 AND max_retries),
    CONSTRAINT tasks_backoff_range CHECK (backoff_seconds BETWEEN 0 AND 86400),
    CONSTRAINT tasks_timeout_range CHECK (timeout_seconds BETWEEN 1 AND 86400),
    CONSTRAINT tasks_attempt_nonnegative CHECK (attempt >= 0),
    CONSTRAINT tasks_completed_at_iff_terminal
        CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    CONSTRAINT tasks_lease_iff_running
        CHECK ((status = 'running') = (locked_until IS NOT NULL)),
    CONSTRAINT tasks_running_has_worker
        CHECK (status <> 'running' OR (worker_id IS NOT NULL AND started_at IS NOT NULL)),
    CONSTRAINT tasks_result_only_when_succeeded
        CHECK (result IS NULL OR status = 'succeeded'),
    CONSTRAINT tasks_idempotency_key_length
        CHECK (idempotency_key IS NULL OR char_length(idempotency_key) BETWEEN 1 AND 255)
);

-- Shaped exactly like the claim query: WHERE status = 'queued' AND run_at <= now()
-- ORDER BY priority DESC, run_at, id.
CREATE INDEX tasks_claim_idx ON tasks (priority DESC, run_at, id) WHERE status = 'queued';
-- The oldest runnable task and the count of scheduled tasks, for stats.
CREATE INDEX tasks_queued_run_at_idx ON tasks (run_at) WHERE status = 'queued';
-- The Rescuer's scan for leases that ran out.
CREATE INDEX tasks_lease_idx ON tasks (locked_until) WHERE status = 'running';
-- The Pruner's scan for old terminal tasks.
CREATE INDEX tasks_completed_idx ON tasks (status, completed_at) WHERE completed_at IS NOT NULL;
-- Listing by status or type, newest first (UUID v7 ids are time-ordered).
CREATE INDEX tasks_status_id_idx ON tasks (status, id DESC);
CREATE INDEX tasks_type_id_idx ON tasks (type, id DESC);
CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE task_history (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event_type    task_event  NOT NULL,
    status        task_status NOT NULL,
    retry_count   integer     NOT NULL,
    worker_id     text,
    error_message text,
    next_run_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT task_history_retry_scheduled_has_next_run
        CHECK ((event_type = 'retry_scheduled') = (next_run_at IS NOT NULL))
);

CREATE INDEX task_history_task_idx ON task_history (task_id, id);

-- Live workers, written by each worker's heartbeat. A task held by a worker that
-- stopped heartbeating is rescued without waiting for its lease to run out.
CREATE TABLE workers (
    worker_id    text        PRIMARY KEY,
    concurrency  integer     NOT NULL,
    running      integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);

-- Counters for /api/stats. Counting a million-row table per request is too slow, and
-- one counter row per status would serialise every claim and acknowledgement on its
-- row lock. So statement-level triggers append signed deltas (no contention), and
-- compact_task_counts() folds them periodically; a read sums a few dozen rows.
CREATE TABLE task_counts (
    status       task_status NOT NULL,
    tasks        bigint      NOT NULL,
    retry_sum    bigint      NOT NULL,
    with_retries bigint      NOT NULL
);

-- Tasks that reached succeeded / failed, per minute, for throughput charts.
CREATE TABLE task_throughput (
    minute    timestamptz NOT NULL,
    succeeded bigint      NOT NULL,
    failed    bigint      NOT NULL
);
CREATE INDEX task_throughput_minute_idx ON task_throughput (minute);

CREATE FUNCTION taskq_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (status, tasks, retry_sum, with_retries)
    SELECT status, count(*), sum(retry_count), count(*) FILTER (WHERE retry_count > 0)
    FROM new_rows GROUP BY status;
    RETURN NULL;
END $$;

CREATE FUNCTION taskq_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (status, tasks, retry_sum, with_retries)
    SELECT status, -count(*), -sum(retry_count), -count(*) FILTER (WHERE retry_count > 0)
    FROM old_rows GROUP BY status;
    RETURN NULL;
END $$;

CREATE FUNCTION taskq_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (status, tasks, retry_sum, with_retries)
    SELECT status, sum(n), sum(r), sum(w)
    FROM (
        SELECT status, 1 AS n, retry_count AS r, (retry_count > 0)::int AS w FROM new_rows
        UNION ALL
        SELECT status, -1, -retry_count, -((retry_count > 0)::int) FROM old_rows
    ) AS d
    GROUP BY status
    HAVING sum(n) <> 0 OR sum(r) <> 0 OR sum(w) <> 0;

    INSERT INTO task_throughput (minute, succeeded, failed)
    SELECT date_trunc('minute', now()),
           count(*) FILTER (WHERE n.status = 'succeeded'),
           count(*) FILTER (WHERE n.status = 'failed')
    FROM new_rows AS n JOIN old_rows AS o USING (id)
    WHERE n.status IN ('succeeded', 'failed') AND o.status NOT IN ('succeeded', 'failed')
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION taskq_count_inserted();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION taskq_count_deleted();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION taskq_count_updated();
