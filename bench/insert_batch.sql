-- Raw-SQL baseline: :batch tasks per statement (and per transaction), without history.
INSERT INTO tasks (id, name, type, payload, priority, max_retries, backoff_seconds, timeout_seconds)
SELECT gen_random_uuid(), 'bench', 'noop', '{}', 0, 3, 1, 30
FROM generate_series(1, :batch);
