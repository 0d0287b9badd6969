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
        RETURN;
    END IF;
    IF locked_limited THEN
        PERFORM pg_advisory_xact_lock(29809, hashtext(p_queue));
    ELSE
        PERFORM pg_advisory_xact_lock_shared(29809, hashtext(p_queue));
    END IF;
    SELECT * INTO settings FROM queues WHERE name = p_queue;
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
DROP FUNCTION taskq_claim_planned(text);
DROP TABLE flow_history;
DROP TABLE task_types;
ALTER TABLE queues DROP COLUMN rate_max, DROP COLUMN rate_per_ms, DROP COLUMN rate_tat,
    DROP COLUMN max_per_key, DROP COLUMN keyed;
ALTER TABLE tasks DROP COLUMN concurrency_key;
