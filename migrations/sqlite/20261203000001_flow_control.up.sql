-- Flow control, as in migrations/postgres: concurrency keys, rate limits per queue and
-- per task type, and their audit trail. Every claim holds the file's write lock, so the
-- rate state and the running counts a claim reads are exact without further locking.

ALTER TABLE tasks ADD COLUMN concurrency_key TEXT
    CONSTRAINT tasks_concurrency_key_length CHECK (length(concurrency_key) BETWEEN 1 AND 255);

ALTER TABLE queues ADD COLUMN rate_max INTEGER
    CONSTRAINT queues_rate_max_range CHECK (rate_max BETWEEN 1 AND 1000000);
ALTER TABLE queues ADD COLUMN rate_per_ms INTEGER
    CONSTRAINT queues_rate_per_ms_range CHECK (rate_per_ms BETWEEN 1 AND 86400000);
ALTER TABLE queues ADD COLUMN rate_tat TEXT;
ALTER TABLE queues ADD COLUMN max_per_key INTEGER
    CONSTRAINT queues_max_per_key_range CHECK (max_per_key BETWEEN 1 AND 1000000);
ALTER TABLE queues ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;

CREATE TABLE task_types (
    name        TEXT    PRIMARY KEY,
    rate_max    INTEGER,
    rate_per_ms INTEGER,
    rate_tat    TEXT,
    max_per_key INTEGER,
    updated_at  TEXT    NOT NULL,

    CONSTRAINT task_types_rate_valid CHECK ((rate_max IS NULL) = (rate_per_ms IS NULL)
        AND rate_max BETWEEN 1 AND 1000000 AND rate_per_ms BETWEEN 1 AND 86400000),
    CONSTRAINT task_types_max_per_key_range CHECK (max_per_key BETWEEN 1 AND 1000000)
);

CREATE TABLE flow_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    rate_max    INTEGER,
    rate_per_ms INTEGER,
    max_per_key INTEGER,
    created_at  TEXT    NOT NULL,

    CONSTRAINT flow_history_scope_valid CHECK (scope IN ('queue', 'type'))
);
