-- Raw-SQL baseline: claim up to :batch runnable tasks for this client in one
-- statement, the way taskq claims (same table, same index, same lease columns), but
-- without the history row. One statement, one commit.
WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status = 'queued' AND queue = 'default' AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks AS t SET
    status = 'running',
    worker_id = 'pgbench-' || (:client_id)::text,
    attempt = t.attempt + 1,
    started_at = now(),
    updated_at = now(),
    locked_until = now() + make_interval(secs => t.timeout_seconds + 10)
WHERE t.id = ANY (ARRAY(SELECT id FROM picked));
