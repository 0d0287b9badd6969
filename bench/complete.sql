-- Raw-SQL baseline: mark every task this client holds as succeeded, fenced on the
-- client's lease as taskq fences on its own, without the history row. One commit.
UPDATE tasks SET
    status = 'succeeded',
    locked_until = NULL,
    completed_at = now(),
    updated_at = now()
WHERE status = 'running' AND worker_id = 'pgbench-' || (:client_id)::text AND locked_until >= now();
