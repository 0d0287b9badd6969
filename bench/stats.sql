-- Raw-SQL baseline of GET /api/stats: the four queries taskq's stats snapshot runs
-- (counters, queue shape, throughput, live workers), one after the other.
SELECT status, sum(tasks)::int8, sum(retry_sum)::int8, sum(with_retries)::int8
FROM task_counts GROUP BY status;
SELECT (SELECT count(*) FROM tasks WHERE status = 'queued' AND run_at > now()) AS scheduled,
       (SELECT extract(epoch FROM now() - min(run_at))::float8
        FROM tasks WHERE status = 'queued' AND run_at <= now()) AS oldest;
SELECT minute, sum(succeeded)::int8, sum(failed)::int8
FROM task_throughput
WHERE minute > date_trunc('minute', now()) - make_interval(mins => 15)
GROUP BY minute ORDER BY minute;
SELECT * FROM workers WHERE last_seen_at > now() - make_interval(secs => 15) ORDER BY worker_id;
