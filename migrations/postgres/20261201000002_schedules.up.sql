-- Periodic tasks (docs/design.md, "Schedules"): schedules and their audit trail, the
-- scheduler's leadership lease and its terms, and the tick a task was enqueued for.
--
-- A tick's task carries its schedule and tick, and its id is derived from the two
-- (`tick_task_id` in src/store/schedules.rs): the primary key makes a second task for
-- one (schedule, tick) impossible, whoever inserts it. No index is added to `tasks`,
-- so ordinary tasks pay nothing: every statement that writes `tasks` locks each of
-- its indexes, and the claim keeps within a backend's fast-path lock slots.

ALTER TABLE tasks ADD COLUMN schedule text, ADD COLUMN tick_at timestamptz;

CREATE TABLE schedules (
    name         text        PRIMARY KEY,
    cron         text        NOT NULL,
    timezone     text        NOT NULL,
    -- The task template: name, type, payload, queue, priority, retries, backoff, timeout.
    task         jsonb       NOT NULL,
    catch_up     text        NOT NULL,
    paused       boolean     NOT NULL DEFAULT false,
    -- Bumped by every change of the definition and by pause and resume. The
    -- scheduler's writes are fenced on it, so it never advances a schedule by a
    -- definition that changed under it.
    revision     bigint      NOT NULL DEFAULT 1,
    -- The first tick not yet enqueued or skipped; written by the leader only.
    next_tick    timestamptz NOT NULL,
    last_tick    timestamptz,
    last_task_id uuid,
    -- When the schedule was last resumed: ticks before it fell in the pause.
    resumed_at   timestamptz,
    -- Declared in taskq.toml, which wins over API edits at every start.
    from_file    boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT schedules_name_valid CHECK (name ~ '^[a-z0-9_.-]{1,64}$'),
    CONSTRAINT schedules_catch_up_valid CHECK (catch_up IN ('skip', 'latest', 'all')),
    CONSTRAINT schedules_task_is_object CHECK (jsonb_typeof(task) = 'object')
);
-- The leader's only idle read: the earliest next tick of the running schedules.
CREATE INDEX schedules_due_idx ON schedules (next_tick) WHERE NOT paused;

CREATE TABLE schedule_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule   text        NOT NULL,
    event      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT schedule_history_event_valid
        CHECK (event IN ('created', 'updated', 'paused', 'resumed', 'deleted'))
);
CREATE INDEX schedule_history_schedule_idx ON schedule_history (schedule, id);

-- One row per leadership (`scheduler`): who holds it, since when (the term's
-- identity with the holder), and until when unless renewed.
CREATE TABLE leaders (
    name       text        PRIMARY KEY,
    leader_id  text        NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,

    CONSTRAINT leaders_leader_id_length CHECK (char_length(leader_id) BETWEEN 1 AND 255)
);

-- Every term that began, with the last renewal of the term it replaced: a tick
-- missing between those two times fell while no process led.
CREATE TABLE leader_terms (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text        NOT NULL,
    leader_id           text        NOT NULL,
    elected_at          timestamptz NOT NULL,
    previous_leader_id  text,
    previous_renewed_at timestamptz
);
