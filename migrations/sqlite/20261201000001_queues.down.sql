DROP TRIGGER tasks_throughput;
DROP TRIGGER tasks_count_update;
DROP TRIGGER tasks_count_delete;
DROP TRIGGER tasks_count_insert;
DROP TABLE task_throughput;
DROP TABLE task_counts;

CREATE TABLE task_counts (
    status       TEXT    PRIMARY KEY,
    tasks        INTEGER NOT NULL DEFAULT 0,
    retry_sum    INTEGER NOT NULL DEFAULT 0,
    with_retries INTEGER NOT NULL DEFAULT 0
);
INSERT INTO task_counts (status) VALUES
    ('queued'), ('running'), ('succeeded'), ('failed'), ('cancelled');
UPDATE task_counts SET
    tasks = (SELECT count(*) FROM tasks AS t WHERE t.status = task_counts.status),
    retry_sum = (SELECT coalesce(sum(retry_count), 0) FROM tasks AS t WHERE t.status = task_counts.status),
    with_retries = (SELECT count(*) FROM tasks AS t WHERE t.status = task_counts.status AND retry_count > 0);

CREATE TABLE task_throughput (
    minute    TEXT    PRIMARY KEY,
    succeeded INTEGER NOT NULL,
    failed    INTEGER NOT NULL
);

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks + 1, retry_sum = retry_sum + NEW.retry_count,
        with_retries = with_retries + (NEW.retry_count > 0)
    WHERE status = NEW.status;
END;

CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1, retry_sum = retry_sum - OLD.retry_count,
        with_retries = with_retries - (OLD.retry_count > 0)
    WHERE status = OLD.status;
END;

CREATE TRIGGER tasks_count_update AFTER UPDATE OF status, retry_count ON tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1, retry_sum = retry_sum - OLD.retry_count,
        with_retries = with_retries - (OLD.retry_count > 0)
    WHERE status = OLD.status;
    UPDATE task_counts SET tasks = tasks + 1, retry_sum = retry_sum + NEW.retry_count,
        with_retries = with_retries + (NEW.retry_count > 0)
    WHERE status = NEW.status;
END;

CREATE TRIGGER tasks_throughput AFTER UPDATE OF status ON tasks
WHEN NEW.status IN ('succeeded', 'failed') AND OLD.status NOT IN ('succeeded', 'failed')
BEGIN
    INSERT INTO task_throughput (minute, succeeded, failed)
    VALUES (substr(NEW.completed_at, 1, 16) || ':00Z',
            NEW.status = 'succeeded', NEW.status = 'failed')
    ON CONFLICT (minute) DO UPDATE SET
        succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;
END;

ALTER TABLE workers DROP COLUMN queues;
DROP TABLE queue_history;
DROP TABLE queues;

DROP INDEX tasks_lease_idx;
CREATE INDEX tasks_lease_idx ON tasks (locked_until) WHERE status = 'running';
DROP INDEX tasks_queued_run_at_idx;
CREATE INDEX tasks_queued_run_at_idx ON tasks (run_at) WHERE status = 'queued';
DROP INDEX tasks_claim_idx;
CREATE INDEX tasks_claim_idx ON tasks (priority DESC, run_at, id) WHERE status = 'queued';

ALTER TABLE tasks DROP COLUMN queue;
