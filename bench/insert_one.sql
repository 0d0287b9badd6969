-- Raw-SQL baseline: one task per transaction, the columns taskq's insert sets
-- without the history row (defaults fill the rest, as in taskq's insert).
INSERT INTO tasks (id, name, type, payload, priority, max_retries, backoff_seconds, timeout_seconds)
VALUES (gen_random_uuid(), 'bench', 'noop', '{}', 0, 3, 1, 30);
