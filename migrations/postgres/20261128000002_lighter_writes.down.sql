DELETE FROM task_history AS h WHERE NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.id = h.task_id);
ALTER TABLE task_history ADD CONSTRAINT task_history_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;

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
           count(*) FILTER (WHERE n.status = 'succeeded'),
           count(*) FILTER (WHERE n.status = 'failed')
    FROM new_rows AS n JOIN old_rows AS o USING (id)
    WHERE n.status IN ('succeeded', 'failed') AND o.status NOT IN ('succeeded', 'failed')
    HAVING count(*) > 0;
    RETURN NULL;
END $$;
