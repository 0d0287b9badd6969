-- Named queues: every task belongs to one; a queue may be paused or limited to a
-- number of running tasks across all workers (docs/design.md, "Queues").

-- Queue names are identifiers, compared byte by byte (COLLATE "C"): index insertions
-- and lookups then never go through the locale's collation. The check runs for every
-- inserted task, so it avoids a bounded repetition (`^[...]{1,64}$`), which costs
-- PostgreSQL's regex engine about 3 µs a row, against 0.4 µs for this form.
ALTER TABLE tasks ADD COLUMN queue text COLLATE "C" NOT NULL DEFAULT 'default'
    CONSTRAINT tasks_queue_name CHECK (char_length(queue) BETWEEN 1 AND 64 AND queue !~ '[^a-z0-9_.-]');

-- The claim reads one queue at a time: its index leads with the queue. The same
-- goes for the per-queue shape (scheduled count, oldest runnable task) and for the
-- count of a limited queue's running tasks, which rides on the lease index (the
-- Rescuer scans that small index whole, as it did before).
DROP INDEX tasks_claim_idx;
CREATE INDEX tasks_claim_idx ON tasks (queue, priority DESC, run_at, id) WHERE status = 'queued';
DROP INDEX tasks_queued_run_at_idx;
CREATE INDEX tasks_queued_run_at_idx ON tasks (queue, run_at) WHERE status = 'queued';
DROP INDEX tasks_lease_idx;
CREATE INDEX tasks_lease_idx ON tasks (queue, locked_until) WHERE status = 'running';

-- Every queue a task was ever created in, or that an operator configured. A task's
-- insert adds its queue here in the same statement, so a queue with tasks always has
-- a row (the claim relies on it).
CREATE TABLE queues (
    name        text        COLLATE "C" PRIMARY KEY,
    -- At most this many of the queue's tasks run (or wait prefetched) at once, across
    -- every worker; NULL for no limit.
    max_running integer,
    paused      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT queues_name_valid CHECK (char_length(name) BETWEEN 1 AND 64 AND name !~ '[^a-z0-9_.-]'),
    CONSTRAINT queues_max_running_range CHECK (max_running BETWEEN 1 AND 1000000)
);
INSERT INTO queues (name) VALUES ('default');

-- The audit trail of queue settings. `taskq check` reads it to verify that no task
-- started in a paused queue and that no limit was exceeded. `created_at` of a pause
-- is taken once every claim that could have missed it has committed.
CREATE TABLE queue_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        COLLATE "C" NOT NULL,
    event       text        NOT NULL,
    max_running integer,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),

    CONSTRAINT queue_history_event_valid CHECK (event IN ('paused', 'resumed', 'limit_changed'))
);
CREATE INDEX queue_history_queue_idx ON queue_history (queue, id);

-- Workers say which queues they serve, as WORKER_QUEUES does: "default=5,emails=20".
ALTER TABLE workers ADD COLUMN queues text NOT NULL DEFAULT '';

-- Counters and throughput per queue as well as per status.
ALTER TABLE task_counts ADD COLUMN queue text COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE task_throughput ADD COLUMN queue text COLLATE "C" NOT NULL DEFAULT 'default';

CREATE OR REPLACE FUNCTION taskq_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
    SELECT queue, status, count(*), sum(retry_count), count(*) FILTER (WHERE retry_count > 0)
    FROM new_rows GROUP BY queue, status;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION taskq_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
    SELECT queue, status, -count(*), -sum(retry_count), -count(*) FILTER (WHERE retry_count > 0)
    FROM old_rows GROUP BY queue, status;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION taskq_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
    SELECT queue, status, sum(n), sum(r), sum(w)
    FROM (
        SELECT queue, status, 1 AS n, retry_count AS r, (retry_count > 0)::int AS w FROM new_rows
        UNION ALL
        SELECT queue, status, -1, -retry_count, -((retry_count > 0)::int) FROM old_rows
    ) AS d
    GROUP BY queue, status
    HAVING sum(n) <> 0 OR sum(r) <> 0 OR sum(w) <> 0;

    -- Only statements that finish tasks touch task_throughput: a claim that opened it
    -- (and its index) would lock more relations than a backend's 16 fast-path slots
    -- hold, now that it reads `queues` too (batch_sql.rs tests this).
    IF EXISTS (SELECT 1 FROM new_rows WHERE status IN ('succeeded', 'failed') AND completed_at = now()) THEN
        INSERT INTO task_throughput (queue, minute, succeeded, failed)
        SELECT queue, date_trunc('minute', now()),
               count(*) FILTER (WHERE status = 'succeeded'),
               count(*) FILTER (WHERE status = 'failed')
        FROM new_rows
        WHERE status IN ('succeeded', 'failed') AND completed_at = now()
        GROUP BY queue;
    END IF;
    RETURN NULL;
END $$;

-- The gate every claim passes, inside the claim statement: how many tasks of
-- `p_queue` the claim may take (0 when the queue is paused or unknown, at most what
-- its limit leaves free), and the time the claimed attempts start.
--
-- Claims hold the queue's advisory lock until they commit: shared for a queue without
-- a limit, exclusive for one with. A settings change takes it exclusively, so it waits
-- for every claim that could have read the old settings, and the claims after it read
-- the new ones. The function is VOLATILE, so each of its queries takes a fresh
-- snapshot: after the lock, it sees every claim and completion committed before,
-- which the claim statement's own snapshot (taken before the lock) could not. That is
-- what makes the running count of a limited queue exact under concurrent claims.
CREATE FUNCTION taskq_claim_gate(p_queue text, p_wanted integer,
                                 OUT allowed integer, OUT claimed_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    locked_limited boolean;
    settings queues%ROWTYPE;
BEGIN
    allowed := 0;
    claimed_at := clock_timestamp();
    SELECT max_running IS NOT NULL INTO locked_limited FROM queues WHERE name = p_queue;
    IF NOT FOUND THEN
        RETURN; -- no task was ever created in it
    END IF;
    IF locked_limited THEN
        PERFORM pg_advisory_xact_lock(29809, hashtext(p_queue));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(29809, hashtext(p_queue));
    END IF;
    SELECT * INTO settings FROM queues WHERE name = p_queue;
    -- A limit set while this claim waited needs the exclusive lock: claim next time.
    IF settings.paused OR (settings.max_running IS NOT NULL AND NOT locked_limited) THEN
        RETURN;
    END IF;
    allowed := p_wanted;
    IF settings.max_running IS NOT NULL THEN
        allowed := greatest(0, least(p_wanted, settings.max_running - (
            SELECT count(*) FROM tasks WHERE queue = p_queue AND status = 'running')::integer));
    END IF;
    claimed_at := clock_timestamp();
END $$;
