-- `taskq_enqueue(type, payload, options)`: enqueue a task from SQL, inside the caller's
-- transaction (a trigger, a migration, a program in any language), with the checks,
-- the `task_queued` event and the wake-up of `POST /api/tasks` (docs/design.md,
-- "Enqueueing from SQL"). The task exists if and only if the caller commits: the
-- NOTIFY is transactional too, sent at commit and dropped by a rollback.

-- A UUID v7 (time-ordered, as the API makes them): the epoch milliseconds over a random
-- UUID's first 48 bits, with the version bits turned from 4 into 7.
CREATE FUNCTION taskq_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- Reads an optional whole number `key` of `options` in [lo, hi], or `fallback`.
CREATE FUNCTION taskq_option_int(options jsonb, key text, lo bigint, hi bigint, fallback integer)
RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    value jsonb := options -> key;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN fallback;
    END IF;
    IF jsonb_typeof(value) <> 'number' OR value::numeric <> trunc(value::numeric)
       OR value::numeric NOT BETWEEN lo AND hi THEN
        RAISE EXCEPTION 'taskq_enqueue: options.% must be a whole number from % to %, got %', key, lo, hi, value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value::integer;
END $$;

-- Reads an optional text `key` of `options`: 1 to 255 characters, not all whitespace.
CREATE FUNCTION taskq_option_text(options jsonb, key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    value jsonb := options -> key;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'string' OR btrim(value #>> '{}') = ''
       OR char_length(value #>> '{}') > 255 THEN
        RAISE EXCEPTION 'taskq_enqueue: options.% must be a string of 1 to 255 characters, not all whitespace', key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN value #>> '{}';
END $$;

CREATE FUNCTION taskq_enqueue(p_type text, p_payload jsonb, p_options jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    known CONSTANT text[] := ARRAY['name', 'queue', 'priority', 'max_retries', 'max_snoozes',
        'timeout_seconds', 'backoff_seconds', 'run_at', 'delay_seconds', 'idempotency_key', 'concurrency_key'];
    unknown text;
    task_type text := lower(btrim(coalesce(p_type, '')));
    options jsonb := coalesce(p_options, '{}');
    queue_name text;
    v_key text;
    v_concurrency_key text;
    task_name text;
    v_priority integer;
    v_max_retries integer;
    v_max_snoozes integer;
    v_backoff_seconds integer;
    v_timeout_seconds integer;
    v_run_at timestamptz := now();
    delay numeric;
    new_id uuid := taskq_uuid_v7();
    found_id uuid;
BEGIN
    IF task_type = '' OR char_length(task_type) > 255 THEN
        RAISE EXCEPTION 'taskq_enqueue: type must be 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'taskq_enqueue: payload must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_column_size(p_payload) > 1048576 THEN
        RAISE EXCEPTION 'taskq_enqueue: payload is larger than 1 MiB' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'taskq_enqueue: options must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO unknown FROM jsonb_object_keys(options) AS k WHERE k <> ALL (known) ORDER BY k LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'taskq_enqueue: unknown option %; expected one of %', unknown, array_to_string(known, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    queue_name := coalesce(taskq_option_text(options, 'queue'), 'default');
    IF char_length(queue_name) > 64 OR queue_name ~ '[^a-z0-9_.-]' THEN
        RAISE EXCEPTION 'taskq_enqueue: options.queue must be 1 to 64 characters of [a-z0-9_.-], got %', queue_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF options ? 'run_at' AND jsonb_typeof(options -> 'run_at') <> 'null' THEN
        IF options ? 'delay_seconds' AND jsonb_typeof(options -> 'delay_seconds') <> 'null' THEN
            RAISE EXCEPTION 'taskq_enqueue: give options.run_at or options.delay_seconds, not both'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            v_run_at := (options ->> 'run_at')::timestamptz;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'taskq_enqueue: options.run_at must be an RFC 3339 time, got %', options -> 'run_at'
                USING ERRCODE = 'invalid_parameter_value';
        END;
    ELSIF options ? 'delay_seconds' AND jsonb_typeof(options -> 'delay_seconds') <> 'null' THEN
        IF jsonb_typeof(options -> 'delay_seconds') <> 'number'
           OR (options ->> 'delay_seconds')::numeric NOT BETWEEN 0 AND 31536000 THEN
            RAISE EXCEPTION 'taskq_enqueue: options.delay_seconds must be a number from 0 to 31536000'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        delay := (options ->> 'delay_seconds')::numeric;
        v_run_at := now() + make_interval(secs => delay);
    END IF;

    v_key := taskq_option_text(options, 'idempotency_key');
    task_name := coalesce(taskq_option_text(options, 'name'), task_type);
    v_concurrency_key := taskq_option_text(options, 'concurrency_key');
    v_priority := taskq_option_int(options, 'priority', -1000, 1000, 0);
    v_max_retries := taskq_option_int(options, 'max_retries', 0, 100, 3);
    v_max_snoozes := taskq_option_int(options, 'max_snoozes', 0, 10000, 25);
    v_backoff_seconds := taskq_option_int(options, 'backoff_seconds', 0, 86400, 1);
    v_timeout_seconds := taskq_option_int(options, 'timeout_seconds', 1, 86400, 30);

    IF v_key IS NOT NULL THEN
        SELECT id INTO found_id FROM tasks WHERE idempotency_key = v_key;
        IF FOUND THEN
            RETURN found_id;
        END IF;
    END IF;

    -- A keyed task marks its queue before it exists, as the store's inserts do.
    INSERT INTO queues (name, keyed) VALUES (queue_name, v_concurrency_key IS NOT NULL)
    ON CONFLICT (name) DO NOTHING;
    IF v_concurrency_key IS NOT NULL THEN
        UPDATE queues SET keyed = true WHERE name = queue_name AND NOT keyed;
    END IF;
    INSERT INTO tasks (id, name, type, payload, priority, max_retries, max_snoozes, backoff_seconds,
                       timeout_seconds, run_at, idempotency_key, queue, concurrency_key)
    VALUES (new_id, task_name, task_type, p_payload, v_priority, v_max_retries, v_max_snoozes,
            v_backoff_seconds, v_timeout_seconds, v_run_at, v_key, queue_name, v_concurrency_key)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent transaction committed the same key first.
        SELECT id INTO found_id FROM tasks WHERE idempotency_key = v_key;
        RETURN found_id;
    END IF;
    INSERT INTO task_history (task_id, event_type, status, retry_count, created_at)
    SELECT id, 'task_queued', 'queued', 0, created_at FROM tasks WHERE id = new_id;
    IF v_run_at <= now() THEN
        PERFORM pg_notify('taskq_wakeup', 'r:' || queue_name);
    END IF;
    RETURN new_id;
END $$;
