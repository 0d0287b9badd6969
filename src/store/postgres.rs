//! The PostgreSQL store: every query taskq runs against PostgreSQL, in one place.
//!
//! Batched operations take arrays and `unnest` them, so a batch is one statement and
//! one round trip whatever its size; history rows are inserted by a data-modifying CTE
//! of the same statement, so a state change and its event commit together.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use uuid::Uuid;

use super::*;
use batch_sql::{APPLY_FAILURES, CLAIM, COMPLETE, PROGRESS, RELEASE};

mod batch_sql;
mod bulk;
mod flow;
mod schedules;
mod search;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// First key of a queue's advisory lock, `(QUEUE_LOCK_CLASS, hashtext(name))`: the
/// lock that orders claims against settings changes (see `taskq_claim_gate` in
/// migrations/postgres).
const QUEUE_LOCK_CLASS: i32 = 29809;

/// Key of the advisory lock that lets one process at a time prune.
const PRUNE_LOCK_KEY: i64 = 0x7461_736b_7072_756e; // "taskprun"

/// The least time between two wake-ups of one process. A NOTIFY is a transaction of
/// its own: one per insert made single-task inserts a third slower. With the gap, a
/// burst of inserts costs one NOTIFY per millisecond, and a task waits at most this
/// much longer for its wake-up, and only when another was inserted just before it.
const WAKEUP_GAP: Duration = Duration::from_millis(1);

/// How long a pooled connection may sit idle before it is pinged when taken. A ping is
/// a round trip, as long as a small statement's; pinging before every statement cost
/// single-task inserts and claims a round trip each. A connection in steady use was
/// alive moments ago, and one the server or a proxy closed while it sat idle (an idle
/// timeout, a restart during a quiet spell) is caught here and replaced. One that
/// breaks within the window fails its statement, which is retried or answered 503 as
/// any database error is.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The longest NOTIFY payload sent (PostgreSQL's limit is 8,000 bytes); a longer list
/// of queues is sent as "any queue".
const MAX_PAYLOAD: usize = 4_000;

/// Which queues the wake-ups asked for since the last NOTIFY.
#[derive(Debug, Default)]
struct PendingWake {
    any: bool,
    queues: std::collections::BTreeSet<String>,
}

impl PendingWake {
    fn add<'q>(&mut self, queues: Option<impl IntoIterator<Item = &'q str>>) {
        match queues {
            Some(queues) => self.queues.extend(queues.into_iter().map(str::to_owned)),
            None => self.any = true,
        }
    }

    fn into_hint(self) -> Hint {
        if self.any || self.queues.is_empty() {
            Hint::Runnable(None)
        } else {
            Hint::Runnable(Some(self.queues.into_iter().collect()))
        }
    }
}

/// Wake-up requests that name no queue.
const ANY_QUEUE: Option<[&str; 0]> = None;

pub struct PgStore {
    pool: PgPool,
    /// When this process last reverted (or re-applied after reverting) the schema.
    /// Connections opened before it are retired at their next acquire: their cached
    /// prepared statements describe tables and enum types that were dropped, and
    /// PostgreSQL refuses them ("cached plan must not change result type") rather
    /// than re-planning. Written by `migrate_down` / `migrate`, read by the pool.
    schema_changed: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Asks the wake-up loop for a NOTIFY (see [`PgStore::wake_workers`]).
    wakeup: tokio::sync::mpsc::Sender<()>,
    /// The queues the next NOTIFY names: what the requests since the last one asked for.
    pending: Arc<std::sync::Mutex<PendingWake>>,
    /// A wake-up was asked for: only then does `close` send a last one, so that a
    /// store opened to migrate or check closes without a word to the workers.
    woke: std::sync::atomic::AtomicBool,
    /// The queues whose last claim was planned ([`flow`]): their claims go straight to
    /// the planned claim, which says when they need planning no more.
    planned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl PgStore {
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        let schema_changed = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        let changed = Arc::clone(&schema_changed);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // Pinged only after an idle spell, below: not before every statement.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let changed = *changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let opened = std::time::Instant::now().checked_sub(meta.age);
                let current = match (changed, opened) {
                    (Some(changed), Some(opened)) => opened >= changed,
                    _ => true,
                };
                Box::pin(async move {
                    if current && meta.idle_for >= PING_AFTER_IDLE {
                        // A connection that fails its ping is dropped and another taken.
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(current)
                })
            })
            .connect_lazy_with(Self::session_options(&options.url)?);
        let (wakeup, wanted) = tokio::sync::mpsc::channel(1);
        let pending = Arc::new(std::sync::Mutex::new(PendingWake::default()));
        crate::runtime::spawn_io(Self::wakeup_loop(pool.clone(), wanted, Arc::clone(&pending)));
        Ok(Self {
            pool,
            schema_changed,
            wakeup,
            pending,
            woke: Default::default(),
            planned: Default::default(),
        })
    }

    /// The connection settings of every session: the URL's, with JIT compilation off.
    /// taskq's statements are short, and JIT (on by default above a plan cost of
    /// 100,000) only ever costs them; a recursive query whose row estimate is loose,
    /// like a queue's shape, paid about 200 ms of compilation for a 2 ms read.
    fn session_options(url: &str) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(url)?.options([("jit", "off")]))
    }

    /// Wakes the Dispatchers after a change that made tasks runnable (an insert, a
    /// release, a rescue, a manual retry) committed, off the caller's path: the caller
    /// returns after its commit, and the NOTIFY follows from a loop of its own.
    /// Requests that arrive while a NOTIFY is on its way, or within [`WAKEUP_GAP`]
    /// after it, are folded into the next one (the channel holds one), which still
    /// comes after all their commits.
    ///
    /// The NOTIFY is never part of the changing transaction: PostgreSQL serialises the
    /// commits of notifying transactions on one global lock held through their WAL
    /// flush, so changes that notify could not share a flush (group commit). A
    /// notify-only transaction does not wait for a flush: it writes only its commit
    /// record, which goes to disk with the next commit that waits. A wake-up is a
    /// hint: one that fails is logged, and the workers' poll finds the tasks.
    ///
    /// `queues` names the queues that have runnable tasks now (`None`: any), so that
    /// only their Dispatchers claim; folded requests name the union.
    fn wake_workers<'q>(&self, queues: Option<impl IntoIterator<Item = &'q str>>) {
        self.woke.store(true, std::sync::atomic::Ordering::Relaxed);
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).add(queues);
        let _ = self.wakeup.try_send(());
    }

    /// Sends one NOTIFY per request; ends when the store is dropped.
    async fn wakeup_loop(
        pool: PgPool,
        mut wanted: tokio::sync::mpsc::Receiver<()>,
        pending: Arc<std::sync::Mutex<PendingWake>>,
    ) {
        while wanted.recv().await.is_some() {
            let hint = std::mem::take(&mut *pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
                .into_hint();
            // A closed pool's last wake-up was sent by `close`.
            if let Err(error) = Self::notify(&pool, &hint).await
                && !pool.is_closed()
            {
                tracing::warn!(error = %error, "could not notify workers of new tasks; they will find them at their next poll");
            }
            tokio::time::sleep(WAKEUP_GAP).await;
        }
    }

    async fn notify(pool: &PgPool, hint: &Hint) -> Result<()> {
        let mut payload = hint.to_payload();
        if payload.len() > MAX_PAYLOAD {
            payload = Hint::Runnable(None).to_payload();
        }
        sqlx::query("SELECT pg_notify($1, $2)").bind(WAKEUP_CHANNEL).bind(payload).execute(pool).await?;
        Ok(())
    }

    fn retire_connections(&self) {
        *self.schema_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(std::time::Instant::now());
    }

    /// The UPDATE shared by `fail` (fenced to the worker and its live lease) and
    /// `rescue` (fenced to the expired attempt, which the caller holds locked).
    async fn apply_failures<'e, E>(
        executor: E,
        worker_id: Option<&str>,
        failures: &[Failure],
    ) -> Result<Vec<Uuid>>
    where
        E: Executor<'e, Database = sqlx::Postgres>,
    {
        let ids: Vec<Uuid> = failures.iter().map(|f| f.attempt.task_id).collect();
        let attempts: Vec<i32> = failures.iter().map(|f| f.attempt.attempt).collect();
        let events: Vec<EventType> = failures.iter().map(|f| f.kind.event()).collect();
        let errors: Vec<&str> = failures.iter().map(|f| f.error.as_str()).collect();
        let delays: Vec<Option<f64>> = failures.iter().map(|f| f.retry_in.map(|d| d.as_secs_f64())).collect();
        let stopped: Vec<&str> = failures.iter().map(Failure::stopped).collect();
        let rows = sqlx::query(APPLY_FAILURES)
            .bind(&ids)
            .bind(&attempts)
            .bind(&events)
            .bind(&errors)
            .bind(&delays)
            .bind(worker_id)
            .bind(&stopped)
            .bind(CANCELLED_BY_API)
            .fetch_all(executor)
            .await?;
        Ok(rows.iter().map(|row| row.get("id")).collect())
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        let reverted_before =
            self.schema_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some();
        if reverted_before {
            // Statements prepared between the revert and now saw no tables at all.
            self.retire_connections();
        }
        Ok(())
    }

    async fn migrate_down(&self) -> Result<()> {
        let applied = sqlx::query_scalar::<_, i64>(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version DESC LIMIT 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let target = applied.get(1).copied().unwrap_or(0);
        MIGRATOR.undo(&self.pool, target).await?;
        self.retire_connections();
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // A wake-up may still be on its way in the loop: send one last, so that
        // tasks inserted just before closing do not wait for the workers' poll.
        if self.woke.load(std::sync::atomic::Ordering::Relaxed)
            && let Err(error) = Self::notify(&self.pool, &Hint::Runnable(None)).await
        {
            tracing::debug!(error = %error, "no last wake-up before closing");
        }
        self.pool.close().await;
    }

    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<Created>> {
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.id).collect();
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let types: Vec<&str> = tasks.iter().map(|t| t.task_type.as_str()).collect();
        let payloads: Vec<String> = tasks.iter().map(|t| t.payload.to_string()).collect();
        let priorities: Vec<i32> = tasks.iter().map(|t| t.priority).collect();
        let max_retries: Vec<i32> = tasks.iter().map(|t| t.max_retries).collect();
        let backoffs: Vec<i32> = tasks.iter().map(|t| t.backoff_seconds).collect();
        let timeouts: Vec<i32> = tasks.iter().map(|t| t.timeout_seconds).collect();
        let run_ats: Vec<Option<chrono::DateTime<chrono::Utc>>> = tasks.iter().map(|t| t.run_at).collect();
        let keys: Vec<Option<&str>> = tasks.iter().map(|t| t.idempotency_key.as_deref()).collect();
        let queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
        let max_snoozes: Vec<i32> = tasks.iter().map(|t| t.max_snoozes).collect();
        let concurrency_keys: Vec<Option<&str>> =
            tasks.iter().map(|t| t.concurrency_key.as_deref()).collect();
        self.mark_keyed(tasks).await?;

        // One statement: insert and write the history. The NOTIFY that wakes the
        // Dispatchers follows the commit (`wake_workers` says why).
        let inserted: Vec<Task> = sqlx::query_as(
            r#"
            WITH input AS (
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[],
                                     $6::int[], $7::int[], $8::int[], $9::timestamptz[], $10::text[],
                                     $11::text[], $12::text[], $13::int[])
                    AS i (id, name, type, payload, priority, max_retries, backoff_seconds,
                          timeout_seconds, run_at, idempotency_key, queue, concurrency_key, max_snoozes)
            ), known AS (
                -- An existing queue is found in its index and left alone: no write.
                INSERT INTO queues (name) SELECT DISTINCT queue FROM input
                ON CONFLICT (name) DO NOTHING
            ), inserted AS (
                INSERT INTO tasks (id, name, type, payload, priority, max_retries, backoff_seconds,
                                   timeout_seconds, run_at, idempotency_key, queue, concurrency_key,
                                   max_snoozes)
                SELECT id, name, type, payload::jsonb, priority, max_retries, backoff_seconds,
                       timeout_seconds, coalesce(run_at, now()), idempotency_key, queue, concurrency_key,
                       max_snoozes
                FROM input
                ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING *
            ), history AS (
                INSERT INTO task_history (task_id, event_type, status, retry_count, created_at)
                SELECT id, 'task_queued', 'queued', 0, created_at FROM inserted
            )
            SELECT * FROM inserted
            "#,
        )
        .bind(&ids)
        .bind(&names)
        .bind(&types)
        .bind(&payloads)
        .bind(&priorities)
        .bind(&max_retries)
        .bind(&backoffs)
        .bind(&timeouts)
        .bind(&run_ats)
        .bind(&keys)
        .bind(&queues)
        .bind(&concurrency_keys)
        .bind(&max_snoozes)
        .fetch_all(&self.pool)
        .await?;

        let runnable = inserted.iter().filter(|task| task.run_at <= task.created_at);
        let woken = super::distinct(runnable.map(|task| task.queue.as_str()));
        if !woken.is_empty() {
            self.wake_workers(Some(woken));
        }

        // Tasks not inserted lost an idempotency-key conflict: fetch the winners.
        let existing: Vec<Task> = if inserted.len() < tasks.len() {
            let stored: std::collections::HashSet<Uuid> = inserted.iter().map(|t| t.id).collect();
            let lost: Vec<&str> = tasks
                .iter()
                .filter(|t| !stored.contains(&t.id))
                .filter_map(|t| t.idempotency_key.as_deref())
                .collect();
            sqlx::query_as("SELECT * FROM tasks WHERE idempotency_key = ANY($1)")
                .bind(&lost)
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(match_created(tasks, inserted, existing))
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        Ok(sqlx::query_as("SELECT * FROM tasks WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>> {
        Ok(sqlx::query_as(
            "SELECT e.*, t.queue, t.schedule, t.tick_at FROM task_events AS e JOIN tasks AS t ON t.id = e.task_id \
             WHERE e.task_id = $1 ORDER BY e.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_tasks(&self, filter: &ListFilter) -> Result<Vec<Task>> {
        search::search(&self.pool, filter).await
    }

    async fn claim_batch(
        &self,
        worker_id: &str,
        queue: &str,
        limit: u32,
        lease_grace: Duration,
    ) -> Result<Claim> {
        let planned = || self.planned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if planned().contains(queue) {
            if let Some(claim) = self.planned_claim(worker_id, queue, limit, lease_grace).await? {
                return Ok(claim);
            }
            planned().remove(queue);
        }
        let tasks: Vec<Task> = sqlx::query_as(CLAIM)
            .bind(i64::from(limit))
            .bind(worker_id)
            .bind(lease_grace.as_secs_f64())
            .bind(queue)
            .fetch_all(&self.pool)
            .await?;
        // The head-of-queue claim takes nothing from a queue that needs planning.
        if tasks.is_empty() && self.claims_are_planned(queue).await? {
            planned().insert(queue.to_owned());
            let claim = self.planned_claim(worker_id, queue, limit, lease_grace).await?;
            return Ok(claim.unwrap_or_default());
        }
        Ok(Claim::unplanned(tasks))
    }

    async fn complete(&self, worker_id: &str, done: &[Completion]) -> Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = done.iter().map(|c| c.attempt.task_id).collect();
        let attempts: Vec<i32> = done.iter().map(|c| c.attempt.attempt).collect();
        let results: Vec<Option<String>> =
            done.iter().map(|c| c.result.as_ref().map(|r| r.to_string())).collect();
        let rows = sqlx::query(COMPLETE)
            .bind(&ids)
            .bind(&attempts)
            .bind(&results)
            .bind(worker_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| row.get("id")).collect())
    }

    async fn fail(&self, worker_id: &str, failures: &[Failure]) -> Result<Vec<Uuid>> {
        Self::apply_failures(&self.pool, Some(worker_id), failures).await
    }

    async fn report_progress(&self, worker_id: &str, reports: &[ProgressUpdate]) -> Result<Vec<Uuid>> {
        let reports = super::latest_reports(reports);
        let ids: Vec<Uuid> = reports.iter().map(|r| r.attempt.task_id).collect();
        let attempts: Vec<i32> = reports.iter().map(|r| r.attempt.attempt).collect();
        let percents: Vec<i32> = reports.iter().map(|r| i32::from(r.percent)).collect();
        let messages: Vec<&str> = reports.iter().map(|r| r.message.as_str()).collect();
        let leases: Vec<f64> = reports.iter().map(|r| r.lease.as_secs_f64()).collect();
        let rows = sqlx::query(PROGRESS)
            .bind(&ids)
            .bind(&attempts)
            .bind(&percents)
            .bind(&messages)
            .bind(&leases)
            .bind(worker_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|row| row.get("id")).collect())
    }

    async fn running_progress(&self) -> Result<Vec<TaskProgress>> {
        let rows = sqlx::query_as(super::RUNNING_PROGRESS).fetch_all(&self.pool).await?;
        Ok(super::current_progress(rows))
    }

    async fn cancels_requested(&self, _worker_id: &str, running: &[Uuid]) -> Result<Vec<AttemptRef>> {
        // By primary key: every worker asks every second, whatever the tasks running
        // elsewhere.
        Ok(sqlx::query_as(
            "SELECT id AS task_id, attempt FROM tasks \
             WHERE id = ANY($1) AND status = 'running' AND cancel_requested_at IS NOT NULL",
        )
        .bind(running)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release(
        &self,
        worker_id: &str,
        attempts: &[AttemptRef],
        reason: ReleaseReason,
    ) -> Result<Vec<Uuid>> {
        let ids: Vec<Uuid> = attempts.iter().map(|a| a.task_id).collect();
        let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
        let rows = sqlx::query(RELEASE)
            .bind(&ids)
            .bind(&numbers)
            .bind(worker_id)
            .bind(reason.note())
            .bind(CANCELLED_BY_API)
            .bind(reason.stopped())
            .fetch_all(&self.pool)
            .await?;
        if !rows.is_empty() {
            self.wake_workers(ANY_QUEUE);
        }
        Ok(rows.iter().map(|row| row.get("id")).collect())
    }

    async fn rescue(&self, limit: u32, decide: &RetryDecision) -> Result<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        // Rows locked here stay locked until commit, so two rescuers never both see
        // the same expiry: exactly one `worker_lock_expired` per expired attempt.
        let expired: Vec<Task> = sqlx::query_as(
            r#"
            SELECT * FROM tasks AS t
            WHERE t.status = 'running'
              AND (t.locked_until < now()
                   OR NOT EXISTS (SELECT 1 FROM workers AS w
                                  WHERE w.worker_id = t.worker_id
                                    AND w.last_seen_at > now() - make_interval(secs => $2)))
            ORDER BY t.locked_until
            LIMIT $1
            FOR UPDATE SKIP LOCKED
            "#,
        )
        .bind(i64::from(limit))
        .bind(WORKER_STALE_AFTER.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let failures = rescue_failures(&expired, decide);
        let rescued = Self::apply_failures(&mut *tx, None, &failures).await?;
        tx.commit().await?;
        if super::requeues_any(&failures, &rescued) {
            self.wake_workers(ANY_QUEUE);
        }
        Ok(rescued)
    }

    async fn cancel(&self, id: Uuid, reason: Option<&str>) -> Result<Transition> {
        let task: Option<Task> = sqlx::query_as(bulk::CANCEL)
            .bind(&[id][..])
            .bind(cancel_note(CANCELLED_BY_API, reason, None))
            .bind(reason)
            .bind(true)
            .bind(CANCEL_CHANNEL)
            .fetch_optional(&self.pool)
            .await?;
        self.transition_outcome(id, task).await
    }

    async fn retry(&self, id: Uuid) -> Result<Transition> {
        let task: Option<Task> =
            sqlx::query_as(bulk::RETRY).bind(&[id][..]).fetch_optional(&self.pool).await?;
        if let Some(task) = &task {
            self.wake_workers(Some([task.queue.as_str()]));
        }
        self.transition_outcome(id, task).await
    }

    async fn status_counts(&self) -> Result<Vec<(String, TaskStatus, StatusCount)>> {
        let rows = sqlx::query(
            r#"
            SELECT queue, status, sum(tasks)::int8 AS tasks, sum(retry_sum)::int8 AS retry_sum,
                   sum(with_retries)::int8 AS with_retries
            FROM task_counts GROUP BY queue, status
            "#,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let count = StatusCount {
                    tasks: row.get("tasks"),
                    retry_sum: row.get("retry_sum"),
                    with_retries: row.get("with_retries"),
                };
                (row.get("queue"), row.get("status"), count)
            })
            .collect())
    }

    async fn queue_shape(&self) -> Result<Vec<(String, QueueShape)>> {
        // Read from the claim index, (queue, priority DESC, run_at, id) of queued tasks,
        // one priority at a time: `levels` skips from each queue's highest priority to
        // the next lower one present, one index probe each; within a priority, the
        // oldest runnable task is the first entry and the scheduled ones the entries
        // after `now()`. The cost is a few probes per priority in use, not the backlog.
        let rows = sqlx::query(
            r#"
            WITH RECURSIVE levels (queue, priority) AS (
                SELECT q.name, (SELECT max(priority) FROM tasks WHERE status = 'queued' AND queue = q.name)
                FROM queues AS q
                UNION ALL
                SELECT l.queue, (SELECT max(priority) FROM tasks
                                 WHERE status = 'queued' AND queue = l.queue AND priority < l.priority)
                FROM levels AS l
                WHERE l.priority IS NOT NULL
            ), shapes AS (
                SELECT l.queue,
                       (SELECT count(*) FROM tasks
                        WHERE status = 'queued' AND queue = l.queue AND priority = l.priority
                          AND run_at > now()) AS scheduled,
                       (SELECT min(run_at) FROM tasks
                        WHERE status = 'queued' AND queue = l.queue AND priority = l.priority
                          AND run_at <= now()) AS oldest
                FROM levels AS l
                WHERE l.priority IS NOT NULL
            )
            SELECT q.name, coalesce(sum(s.scheduled), 0)::int8 AS scheduled,
                   extract(epoch FROM now() - min(s.oldest))::float8 AS oldest
            FROM queues AS q LEFT JOIN shapes AS s ON s.queue = q.name
            GROUP BY q.name
            "#,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let shape = QueueShape {
                    scheduled: row.get("scheduled"),
                    oldest_runnable_age_seconds: row.get("oldest"),
                };
                (row.get("name"), shape)
            })
            .collect())
    }

    async fn throughput(&self, minutes: u32) -> Result<Vec<(String, MinuteThroughput)>> {
        let rows = sqlx::query(
            r#"
            SELECT queue, minute, sum(succeeded)::int8 AS succeeded, sum(failed)::int8 AS failed
            FROM task_throughput
            WHERE minute > date_trunc('minute', now()) - make_interval(mins => $1)
            GROUP BY queue, minute ORDER BY minute
            "#,
        )
        .bind(minutes as i32)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let minute = MinuteThroughput {
                    minute: row.get("minute"),
                    succeeded: row.get("succeeded"),
                    failed: row.get("failed"),
                };
                (row.get("queue"), minute)
            })
            .collect())
    }

    async fn queue_settings(&self) -> Result<Vec<QueueSettings>> {
        let rows: Vec<QueueRow> =
            sqlx::query_as(&format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<QueueSettings> {
        let mut tx = self.pool.begin().await?;
        // Waits for the claims that read the old settings (see taskq_claim_gate); the
        // statements after it see them committed, and claims after it see this change.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(QUEUE_LOCK_CLASS)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let before: Option<QueueRow> =
            sqlx::query_as(&format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE name = $1 FOR UPDATE"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let before = before.map(QueueSettings::from);
        // A new rate limit starts with a fresh bucket.
        let after: QueueRow = sqlx::query_as(&format!(
            r#"
            INSERT INTO queues (name, paused, max_running, rate_max, rate_per_ms, max_per_key)
            VALUES ($1, coalesce($2, false), $4, $6, $7, $9)
            ON CONFLICT (name) DO UPDATE SET
                paused = coalesce($2, queues.paused),
                max_running = CASE WHEN $3 THEN $4 ELSE queues.max_running END,
                rate_max = CASE WHEN $5 THEN $6 ELSE queues.rate_max END,
                rate_per_ms = CASE WHEN $5 THEN $7 ELSE queues.rate_per_ms END,
                rate_tat = CASE WHEN $5 THEN NULL ELSE queues.rate_tat END,
                max_per_key = CASE WHEN $8 THEN $9 ELSE queues.max_per_key END,
                updated_at = now()
            RETURNING {QUEUE_COLUMNS}
            "#
        ))
        .bind(name)
        .bind(change.paused)
        .bind(change.max_running.is_some())
        .bind(change.max_running.flatten())
        .bind(change.rate_limit.is_some())
        .bind(change.rate_limit.flatten().map(|l| l.max))
        .bind(change.rate_limit.flatten().map(|l| l.per_ms))
        .bind(change.max_per_key.is_some())
        .bind(change.max_per_key.flatten())
        .fetch_one(&mut *tx)
        .await?;
        let after = QueueSettings::from(after);
        if change.changes_flow() {
            flow::record_flow(&mut tx, "queue", name, after.rate_limit, after.max_per_key).await?;
        }
        for (event, max_running) in queue_events(before.as_ref(), &after) {
            sqlx::query("INSERT INTO queue_history (queue, event, max_running) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(event)
                .bind(max_running)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if let Err(error) = Self::notify(&self.pool, &Hint::Settings(name.to_owned())).await {
            tracing::warn!(error = %error, queue = name, "could not notify workers of a queue change; they will see it at their next poll");
        }
        Ok(after)
    }

    async fn hold_reason(&self, task: &Task) -> Result<Option<super::flow::HoldReason>> {
        self.read_hold_reason(task).await
    }

    async fn type_settings(&self) -> Result<Vec<TypeSettings>> {
        self.read_type_settings().await
    }

    async fn change_type(&self, name: &str, change: TypeChange) -> Result<TypeSettings> {
        self.write_type_settings(name, change).await
    }

    async fn live_workers(&self) -> Result<Vec<WorkerInfo>> {
        Ok(sqlx::query_as(
            "SELECT * FROM workers WHERE last_seen_at > now() - make_interval(secs => $1) ORDER BY worker_id",
        )
        .bind(WORKER_STALE_AFTER.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn compact_counters(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            r#"
            WITH gone AS (DELETE FROM task_counts RETURNING *)
            INSERT INTO task_counts (queue, status, tasks, retry_sum, with_retries)
            SELECT queue, status, sum(tasks), sum(retry_sum), sum(with_retries) FROM gone
            GROUP BY queue, status
            "#,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            r#"
            WITH gone AS (DELETE FROM task_throughput RETURNING *)
            INSERT INTO task_throughput (queue, minute, succeeded, failed)
            SELECT queue, minute, sum(succeeded), sum(failed) FROM gone
            WHERE minute > now() - interval '1 hour'
            GROUP BY queue, minute
            "#,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        sqlx::query(
            r#"
            INSERT INTO workers (worker_id, concurrency, running, started_at, last_seen_at, queues)
            VALUES ($1, $2, $3, $4, now(), $5)
            ON CONFLICT (worker_id) DO UPDATE SET
                concurrency = excluded.concurrency, running = excluded.running,
                last_seen_at = excluded.last_seen_at, queues = excluded.queues
            "#,
        )
        .bind(&worker.worker_id)
        .bind(worker.concurrency)
        .bind(worker.running)
        .bind(worker.started_at)
        .bind(&worker.queues)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deregister(&self, worker_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM workers WHERE worker_id = $1").bind(worker_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn prune(&self, succeeded: Duration, failed: Duration, batch: u32) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PRUNE_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0);
        }
        // A task's events go with it (task_history has no foreign key to cascade).
        // Each scan walks the primary key from the oldest id up to the cutoff's: a task
        // made after the cutoff cannot have finished before it.
        let deleted: i64 = sqlx::query_scalar(
            r#"
            WITH cutoff AS MATERIALIZED (
                SELECT now() - make_interval(secs => $1) AS succeeded,
                       now() - make_interval(secs => $2) AS failed
            ), pruned AS (
                DELETE FROM tasks WHERE id IN (
                    (SELECT id FROM tasks, cutoff
                     WHERE id < taskq_v7_floor(cutoff.succeeded)
                       AND status = 'succeeded' AND completed_at < cutoff.succeeded
                     ORDER BY id LIMIT $3)
                    UNION ALL
                    (SELECT id FROM tasks, cutoff
                     WHERE id < taskq_v7_floor(cutoff.failed)
                       AND status IN ('failed', 'cancelled') AND completed_at < cutoff.failed
                     ORDER BY id LIMIT $3)
                )
                RETURNING id
            ), events AS (
                DELETE FROM task_history WHERE task_id IN (SELECT id FROM pruned)
            )
            SELECT count(*) FROM pruned
            "#,
        )
        .bind(succeeded.as_secs_f64())
        .bind(failed.as_secs_f64())
        .bind(i64::from(batch))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM workers WHERE last_seen_at < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted as u64)
    }

    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<TaskEvent>> {
        Ok(sqlx::query_as(
            r#"
            SELECT e.*, t.queue, t.type, t.name FROM (
                SELECT * FROM task_events WHERE id > $1 AND recorded_id > $1 ORDER BY id LIMIT $2
            ) AS e
            JOIN tasks AS t ON t.id = e.task_id
            ORDER BY e.id
            "#,
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn last_event_id(&self) -> Result<i64> {
        // The highest id in `task_events`, read from the parts whose ids are indexed
        // (a start recorded with its end has a lower id than its end's row).
        Ok(sqlx::query_scalar(
            r#"
            SELECT coalesce(greatest(
                (SELECT max(id) FROM task_history),
                (SELECT max(started_event_id) FROM tasks WHERE status = 'running'),
                (SELECT max(completed_event_id) FROM tasks WHERE status = 'succeeded')
            ), 0)::int8
            "#,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn wakeups(&self) -> Result<Wakeups> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([WAKEUP_CHANNEL, CANCEL_CHANNEL]).await?;
        // `recv` reconnects by itself after a lost connection; notifications sent
        // while disconnected are lost, which the polls (of the queue, of cancels) cover.
        Ok(listener
            .into_stream()
            .filter_map(|item| async move {
                match item {
                    Ok(n) if n.channel() == CANCEL_CHANNEL => {
                        Uuid::parse_str(n.payload()).ok().map(|id| Ok(Hint::Cancel(id)))
                    }
                    Ok(n) => Some(Ok(Hint::from_payload(n.payload()))),
                    Err(error) => Some(Err(StoreError::from(error))),
                }
            })
            .boxed())
    }

    async fn bulk(&self, ids: &[Uuid], action: BulkAction) -> Result<Vec<Uuid>> {
        let changed = bulk::act(&self.pool, ids, action).await?;
        if action == BulkAction::Retry && !changed.is_empty() {
            self.wake_workers(Some(super::distinct(changed.iter().map(|(_, queue)| queue.as_str()))));
        }
        Ok(changed.into_iter().map(|(id, _)| id).collect())
    }
}

impl PgStore {
    /// Turns the result of a guarded manual transition into its outcome: done, or why
    /// not (unknown task, or a status that does not allow it).
    async fn transition_outcome(&self, id: Uuid, changed: Option<Task>) -> Result<Transition> {
        if let Some(task) = changed {
            return Ok(Transition::Done(Box::new(task)));
        }
        let status: Option<TaskStatus> = sqlx::query_scalar("SELECT status FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(status.map_or(Transition::NotFound, Transition::Conflict))
    }
}
