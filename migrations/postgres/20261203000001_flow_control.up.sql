-- Flow control: rate limits per queue and per task type, and concurrency keys
-- (docs/design.md, "Flow control").

-- A task may name a concurrency key (a tenant, an account): no more of a queue's tasks
-- with one key run at once than the key limit allows.
ALTER TABLE tasks ADD COLUMN concurrency_key text
    CONSTRAINT tasks_concurrency_key_length CHECK (char_length(concurrency_key) BETWEEN 1 AND 255);

-- A queue's rate limit (`rate_max` starts per `rate_per_ms`) is a GCRA whose state is
-- `rate_tat`, the earliest time the next start may take; `max_per_key` is the key
-- limit of its tasks (1 when unset). `keyed` is set by the first insert of a task
-- with a key and tells the claim that it must count keys.
ALTER TABLE queues
    ADD COLUMN rate_max    integer,
    ADD COLUMN rate_per_ms bigint,
    ADD COLUMN rate_tat    timestamptz,
    ADD COLUMN max_per_key integer,
    ADD COLUMN keyed       boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT queues_rate_valid CHECK ((rate_max IS NULL) = (rate_per_ms IS NULL)
        AND rate_max BETWEEN 1 AND 1000000 AND rate_per_ms BETWEEN 1 AND 86400000),
    ADD CONSTRAINT queues_max_per_key_range CHECK (max_per_key BETWEEN 1 AND 1000000);

-- Flow settings of a task type, in whatever queue its tasks wait: a rate limit shared
-- by every queue, and a key limit that overrides the queue's. A type without settings
-- has no row: a claim finds out with one look at an empty table.
CREATE TABLE task_types (
    name        text        COLLATE "C" PRIMARY KEY,
    rate_max    integer,
    rate_per_ms bigint,
    rate_tat    timestamptz,
    max_per_key integer,
    updated_at  timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT task_types_rate_valid CHECK ((rate_max IS NULL) = (rate_per_ms IS NULL)
        AND rate_max BETWEEN 1 AND 1000000 AND rate_per_ms BETWEEN 1 AND 86400000),
    CONSTRAINT task_types_max_per_key_range CHECK (max_per_key BETWEEN 1 AND 1000000)
);

-- The audit trail of flow settings, one row per change with the settings after it, for
-- `taskq check`. `created_at` is taken once every claim that read the old settings
-- has committed.
CREATE TABLE flow_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       text        NOT NULL,
    name        text        COLLATE "C" NOT NULL,
    rate_max    integer,
    rate_per_ms bigint,
    max_per_key integer,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),

    CONSTRAINT flow_history_scope_valid CHECK (scope IN ('queue', 'type'))
);

-- Whether a claim of `p_queue` must be planned task by task (src/store/flow.rs) rather
-- than taken from the head of the queue: it has a rate limit or keyed tasks, or some
-- task type has flow settings.
CREATE FUNCTION taskq_claim_planned(p_queue text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT rate_max IS NOT NULL OR keyed FROM queues WHERE name = p_queue), false)
        OR EXISTS (SELECT 1 FROM task_types)
$$;

-- The gate of the head-of-queue claim, as before, but taking nothing from a queue whose
-- claims must be planned: those go through the planned claim, which holds the queue's
-- lock exclusively.
CREATE OR REPLACE FUNCTION taskq_claim_gate(p_queue text, p_wanted integer,
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
    IF settings.paused OR (settings.max_running IS NOT NULL AND NOT locked_limited)
       OR settings.rate_max IS NOT NULL OR settings.keyed OR EXISTS (SELECT 1 FROM task_types) THEN
        RETURN;
    END IF;
    allowed := p_wanted;
    IF settings.max_running IS NOT NULL THEN
        allowed := greatest(0, least(p_wanted, settings.max_running - (
            SELECT count(*) FROM tasks WHERE queue = p_queue AND status = 'running')::integer));
    END IF;
    claimed_at := clock_timestamp();
END $$;
