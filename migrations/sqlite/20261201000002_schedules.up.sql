-- Periodic tasks, as in migrations/postgres: schedules and their audit trail, the
-- scheduler's leadership lease and its terms, and the tick a task was enqueued for.
-- Times are RFC 3339 text in UTC, as everywhere in the SQLite store.

ALTER TABLE tasks ADD COLUMN schedule TEXT;
ALTER TABLE tasks ADD COLUMN tick_at TEXT;

CREATE TABLE schedules (
    name         TEXT    PRIMARY KEY,
    cron         TEXT    NOT NULL,
    timezone     TEXT    NOT NULL,
    task         TEXT    NOT NULL,
    catch_up     TEXT    NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    revision     INTEGER NOT NULL DEFAULT 1,
    next_tick    TEXT    NOT NULL,
    last_tick    TEXT,
    last_task_id BLOB,
    resumed_at   TEXT,
    from_file    INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,

    CONSTRAINT schedules_name_valid
        CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^a-z0-9_.-]*'),
    CONSTRAINT schedules_catch_up_valid CHECK (catch_up IN ('skip', 'latest', 'all')),
    CONSTRAINT schedules_paused_bool CHECK (paused IN (0, 1))
);
CREATE INDEX schedules_due_idx ON schedules (next_tick) WHERE NOT paused;

CREATE TABLE schedule_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule   TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    created_at TEXT    NOT NULL,

    CONSTRAINT schedule_history_event_valid
        CHECK (event IN ('created', 'updated', 'paused', 'resumed', 'deleted'))
);
CREATE INDEX schedule_history_schedule_idx ON schedule_history (schedule, id);

CREATE TABLE leaders (
    name       TEXT PRIMARY KEY,
    leader_id  TEXT NOT NULL,
    elected_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE leader_terms (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL,
    leader_id           TEXT NOT NULL,
    elected_at          TEXT NOT NULL,
    previous_leader_id  TEXT,
    previous_renewed_at TEXT
);
