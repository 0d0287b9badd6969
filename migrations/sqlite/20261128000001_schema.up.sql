-- The embedded store: the same tables and invariants as migrations/postgres, in
-- SQLite's terms. Timestamps are RFC 3339 text in UTC written by taskq itself (never
-- SQLite's own clock), which sorts in time order; ids are 16-byte UUID blobs.

CREATE TABLE tasks (
    id              BLOB    PRIMARY KEY,
    name            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    payload         TEXT    NOT NULL DEFAULT '{}',
    status          TEXT    NOT NULL DEFAULT 'queued',
    priority        INTEGER NOT NULL DEFAULT 0,
    retry_count     INTEGER NOT NULL DEFAULT 0,
    max_retries     INTEGER NOT NULL DEFAULT 3,
    backoff_seconds INTEGER NOT NULL DEFAULT 1,
    timeout_seconds INTEGER NOT NULL DEFAULT 30,
    attempt         INTEGER NOT NULL DEFAULT 0,
    run_at          TEXT    NOT NULL,
    last_error      TEXT,
    result          TEXT,
    worker_id       TEXT,
    locked_until    TEXT,
    idempotency_key TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    started_at      TEXT,
    completed_at    TEXT,

    CONSTRAINT tasks_status_valid
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT tasks_name_length CHECK (length(name) BETWEEN 1 AND 255),
    CONSTRAINT tasks_type_length CHECK (length(type) BETWEEN 1 AND 255),
    CONSTRAINT tasks_payload_is_object CHECK (json_type(payload) = 'object'),
    CONSTRAINT tasks_priority_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT tasks_max_retries_range CHECK (max_retries BETWEEN 0 AND 100),
    CONSTRAINT tasks_retry_count_range CHECK (retry_count BETWEEN 0 AND max_retries),
    CONSTRAINT tasks_backoff_range CHECK (backoff_seconds BETWEEN 0 AND 86400),
    CONSTRAINT tasks_timeout_range CHECK (timeout_seconds BETWEEN 1 AND 86400),
    CONSTRAINT tasks_attempt_nonnegative CHECK (attempt >= 0),
    CONSTRAINT tasks_completed_at_iff_terminal
        CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    CONSTRAINT tasks_lease_iff_running
        CHECK ((status = 'running') = (locked_until IS NOT NULL)),
    CONSTRAINT tasks_running_has_worker
        CHECK (status <> 'running' OR (worker_id IS NOT NULL AND started_at IS NOT NULL)),
    CONSTRAINT tasks_result_only_when_succeeded
        CHECK (result IS NULL OR status = 'succeeded'),
    CONSTRAINT tasks_idempotency_key_length
        CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255)
);

CREATE INDEX tasks_claim_idx ON tasks (priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX tasks_queued_run_at_idx ON tasks (run_at) WHERE status = 'queued';
CREATE INDEX tasks_lease_idx ON tasks (locked_until) WHERE status = 'running';
CREATE INDEX tasks_completed_idx ON tasks (status, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX tasks_status_id_idx ON tasks (status, id DESC);
CREATE INDEX tasks_type_id_idx ON tasks (type, id DESC);
CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE task_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id       BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    event_type    TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    retry_count   INTEGER NOT NULL,
    worker_id     TEXT,
    error_message TEXT,
    next_run_at   TEXT,
    created_at    TEXT    NOT NULL,

    CONSTRAINT task_history_event_type_valid CHECK (event_type IN (
        'task_queued', 'task_started', 'task_succeeded', 'task_failed', 'retry_scheduled',
        'timeout_occurred', 'worker_lock_expired', 'task_failed_final', 'task_cancelled',
        'task_requeued')),
    CONSTRAINT task_history_status_valid
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT task_history_retry_scheduled_has_next_run
        CHECK ((event_type = 'retry_scheduled') = (next_run_at IS NOT NULL))
);

CREATE INDEX task_history_task_idx ON task_history (task_id, id);

CREATE TABLE workers (
    worker_id    TEXT    PRIMARY KEY,
    concurrency  INTEGER NOT NULL,
    running      INTEGER NOT NULL,
    started_at   TEXT    NOT NULL,
    last_seen_at TEXT    NOT NULL
);

-- One node writes at a time on SQLite, so plain counter rows kept by row triggers
-- cost nothing in contention (PostgreSQL uses append-only deltas instead).
CREATE TABLE task_counts (
    status       TEXT    PRIMARY KEY,
    tasks        INTEGER NOT NULL DEFAULT 0,
    retry_sum    INTEGER NOT NULL DEFAULT 0,
    with_retries INTEGER NOT NULL DEFAULT 0
);
INSERT INTO task_counts (status) VALUES
    ('queued'), ('running'), ('succeeded'), ('failed'), ('cancelled');

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
