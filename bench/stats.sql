-- Raw-SQL baseline of GET /api/stats: the five queries taskq's stats snapshot runs
-- (counters, each queue's shape, throughput, live workers, queue settings), one
-- after the other.
SELECT queue, status, sum(tasks)::int8, sum(retry_sum)::int8, sum(with_retries)::int8
FROM task_counts GROUP BY queue, status;
SELECT q.name,
       (SELECT count(*) FROM tasks
        WHERE queue = q.name AND status = 'queued' AND run_at > now()) AS scheduled,
       (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM tasks
        WHERE queue = q.name AND status = 'queued' AND run_at <= now()) AS oldest
FROM queues AS q;
SELECT queue, minute, sum(succeeded)::int8, sum(failed)::int8
FROM task_throughput
WHERE minute > date_trunc('minute', now()) - make_interval(mins => 15)
GROUP BY queue, minute ORDER BY minute;
SELECT * FROM workers WHERE last_seen_at > now() - make_interval(secs => 15) ORDER BY worker_id;
SELECT name, max_running, paused, updated_at FROM queues ORDER BY name;
