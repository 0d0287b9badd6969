-- Raw-SQL baseline of a drain: claim.sql then complete.sql, two commits per batch.
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
UPDATE tasks SET
    status = 'succeeded',
    locked_until = NULL,
    completed_at = now(),
    updated_at = now()
WHERE status = 'running' AND worker_id = 'pgbench-' || (:client_id)::text AND locked_until >= now();
