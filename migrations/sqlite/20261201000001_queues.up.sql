-- Named queues, as in migrations/postgres: a queue per task, queue settings and their
-- audit trail, and counters per queue. On SQLite every write holds the file's write
-- lock, so a claim reads the settings and counts a limited queue's running tasks
-- without any further locking.

ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default'
    CONSTRAINT tasks_queue_name
    CHECK (length(queue) BETWEEN 1 AND 64 AND queue NOT GLOB '*[^a-z0-9_.-]*');

DROP INDEX tasks_claim_idx;
CREATE INDEX tasks_claim_idx ON tasks (queue, priority DESC, run_at, id) WHERE status = 'queued';
DROP INDEX tasks_queued_run_at_idx;
CREATE INDEX tasks_queued_run_at_idx ON tasks (queue, run_at) WHERE status = 'queued';
DROP INDEX tasks_lease_idx;
CREATE INDEX tasks_lease_idx ON tasks (queue, locked_until) WHERE status = 'running';

CREATE TABLE queues (
    name        TEXT    PRIMARY KEY,
    max_running INTEGER,
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,

    CONSTRAINT queues_name_valid
        CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^a-z0-9_.-]*'),
    CONSTRAINT queues_max_running_range CHECK (max_running BETWEEN 1 AND 1000000),
    CONSTRAINT queues_paused_bool CHECK (paused IN (0, 1))
);
INSERT INTO queues (name, created_at, updated_at)
VALUES ('default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE queue_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    max_running INTEGER,
    created_at  TEXT    NOT NULL,

    CONSTRAINT queue_history_event_valid CHECK (event IN ('paused', 'resumed', 'limit_changed'))
);
CREATE INDEX queue_history_queue_idx ON queue_history (queue, id);

ALTER TABLE workers ADD COLUMN queues TEXT NOT NULL DEFAULT '';

-- Counters per queue and status, kept in place by row triggers.
DROP TRIGGER tasks_count_update;
DROP TRIGGER tasks_count_delete;
DROP TRIGGER tasks_count_insert;
DROP TRIGGER tasks_throughput;
DROP TABLE task_counts;
DROP TABLE task_throughput;

CREATE TABLE task_counts (
    queue        TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    tasks        INTEGER NOT NULL DEFAULT 0,
    retry_sum    INTEGER NOT NULL DEFAULT 0,
    with_retries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status)
);
INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
SELECT queue, status, count(*), sum(retry_count), sum(retry_count > 0) FROM tasks GROUP BY queue, status;

CREATE TABLE task_throughput (
    queue     TEXT    NOT NULL,
    minute    TEXT    NOT NULL,
    succeeded INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    PRIMARY KEY (queue, minute)
);
CREATE INDEX task_throughput_minute_idx ON task_throughput (minute);

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
    VALUES (NEW.queue, NEW.status, 1, NEW.retry_count, NEW.retry_count > 0)
    ON CONFLICT (queue, status) DO UPDATE SET tasks = tasks + 1,
        retry_sum = retry_sum + excluded.retry_sum, with_retries = with_retries + excluded.with_retries;
END;

CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1, retry_sum = retry_sum - OLD.retry_count,
        with_retries = with_retries - (OLD.retry_count > 0)
    WHERE queue = OLD.queue AND status = OLD.status;
END;

CREATE TRIGGER tasks_count_update AFTER UPDATE OF status, retry_count ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1, retry_sum = retry_sum - OLD.retry_count,
        with_retries = with_retries - (OLD.retry_count > 0)
    WHERE queue = OLD.queue AND status = OLD.status;
    INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
    VALUES (NEW.queue, NEW.status, 1, NEW.retry_count, NEW.retry_count > 0)
    ON CONFLICT (queue, status) DO UPDATE SET tasks = tasks + 1,
        retry_sum = retry_sum + excluded.retry_sum, with_retries = with_retries + excluded.with_retries;
END;

CREATE TRIGGER tasks_throughput AFTER UPDATE OF status ON tasks
WHEN NEW.status IN ('succeeded', 'failed') AND OLD.status NOT IN ('succeeded', 'failed')
BEGIN
    INSERT INTO task_throughput (queue, minute, succeeded, failed)
    VALUES (NEW.queue, substr(NEW.completed_at, 1, 16) || ':00Z',
            NEW.status = 'succeeded', NEW.status = 'failed')
    ON CONFLICT (queue, minute) DO UPDATE SET
        succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;
END;
