DROP FUNCTION taskq_claim_gate(text, integer);

CREATE OR REPLACE FUNCTION taskq_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (status, tasks, retry_sum, with_retries)
    SELECT status, count(*), sum(retry_count), count(*) FILTER (WHERE retry_count > 0)
    FROM new_rows GROUP BY status;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION taskq_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts (status, tasks, retry_sum, with_retries)
    SELECT status, -count(*), -sum(retry_count), -count(*) FILTER (WHERE retry_count > 0)
    FROM old_rows GROUP BY status;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION taskq_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
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
           count(*) FILTER (WHERE status = 'succeeded'),
           count(*) FILTER (WHERE status = 'failed')
    FROM new_rows
    WHERE status IN ('succeeded', 'failed') AND completed_at = now()
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

ALTER TABLE task_throughput DROP COLUMN queue;
ALTER TABLE task_counts DROP COLUMN queue;
ALTER TABLE workers DROP COLUMN queues;
DROP TABLE queue_history;
DROP TABLE queues;

DROP INDEX tasks_lease_idx;
CREATE INDEX tasks_lease_idx ON tasks (locked_until) WHERE status = 'running';
DROP INDEX tasks_queued_run_at_idx;
CREATE INDEX tasks_queued_run_at_idx ON tasks (run_at) WHERE status = 'queued';
DROP INDEX tasks_claim_idx;
CREATE INDEX tasks_claim_idx ON tasks (priority DESC, run_at, id) WHERE status = 'queued';

ALTER TABLE tasks DROP COLUMN queue;
