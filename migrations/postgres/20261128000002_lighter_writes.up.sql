-- Two costs taken off every claim and acknowledgement (docs/benchmarks.md measures
-- them).

-- 1. task_history loses its foreign key to tasks. Every event is inserted by the
-- statement that changes its task, in the same transaction, and the Pruner deletes a
-- task's events with the task in one statement: what the key checked holds by
-- construction. The check itself was a trigger call and an index probe of tasks for
-- every event, three per task run.
ALTER TABLE task_history DROP CONSTRAINT task_history_task_id_fkey;

-- 2. The throughput count no longer joins the statement's old and new rows. Transition
-- tables have no statistics, so the join was planned as a nested loop: quadratic in
-- the batch, and the largest single cost of a 500-task acknowledgement. A task reached
-- succeeded or failed in this statement exactly when its new row has that status and
-- a completed_at of now(): completed_at is set, to now(), only by the statements that
-- make a task terminal, and a terminal task never becomes terminal again without
-- first being queued.
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
