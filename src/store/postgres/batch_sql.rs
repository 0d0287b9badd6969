//! The engine's batch statements: the claim and the fenced outcome writes. They run
//! hundreds of times a second on hundreds of rows each, so their plans must stay linear
//! in the batch whatever the table's statistics say; the test at the end of this file
//! checks the plans PostgreSQL picks for them on a table that was never analyzed (a
//! fresh install, a just-truncated table) as well as on an analyzed one.
//!
//! Two shapes keep them linear:
//! - **The claim reaches the picked tasks by primary key**, `id = ANY (ARRAY(...))`,
//!   not by joining the picked rows: such a join is planned as a hash join over a scan
//!   of the whole table whenever the table looks small enough, O(table) per claim.
//!   (MATERIALIZED keeps the locking subquery from being inlined into the UPDATE, where
//!   it could be evaluated more than once and overshoot the limit.)
//! - **An outcome write's whole fence rides on its input rows** (status, worker, the
//!   lease's deadline as `now`), in a MATERIALIZED CTE, and nothing in the WHERE
//!   restricts `tasks` alone. Such a restriction (a constant status,
//!   `locked_until >= now()`) is estimated from the statistics, and when those say few
//!   tasks run, the planner makes the restricted tasks the outer side of a nested loop
//!   that rescans the whole input for every running task: O(running × batch), seconds
//!   per batch at a thousand of each, long enough for leases to run out. Unrestricted,
//!   the tasks side is as large as the table, so the tasks are reached by primary key
//!   from the input or hashed.

/// Claims up to `$1` runnable tasks of queue `$4` for worker `$2`, leasing each for its
/// timeout plus `$3` seconds; returns them in claim order. The queue's gate
/// (`taskq_claim_gate`, migrations/postgres) says how many it may take (none while the
/// queue is paused, no more than its limit leaves free) and when they start; its
/// `LIMIT` is evaluated before the scan locks any row. Each attempt's `task_started`
/// event is the task row itself (`started_event_id`): no history row is written.
pub(super) const CLAIM: &str = r#"
    WITH gate AS MATERIALIZED (
        SELECT * FROM taskq_claim_gate($4, $1::int)
    ), picked AS MATERIALIZED (
        SELECT id FROM tasks
        WHERE status = 'queued' AND queue = $4 AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT (SELECT allowed FROM gate)
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE tasks AS t SET
            status = 'running',
            worker_id = $2,
            attempt = t.attempt + 1,
            started_at = (SELECT claimed_at FROM gate),
            updated_at = (SELECT claimed_at FROM gate),
            locked_until = (SELECT claimed_at FROM gate) + make_interval(secs => t.timeout_seconds + $3),
            started_event_id = nextval('task_history_id_seq')
        WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
        RETURNING t.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, run_at, id
"#;

/// Marks the attempts `($1 ids, $2 attempts)` of worker `$4` succeeded with results
/// `$3`, where the attempt still holds its live lease; returns the ids written. The
/// success's event is the task row itself (`completed_event_id`, migrations/postgres):
/// no history row is written.
pub(super) const COMPLETE: &str = r#"
    WITH input AS MATERIALIZED (
        SELECT i.*, 'running'::task_status AS running, $4::text AS worker_id, now() AS now
        FROM unnest($1::uuid[], $2::int[], $3::text[]) AS i (id, attempt, result)
    )
    UPDATE tasks AS t SET
        status = 'succeeded',
        result = i.result::jsonb,
        locked_until = NULL,
        completed_at = now(),
        updated_at = now(),
        completed_event_id = nextval('task_history_id_seq')
    FROM input AS i
    WHERE t.id = i.id AND t.status = i.running AND t.attempt = i.attempt
      AND t.worker_id = i.worker_id AND t.locked_until >= i.now
    RETURNING t.id
"#;

/// Records failed attempts `($1 ids, $2 attempts, $3 events, $4 errors, $5 retry
/// delays)`: requeued after the delay, or failed for good where it is NULL. A snooze
/// (`task_snoozed`) is requeued after its delay without spending a retry, and records
/// one event, not two. A task whose cancel was requested ends `cancelled` whatever the
/// outcome, with one `task_cancelled` event noting who (`$8`), why, and how the attempt
/// stopped (`$7`). Fenced to worker `$6` and its live lease, or, when `$6` is NULL (the
/// Rescuer), to the attempt alone. Returns the ids written.
pub(super) const APPLY_FAILURES: &str = r#"
    WITH input AS MATERIALIZED (
        SELECT i.*, 'running'::task_status AS running, $6::text AS worker_id, now() AS now,
               i.event = 'task_snoozed' AS snoozed
        FROM unnest($1::uuid[], $2::int[], $3::task_event[], $4::text[], $5::float8[], $7::text[])
            AS i (id, attempt, event, error, retry_in, stopped)
    ), updated AS (
        UPDATE tasks AS t SET
            status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'cancelled'
                          WHEN i.retry_in IS NULL THEN 'failed'
                          ELSE 'queued' END::task_status,
            retry_count = t.retry_count
                + (t.cancel_requested_at IS NULL AND i.retry_in IS NOT NULL AND NOT i.snoozed)::int,
            snooze_count = t.snooze_count + (t.cancel_requested_at IS NULL AND i.snoozed)::int,
            run_at = CASE WHEN t.cancel_requested_at IS NULL AND i.retry_in IS NOT NULL
                          THEN now() + make_interval(secs => i.retry_in) ELSE t.run_at END,
            completed_at = CASE WHEN t.cancel_requested_at IS NOT NULL OR i.retry_in IS NULL
                                THEN now() END,
            last_error = CASE WHEN i.snoozed OR i.event = 'task_cancelled' THEN t.last_error
                              ELSE i.error END,
            locked_until = NULL,
            updated_at = now()
        FROM input AS i
        WHERE t.id = i.id AND t.status = i.running AND t.attempt = i.attempt
          AND (i.worker_id IS NULL OR (t.worker_id = i.worker_id AND t.locked_until >= i.now))
        RETURNING t.id, t.status, t.retry_count, t.worker_id, t.run_at, t.started_event_id,
                  t.started_at, t.cancel_reason, i.event, i.error, i.stopped,
                  i.snoozed AND t.status = 'queued' AS snoozed,
                  CASE WHEN (t.progress ->> 'attempt')::int = t.attempt
                       THEN (t.progress ->> 'at')::timestamptz END AS progress_at
    ), history AS (
        INSERT INTO task_history (task_id, event_type, status, retry_count, worker_id,
                                  error_message, next_run_at, started_id, started_at, progress_at)
        SELECT u.id, e.event_type, u.status, u.retry_count, u.worker_id, e.note, e.next_run_at,
               e.started_id, e.started_at, e.progress_at
        FROM updated AS u
        CROSS JOIN LATERAL (VALUES
            (1,
             CASE WHEN u.status = 'cancelled' THEN 'task_cancelled'
                  -- A cancel without a request (none is sent) is a failure like another.
                  WHEN u.event = 'task_cancelled' THEN 'task_failed'
                  ELSE u.event END::task_event,
             CASE WHEN u.status = 'cancelled'
                  THEN taskq_cancel_note($8, u.cancel_reason, u.stopped)
                  ELSE u.error END,
             CASE WHEN u.snoozed THEN u.run_at END, u.started_event_id, u.started_at, u.progress_at),
            (2, CASE WHEN u.status = 'failed' THEN 'task_failed_final'
                     WHEN u.status = 'queued' AND NOT u.snoozed THEN 'retry_scheduled'
                END::task_event,
                u.error, CASE WHEN u.status = 'queued' AND NOT u.snoozed THEN u.run_at END,
                NULL, NULL, NULL)
        ) AS e (ord, event_type, note, next_run_at, started_id, started_at, progress_at)
        WHERE e.event_type IS NOT NULL
        ORDER BY u.id, e.ord
    )
    SELECT id FROM updated
"#;

/// Puts worker `$3`'s attempts `($1 ids, $2 attempts)` back in the queue unstarted, with
/// the note `$4`; returns the ids written. A task whose cancel was requested ends
/// `cancelled` instead (noting who, `$5`, why, and how, `$6`): it never goes back to
/// the queue.
pub(super) const RELEASE: &str = r#"
    WITH input AS MATERIALIZED (
        SELECT i.*, 'running'::task_status AS running, $3::text AS worker_id
        FROM unnest($1::uuid[], $2::int[]) AS i (id, attempt)
    ), updated AS (
        UPDATE tasks AS t SET
            status = CASE WHEN t.cancel_requested_at IS NULL THEN 'queued'
                          ELSE 'cancelled' END::task_status,
            completed_at = CASE WHEN t.cancel_requested_at IS NOT NULL THEN now() END,
            locked_until = NULL,
            updated_at = now()
        FROM input AS i
        WHERE t.id = i.id AND t.status = i.running AND t.attempt = i.attempt
          AND t.worker_id = i.worker_id
        RETURNING t.id, t.status, t.retry_count, t.worker_id, t.started_event_id, t.started_at,
                  t.cancel_reason,
                  CASE WHEN (t.progress ->> 'attempt')::int = t.attempt
                       THEN (t.progress ->> 'at')::timestamptz END AS progress_at
    ), history AS (
        INSERT INTO task_history (task_id, event_type, status, retry_count, worker_id, error_message,
                                  started_id, started_at, progress_at)
        SELECT id,
               CASE WHEN status = 'cancelled' THEN 'task_cancelled' ELSE 'task_requeued' END::task_event,
               status, retry_count, worker_id,
               CASE WHEN status = 'cancelled'
                    THEN taskq_cancel_note($5, cancel_reason, $6)
                    ELSE $4 END,
               started_event_id, started_at, progress_at
        FROM updated
    )
    SELECT id FROM updated
"#;

/// Records progress reports `($1 ids, $2 attempts, $3 percents, $4 messages, $5 leases in
/// seconds)` of worker `$6`'s running attempts, where the attempt still holds its live
/// lease, and restarts each lease (`now + $5`); returns the ids written. A report is no
/// state change: it writes neither `updated_at` nor history (an attempt's last report is
/// recorded with the event that ends it, `progress_at`).
pub(super) const PROGRESS: &str = r#"
    WITH input AS MATERIALIZED (
        SELECT i.*, 'running'::task_status AS running, $6::text AS worker_id, now() AS now
        FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::float8[])
            AS i (id, attempt, percent, message, lease)
    )
    UPDATE tasks AS t SET
        progress = jsonb_build_object('percent', i.percent, 'message', i.message, 'at', i.now,
                                      'attempt', i.attempt),
        locked_until = greatest(t.locked_until, i.now + make_interval(secs => i.lease))
    FROM input AS i
    WHERE t.id = i.id AND t.status = i.running AND t.attempt = i.attempt
      AND t.worker_id = i.worker_id AND t.locked_until >= i.now
    RETURNING t.id
"#;

#[cfg(test)]
mod tests {
    //! The statements on a table of 20,000 tasks, 2,000 of them running, for batches of
    //! 500. Plans: never analyzed (autovacuum off), analyzed while no task ran, and
    //! analyzed; each with custom and generic plans, as a prepared statement gets them.
    //! Locks: which relations each statement locks outside its fast-path slots.

    use serde_json::Value;
    use sqlx::{Connection, PgConnection};

    use super::*;
    use crate::store::{ConnectOptions, Store};

    const TASKS: usize = 20_000;
    const BATCH: usize = 500;

    /// Joins whose inner side, rescanned for every outer row, costs O(1) a row.
    const CHEAP_INNER: [&str; 5] =
        ["Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Values Scan", "Result"];

    /// Why `plan` is not linear in the batch, if it is not.
    fn nonlinear(plan: &Value, statement: &str) -> Option<String> {
        let node = plan["Node Type"].as_str().unwrap_or_default();
        let children = plan["Plans"].as_array().map(Vec::as_slice).unwrap_or_default();
        if node == "Nested Loop" {
            let inner = children.get(1).and_then(|c| c["Node Type"].as_str()).unwrap_or_default();
            if !CHEAP_INNER.contains(&inner) {
                return Some(format!("a nested loop rescans a {inner} for every outer row"));
            }
        }
        if statement == "claim" && node.ends_with("Join") {
            return Some(format!("the claim joins the picked tasks ({node})"));
        }
        if statement == "claim" && node == "Sort" && reads_tasks(plan) {
            return Some("the claim sorts every runnable task instead of reading them in order".into());
        }
        children.iter().find_map(|child| nonlinear(child, statement))
    }

    /// Whether the rows `plan` outputs come from a scan of `tasks` itself (not from a CTE
    /// of its rows; CTEs and init plans hang below a node without feeding its rows).
    fn reads_tasks(plan: &Value) -> bool {
        plan["Relation Name"] == "tasks"
            || plan["Plans"].as_array().is_some_and(|children| {
                children.iter().filter(|child| child["Parent Relationship"] == "Outer").any(reads_tasks)
            })
    }

    fn uuids(ids: &[uuid::Uuid]) -> String {
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        format!("'{{{}}}'::uuid[]", list.join(","))
    }

    /// A database of its own, migrated, holding `TASKS` tasks of which 2,000 run for
    /// worker `w`; autovacuum is off, so its statistics are what the test makes them.
    struct Scratch {
        server: PgConnection,
        db: PgConnection,
        name: String,
    }

    impl Scratch {
        /// Puts 2,000 tasks in the running state.
        const RUN: &str = "UPDATE tasks SET status = 'running', worker_id = 'w', attempt = 1, \
             started_at = now(), locked_until = now() + interval '1 hour' \
             WHERE id IN (SELECT id FROM tasks LIMIT 2000)";

        async fn new() -> Self {
            let admin = std::env::var("TASKQ_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("taskq_plans_{}", uuid::Uuid::now_v7().simple());
            let mut server = PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required by this test: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut server).await.unwrap();
            let url = format!("{}/{name}", admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base));
            let store = super::super::PgStore::connect(&ConnectOptions::new(&url)).unwrap();
            store.migrate().await.unwrap();
            store.close().await;
            let mut db = PgConnection::connect(&url).await.unwrap();
            for setup in [
                "ALTER TABLE tasks SET (autovacuum_enabled = off)".to_string(),
                format!(
                    "INSERT INTO tasks (id, name, type) SELECT gen_random_uuid(), 'plan', 'noop' \
                     FROM generate_series(1, {TASKS})"
                ),
                Self::RUN.to_string(),
            ] {
                sqlx::query(&setup).execute(&mut db).await.unwrap();
            }
            Self { server, db, name }
        }

        /// The statements as a worker prepares them, each with arguments for a batch of
        /// `BATCH` of the running tasks: (label, SQL, parameter types, arguments).
        async fn statements(&mut self) -> Vec<(&'static str, &'static str, &'static str, String)> {
            let ids: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
                "SELECT id FROM tasks WHERE status = 'running' ORDER BY id DESC LIMIT {BATCH}"
            ))
            .fetch_all(&mut self.db)
            .await
            .unwrap();
            let (ids, n) = (uuids(&ids), BATCH);
            let failures = |event: &str, retry_in: &str, worker: &str| {
                format!(
                    "{ids}, array_fill(1, ARRAY[{n}]), array_fill('{event}'::task_event, ARRAY[{n}]), \
                     array_fill('e'::text, ARRAY[{n}]), array_fill({retry_in}::float8, ARRAY[{n}]), {worker}, \
                     array_fill('stopped'::text, ARRAY[{n}]), 'the API'"
                )
            };
            let failure_types = "uuid[], int[], task_event[], text[], float8[], text, text[], text";
            vec![
                ("claim", CLAIM, "bigint, text, float8, text", format!("{n}, 'w2', 10, 'default'")),
                (
                    "complete",
                    COMPLETE,
                    "uuid[], int[], text[], text",
                    format!("{ids}, array_fill(1, ARRAY[{n}]), array_fill(NULL::text, ARRAY[{n}]), 'w'"),
                ),
                ("fail", APPLY_FAILURES, failure_types, failures("task_failed", "1.0", "'w'")),
                ("rescue", APPLY_FAILURES, failure_types, failures("timeout_occurred", "NULL", "NULL")),
                (
                    "release",
                    RELEASE,
                    "uuid[], int[], text, text, text, text",
                    format!("{ids}, array_fill(1, ARRAY[{n}]), 'w', 'note', 'the API', 'stopped'"),
                ),
                (
                    "progress",
                    PROGRESS,
                    "uuid[], int[], int[], text[], float8[], text",
                    format!(
                        "{ids}, array_fill(1, ARRAY[{n}]), array_fill(50, ARRAY[{n}]), \
                         array_fill('half'::text, ARRAY[{n}]), array_fill(40::float8, ARRAY[{n}]), 'w'"
                    ),
                ),
            ]
        }

        async fn execute(&mut self, sql: &str) {
            sqlx::query(sql).execute(&mut self.db).await.unwrap();
        }

        /// Runs the prepared statement `label` in a transaction that is rolled back;
        /// returns the relations it locked outside the backend's fast-path slots.
        async fn shared_locks(&mut self, label: &str, args: &str) -> Vec<String> {
            self.execute("BEGIN").await;
            self.execute(&format!("EXECUTE {label}({args})")).await;
            let locks = sqlx::query_scalar(
                "SELECT relation::regclass::text FROM pg_locks \
                 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND NOT fastpath",
            )
            .fetch_all(&mut self.db)
            .await
            .unwrap();
            self.execute("ROLLBACK").await;
            locks
        }

        async fn drop_db(mut self) {
            self.db.close().await.unwrap();
            let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
            sqlx::query(&drop).execute(&mut self.server).await.unwrap();
        }
    }

    /// The statements' plans are judged without JIT, as taskq's sessions run them.
    #[tokio::test]
    async fn sessions_run_without_jit() {
        let admin = std::env::var("TASKQ_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let store = super::super::PgStore::connect(&ConnectOptions::new(&admin)).unwrap();
        let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(&store.pool).await.unwrap();
        assert_eq!(jit, "off");
        store.pool.close().await;
    }

    #[tokio::test]
    async fn batch_statements_stay_linear_whatever_the_statistics() {
        let mut scratch = Scratch::new().await;
        let statements = scratch.statements().await;
        let mut problems = Vec::new();
        // A burst after a quiet spell: statistics taken while no task ran.
        let quiet = [
            "UPDATE tasks SET status = 'queued', worker_id = NULL, started_at = NULL, locked_until = NULL",
            "ANALYZE tasks",
            Scratch::RUN,
        ];
        for statistics in ["never analyzed", "analyzed before the burst", "analyzed"] {
            let setup: &[&str] = match statistics {
                "never analyzed" => &[],
                "analyzed before the burst" => &quiet,
                _ => &["ANALYZE tasks"],
            };
            for statement in setup {
                scratch.execute(statement).await;
            }
            for mode in ["force_custom_plan", "force_generic_plan"] {
                scratch.execute(&format!("SET plan_cache_mode = {mode}")).await;
                for (label, sql, types, args) in &statements {
                    scratch.execute(&format!("PREPARE {label} ({types}) AS {sql}")).await;
                    let plan: Value =
                        sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE {label}({args})"))
                            .fetch_one(&mut scratch.db)
                            .await
                            .unwrap();
                    if let Some(why) = nonlinear(&plan[0]["Plan"], label) {
                        problems.push(format!("{label}, {statistics}, {mode}: {why}"));
                    }
                    scratch.execute(&format!("DEALLOCATE {label}")).await;
                }
            }
        }
        scratch.drop_db().await;
        assert!(problems.is_empty(), "plans that are not linear in the batch:\n{}", problems.join("\n"));
    }

    /// A PostgreSQL 15 backend keeps 16 relation locks of a transaction in its own
    /// fast-path slots; more go to the shared lock table, whose partition locks every
    /// concurrent claim and acknowledgement then contends for (docs/benchmarks.md,
    /// scale). The batch statements lock at most 14 relations (a claim: `tasks` and its
    /// six indexes, the history's id sequence, `task_counts`, `queues` and its key; an
    /// acknowledgement has `task_throughput` and its index instead of `queues`; a
    /// failure has `task_history` and its two indexes instead of the sequence).
    #[tokio::test]
    async fn batch_statements_take_only_fast_path_relation_locks() {
        let mut scratch = Scratch::new().await;
        let statements = scratch.statements().await;
        let mut shared = Vec::new();
        for (label, sql, types, args) in &statements {
            scratch.execute(&format!("PREPARE {label} ({types}) AS {sql}")).await;
            // The first execution on a connection also locks the catalogs it reads to
            // fill its caches (and compile the counter triggers); a worker's connections
            // are long-lived, so the second is the one that repeats.
            scratch.shared_locks(label, args).await;
            let locks = scratch.shared_locks(label, args).await;
            scratch.execute(&format!("DEALLOCATE {label}")).await;
            if !locks.is_empty() {
                shared.push(format!("{label}: {}", locks.join(", ")));
            }
        }
        scratch.drop_db().await;
        assert!(shared.is_empty(), "relation locks in the shared lock table:\n{}", shared.join("\n"));
    }
}
