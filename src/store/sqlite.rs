//! The SQLite store: every query taskq runs against its embedded database.
//!
//! One node, one file. WAL lets the API read while a worker writes; every write runs
//! in a `BEGIN IMMEDIATE` transaction, which takes the file's write lock up front, so
//! a claim's read and its write can never interleave with another process's claim on
//! the same file. Times are taken from taskq's clock, never SQLite's, and stored as
//! RFC 3339 text in UTC (which sorts in time order).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::*;

mod bulk;
mod flow;
mod schedules;
mod search;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// In-process wake-ups: on SQLite the API and the worker share one process, so
    /// creating a task wakes the Dispatcher directly instead of through NOTIFY.
    wake: broadcast::Sender<Hint>,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn after(delay: Duration) -> DateTime<Utc> {
    now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

impl SqliteStore {
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(&options.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives a crash of the process (kill -9); only a power
            // loss can roll back the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // An embedded database has no server to drop a connection: a ping before
            // every statement would only be a hop to the connection's thread and back.
            .test_before_acquire(false)
            .connect_with(connect)
            .await?;
        let (wake, _) = broadcast::channel(16);
        Ok(Self { pool, wake })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn wake_workers(&self, hint: Hint) {
        // No receiver (a server-only process) is fine: nobody to wake.
        let _ = self.wake.send(hint);
    }

    /// Makes sure `name` is a known queue; inside a write transaction.
    async fn ensure_queue(
        tx: &mut Transaction<'static, Sqlite>,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO queues (name, created_at, updated_at) VALUES ($1, $2, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Inserts `new` with its `task_queued` event, as a task of `schedule` (and its tick,
    /// `tick_at`) when given; `None` when a unique key already holds it (its idempotency
    /// key, or a tick's id). The queue must exist (`ensure_queue`).
    async fn insert_task(
        tx: &mut Transaction<'static, Sqlite>,
        new: &NewTask,
        at: DateTime<Utc>,
        schedule: Option<&str>,
        tick_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Task>> {
        let task: Option<Task> = sqlx::query_as(
            r#"
            INSERT INTO tasks (id, name, type, payload, priority, max_retries, backoff_seconds,
                               timeout_seconds, run_at, idempotency_key, created_at, updated_at,
                               queue, schedule, tick_at, concurrency_key, max_snoozes)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16)
            ON CONFLICT DO NOTHING
            RETURNING *
            "#,
        )
        .bind(new.id)
        .bind(&new.name)
        .bind(&new.task_type)
        .bind(new.payload.to_string())
        .bind(new.priority)
        .bind(new.max_retries)
        .bind(new.backoff_seconds)
        .bind(new.timeout_seconds)
        .bind(new.run_at.unwrap_or(at))
        .bind(new.idempotency_key.as_deref())
        .bind(at)
        .bind(&new.queue)
        .bind(schedule)
        .bind(tick_at)
        .bind(new.concurrency_key.as_deref())
        .bind(new.max_snoozes)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(task) = &task {
            Self::insert_event(tx, task, EventType::TaskQueued, None, None).await?;
            if task.concurrency_key.is_some() {
                Self::mark_keyed(tx, &task.queue).await?;
            }
        }
        Ok(task)
    }

    async fn insert_event(
        tx: &mut Transaction<'static, Sqlite>,
        task: &Task,
        event: EventType,
        error: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        Self::insert_row(tx, task, event, error, next_run_at, None).await
    }

    /// The event that ends the task's running attempt, with the time of the attempt's
    /// last progress report (`progress_at`), which had restarted its lease.
    async fn insert_end_event(
        tx: &mut Transaction<'static, Sqlite>,
        task: &Task,
        event: EventType,
        error: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let progress_at = task.progress.as_ref().filter(|p| p.attempt == task.attempt).map(|p| p.at);
        Self::insert_row(tx, task, event, error, next_run_at, progress_at).await
    }

    async fn insert_row(
        tx: &mut Transaction<'static, Sqlite>,
        task: &Task,
        event: EventType,
        error: Option<&str>,
        next_run_at: Option<DateTime<Utc>>,
        progress_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            r#"
            INSERT INTO task_history (task_id, event_type, status, retry_count, worker_id, error_message,
                                      next_run_at, created_at, progress_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            "#,
        )
        .bind(task.id)
        .bind(event)
        .bind(task.status)
        .bind(task.retry_count)
        .bind(task.worker_id.as_deref())
        .bind(error)
        .bind(next_run_at)
        .bind(task.updated_at)
        .bind(progress_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Records failed attempts (a snooze requeues without spending a retry, with one
    /// event; a task whose cancel was requested ends `cancelled`, whatever the outcome);
    /// `worker_id` fences to the worker's live lease, `None` (rescue) to the attempt
    /// alone, which the caller's transaction holds.
    async fn apply_failures(
        tx: &mut Transaction<'static, Sqlite>,
        worker_id: Option<&str>,
        failures: &[Failure],
    ) -> Result<Vec<Uuid>> {
        let mut applied = Vec::with_capacity(failures.len());
        for failure in failures {
            let at = now();
            let next_run_at = failure.retry_in.map(after);
            let snoozed = failure.kind == FailureKind::Snoozed;
            let keeps_error = snoozed || failure.kind == FailureKind::Cancelled;
            let task: Option<Task> = sqlx::query_as(
                r#"
                UPDATE tasks SET
                    status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                                  WHEN $3 IS NULL THEN 'failed' ELSE 'queued' END,
                    retry_count = retry_count
                        + (cancel_requested_at IS NULL AND $3 IS NOT NULL AND NOT $7),
                    snooze_count = snooze_count + (cancel_requested_at IS NULL AND $7),
                    run_at = CASE WHEN cancel_requested_at IS NULL THEN coalesce($3, run_at) ELSE run_at END,
                    completed_at = CASE WHEN cancel_requested_at IS NOT NULL OR $3 IS NULL THEN $4 END,
                    last_error = CASE WHEN $8 THEN last_error ELSE $5 END,
                    locked_until = NULL,
                    updated_at = $4
                WHERE id = $1 AND status = 'running' AND attempt = $2
                  AND ($6 IS NULL OR (worker_id = $6 AND locked_until >= $4))
                RETURNING *
                "#,
            )
            .bind(failure.attempt.task_id)
            .bind(failure.attempt.attempt)
            .bind(next_run_at)
            .bind(at)
            .bind(&failure.error)
            .bind(worker_id)
            .bind(snoozed)
            .bind(keeps_error)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(task) = task else { continue };
            let error = Some(failure.error.as_str());
            match task.status {
                TaskStatus::Cancelled => {
                    let note =
                        cancel_note(CANCELLED_BY_API, task.cancel_reason.as_deref(), Some(failure.stopped()));
                    Self::insert_end_event(tx, &task, EventType::TaskCancelled, Some(&note), None).await?;
                }
                TaskStatus::Queued if snoozed => {
                    Self::insert_end_event(tx, &task, EventType::TaskSnoozed, error, next_run_at).await?;
                }
                _ => {
                    // A cancel without a request (none is sent) is a failure like another.
                    let event = match failure.kind {
                        FailureKind::Cancelled => EventType::TaskFailed,
                        kind => kind.event(),
                    };
                    Self::insert_end_event(tx, &task, event, error, None).await?;
                    let decision = if next_run_at.is_some() {
                        EventType::RetryScheduled
                    } else {
                        EventType::TaskFailedFinal
                    };
                    Self::insert_event(tx, &task, decision, error, next_run_at).await?;
                }
            }
            applied.push(task.id);
        }
        Ok(applied)
    }

    /// Applies a guarded manual transition in its own transaction and reports the
    /// outcome: done, or why not.
    async fn transition(
        &self,
        id: Uuid,
        sql: &str,
        event: EventType,
        note: Option<&str>,
    ) -> Result<Transition> {
        let mut tx = self.write().await?;
        let changed: Option<Task> = sqlx::query_as(sql).bind(id).bind(now()).fetch_optional(&mut *tx).await?;
        let outcome = match changed {
            Some(task) => {
                Self::insert_event(&mut tx, &task, event, note, None).await?;
                Transition::Done(Box::new(task))
            }
            None => Self::refused(&mut tx, id).await?,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Why a manual transition of `id` changed nothing: no such task, or its status.
    async fn refused(tx: &mut Transaction<'static, Sqlite>, id: Uuid) -> Result<Transition> {
        let status: Option<TaskStatus> = sqlx::query_scalar("SELECT status FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(status.map_or(Transition::NotFound, Transition::Conflict))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        // SQLite has no advisory lock, so two processes starting together on one file
        // can both try the same migration; the loser fails on "already exists". Trying
        // again then finds the migration applied by the winner.
        let mut tries = 0;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(error) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %error, "migration raced another process; trying again");
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn migrate_down(&self) -> Result<()> {
        let applied = sqlx::query_scalar::<_, i64>(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version DESC LIMIT 2",
        )
        .fetch_all(&self.pool)
        .await?;
        MIGRATOR.undo(&self.pool, applied.get(1).copied().unwrap_or(0)).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<Created>> {
        let mut tx = self.write().await?;
        let at = now();
        let mut inserted = Vec::with_capacity(tasks.len());
        let mut existing = Vec::new();
        for queue in super::distinct(tasks.iter().map(|t| t.queue.as_str())) {
            Self::ensure_queue(&mut tx, queue, at).await?;
        }
        for new in tasks {
            let task = Self::insert_task(&mut tx, new, at, None, None).await?;
            match task {
                Some(task) => inserted.push(task),
                None => {
                    let winner: Option<Task> =
                        sqlx::query_as("SELECT * FROM tasks WHERE idempotency_key = $1")
                            .bind(new.idempotency_key.as_deref())
                            .fetch_optional(&mut *tx)
                            .await?;
                    existing.extend(winner);
                }
            }
        }
        tx.commit().await?;
        let runnable = inserted.iter().filter(|t| t.run_at <= now());
        let woken = super::distinct(runnable.map(|t| t.queue.as_str()));
        if !woken.is_empty() {
            self.wake_workers(Hint::Runnable(Some(woken.into_iter().map(str::to_owned).collect())));
        }
        Ok(match_created(tasks, inserted, existing))
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        Ok(sqlx::query_as("SELECT * FROM tasks WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>> {
        Ok(sqlx::query_as(
            "SELECT h.*, t.queue, t.schedule, t.tick_at FROM task_history AS h JOIN tasks AS t ON t.id = h.task_id \
             WHERE h.task_id = $1 ORDER BY h.id",
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
        self.claim_in(worker_id, queue, limit, lease_grace).await
    }

    async fn complete(&self, worker_id: &str, done: &[Completion]) -> Result<Vec<Uuid>> {
        let mut tx = self.write().await?;
        let mut applied = Vec::with_capacity(done.len());
        for completion in done {
            let task: Option<Task> = sqlx::query_as(
                r#"
                UPDATE tasks SET status = 'succeeded', result = $3, locked_until = NULL,
                                 completed_at = $4, updated_at = $4
                WHERE id = $1 AND status = 'running' AND attempt = $2
                  AND worker_id = $5 AND locked_until >= $4
                RETURNING *
                "#,
            )
            .bind(completion.attempt.task_id)
            .bind(completion.attempt.attempt)
            .bind(completion.result.as_ref().map(|r| r.to_string()))
            .bind(now())
            .bind(worker_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(task) = task {
                Self::insert_end_event(&mut tx, &task, EventType::TaskSucceeded, None, None).await?;
                applied.push(task.id);
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn fail(&self, worker_id: &str, failures: &[Failure]) -> Result<Vec<Uuid>> {
        let mut tx = self.write().await?;
        let applied = Self::apply_failures(&mut tx, Some(worker_id), failures).await?;
        tx.commit().await?;
        if failures.iter().any(|f| f.retry_in.is_some()) {
            self.wake_workers(Hint::Runnable(None));
        }
        Ok(applied)
    }

    async fn report_progress(&self, worker_id: &str, reports: &[ProgressUpdate]) -> Result<Vec<Uuid>> {
        let mut tx = self.write().await?;
        let at = now();
        let mut applied = Vec::with_capacity(reports.len());
        for report in super::latest_reports(reports) {
            let progress = Progress {
                percent: report.percent,
                message: report.message.clone(),
                at,
                attempt: report.attempt.attempt,
            };
            let written = sqlx::query(
                r#"
                UPDATE tasks SET progress = $3, locked_until = max(locked_until, $4)
                WHERE id = $1 AND status = 'running' AND attempt = $2
                  AND worker_id = $5 AND locked_until >= $6
                "#,
            )
            .bind(report.attempt.task_id)
            .bind(report.attempt.attempt)
            .bind(sqlx::types::Json(&progress))
            .bind(after(report.lease))
            .bind(worker_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() > 0 {
                applied.push(report.attempt.task_id);
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn running_progress(&self) -> Result<Vec<TaskProgress>> {
        let rows = sqlx::query_as(super::RUNNING_PROGRESS).fetch_all(&self.pool).await?;
        Ok(super::current_progress(rows))
    }

    async fn cancels_requested(&self, worker_id: &str, _running: &[Uuid]) -> Result<Vec<AttemptRef>> {
        // One node: its running tasks are few, and an id list has no one-statement form.
        Ok(sqlx::query_as(
            "SELECT id AS task_id, attempt FROM tasks \
             WHERE status = 'running' AND worker_id = $1 AND cancel_requested_at IS NOT NULL",
        )
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release(
        &self,
        worker_id: &str,
        attempts: &[AttemptRef],
        reason: ReleaseReason,
    ) -> Result<Vec<Uuid>> {
        let mut tx = self.write().await?;
        let mut applied = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            let at = now();
            // A task whose cancel was requested never goes back to the queue.
            let task: Option<Task> = sqlx::query_as(
                r#"
                UPDATE tasks SET
                    status = CASE WHEN cancel_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
                    completed_at = CASE WHEN cancel_requested_at IS NOT NULL THEN $3 END,
                    locked_until = NULL,
                    updated_at = $3
                WHERE id = $1 AND status = 'running' AND attempt = $2 AND worker_id = $4
                RETURNING *
                "#,
            )
            .bind(attempt.task_id)
            .bind(attempt.attempt)
            .bind(at)
            .bind(worker_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(task) = task else { continue };
            if task.status == TaskStatus::Cancelled {
                let note =
                    cancel_note(CANCELLED_BY_API, task.cancel_reason.as_deref(), Some(reason.stopped()));
                Self::insert_end_event(&mut tx, &task, EventType::TaskCancelled, Some(&note), None).await?;
            } else {
                Self::insert_end_event(&mut tx, &task, EventType::TaskRequeued, Some(reason.note()), None)
                    .await?;
            }
            applied.push(task.id);
        }
        tx.commit().await?;
        self.wake_workers(Hint::Runnable(None));
        Ok(applied)
    }

    async fn rescue(&self, limit: u32, decide: &RetryDecision) -> Result<Vec<Uuid>> {
        let mut tx = self.write().await?;
        let at = now();
        let stale = at - chrono::Duration::from_std(WORKER_STALE_AFTER).unwrap_or_default();
        let expired: Vec<Task> = sqlx::query_as(
            r#"
            SELECT * FROM tasks AS t
            WHERE t.status = 'running'
              AND (t.locked_until < $2
                   OR NOT EXISTS (SELECT 1 FROM workers AS w
                                  WHERE w.worker_id = t.worker_id AND w.last_seen_at > $3))
            ORDER BY t.locked_until
            LIMIT $1
            "#,
        )
        .bind(i64::from(limit))
        .bind(at)
        .bind(stale)
        .fetch_all(&mut *tx)
        .await?;
        let failures = rescue_failures(&expired, decide);
        let rescued = Self::apply_failures(&mut tx, None, &failures).await?;
        tx.commit().await?;
        if super::requeues_any(&failures, &rescued) {
            self.wake_workers(Hint::Runnable(None));
        }
        Ok(rescued)
    }

    async fn cancel(&self, id: Uuid, reason: Option<&str>) -> Result<Transition> {
        let mut tx = self.write().await?;
        let at = now();
        let mut requested = false;
        let cancelled: Option<Task> =
            sqlx::query_as(bulk::CANCEL).bind(id).bind(at).fetch_optional(&mut *tx).await?;
        let outcome = if let Some(task) = cancelled {
            let note = cancel_note(CANCELLED_BY_API, reason, None);
            Self::insert_event(&mut tx, &task, EventType::TaskCancelled, Some(&note), None).await?;
            Transition::Done(Box::new(task))
        } else if let Some(task) = sqlx::query_as(
            r#"
            UPDATE tasks SET
                cancel_requested_at = coalesce(cancel_requested_at, $2),
                cancel_reason = CASE WHEN cancel_requested_at IS NULL THEN $3 ELSE cancel_reason END
            WHERE id = $1 AND status = 'running'
            RETURNING *
            "#,
        )
        .bind(id)
        .bind(at)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?
        {
            requested = true;
            Transition::Done(Box::new(task))
        } else {
            Self::refused(&mut tx, id).await?
        };
        tx.commit().await?;
        if requested {
            // The worker is in this process: it hears at once.
            self.wake_workers(Hint::Cancel(id));
        }
        Ok(outcome)
    }

    async fn retry(&self, id: Uuid) -> Result<Transition> {
        let outcome = self
            .transition(
                id,
                r#"
                UPDATE tasks SET status = 'queued', retry_count = 0, snooze_count = 0, run_at = $2,
                                 completed_at = NULL, result = NULL, cancel_requested_at = NULL,
                         cancel_reason = NULL, updated_at = $2
                WHERE id = $1 AND status IN ('failed', 'cancelled')
                RETURNING *
                "#,
                EventType::TaskRequeued,
                Some("manual retry"),
            )
            .await?;
        if let Transition::Done(task) = &outcome {
            self.wake_workers(Hint::Runnable(Some(vec![task.queue.clone()])));
        }
        Ok(outcome)
    }

    async fn status_counts(&self) -> Result<Vec<(String, TaskStatus, StatusCount)>> {
        let rows = sqlx::query("SELECT queue, status, tasks, retry_sum, with_retries FROM task_counts")
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
        let at = now();
        let rows = sqlx::query(
            r#"
            SELECT q.name,
                   (SELECT count(*) FROM tasks
                    WHERE queue = q.name AND status = 'queued' AND run_at > $1) AS scheduled,
                   (SELECT min(run_at) FROM tasks
                    WHERE queue = q.name AND status = 'queued' AND run_at <= $1) AS oldest
            FROM queues AS q
            "#,
        )
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let oldest: Option<DateTime<Utc>> = row.get("oldest");
                let shape = QueueShape {
                    scheduled: row.get("scheduled"),
                    oldest_runnable_age_seconds: oldest.map(|t| (at - t).num_milliseconds() as f64 / 1000.0),
                };
                (row.get("name"), shape)
            })
            .collect())
    }

    async fn throughput(&self, minutes: u32) -> Result<Vec<(String, MinuteThroughput)>> {
        let since = now() - chrono::Duration::minutes(i64::from(minutes));
        let rows = sqlx::query(
            "SELECT queue, minute, succeeded, failed FROM task_throughput WHERE minute > $1 ORDER BY minute",
        )
        .bind(since.format("%Y-%m-%dT%H:%M:00Z").to_string())
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
        // The write lock orders this change against every claim.
        let mut tx = self.write().await?;
        let at = now();
        let before: Option<QueueRow> =
            sqlx::query_as(&format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE name = $1"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let before = before.map(QueueSettings::from);
        // A new rate limit starts with a fresh bucket.
        let after: QueueRow = sqlx::query_as(&format!(
            r#"
            INSERT INTO queues (name, paused, max_running, rate_max, rate_per_ms, max_per_key,
                                created_at, updated_at)
            VALUES ($1, coalesce($2, 0), $4, $7, $8, $10, $5, $5)
            ON CONFLICT (name) DO UPDATE SET
                paused = coalesce($2, queues.paused),
                max_running = CASE WHEN $3 THEN $4 ELSE queues.max_running END,
                rate_max = CASE WHEN $6 THEN $7 ELSE queues.rate_max END,
                rate_per_ms = CASE WHEN $6 THEN $8 ELSE queues.rate_per_ms END,
                rate_tat = CASE WHEN $6 THEN NULL ELSE queues.rate_tat END,
                max_per_key = CASE WHEN $9 THEN $10 ELSE queues.max_per_key END,
                updated_at = $5
            RETURNING {QUEUE_COLUMNS}
            "#
        ))
        .bind(name)
        .bind(change.paused)
        .bind(change.max_running.is_some())
        .bind(change.max_running.flatten())
        .bind(at)
        .bind(change.rate_limit.is_some())
        .bind(change.rate_limit.flatten().map(|l| l.max))
        .bind(change.rate_limit.flatten().map(|l| l.per_ms))
        .bind(change.max_per_key.is_some())
        .bind(change.max_per_key.flatten())
        .fetch_one(&mut *tx)
        .await?;
        let after = QueueSettings::from(after);
        if change.changes_flow() {
            flow::record_flow(&mut tx, "queue", name, after.rate_limit, after.max_per_key, at).await?;
        }
        for (event, max_running) in queue_events(before.as_ref(), &after) {
            sqlx::query(
                "INSERT INTO queue_history (queue, event, max_running, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(event)
            .bind(max_running)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.wake_workers(Hint::Settings(name.to_owned()));
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
        let stale = now() - chrono::Duration::from_std(WORKER_STALE_AFTER).unwrap_or_default();
        Ok(sqlx::query_as("SELECT * FROM workers WHERE last_seen_at > $1 ORDER BY worker_id")
            .bind(stale)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn compact_counters(&self) -> Result<()> {
        // Counters are updated in place on SQLite; only old throughput goes.
        let hour_ago = now() - chrono::Duration::hours(1);
        sqlx::query("DELETE FROM task_throughput WHERE minute < $1")
            .bind(hour_ago.format("%Y-%m-%dT%H:%M:00Z").to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        sqlx::query(
            r#"
            INSERT INTO workers (worker_id, concurrency, running, started_at, last_seen_at, queues)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (worker_id) DO UPDATE SET
                concurrency = excluded.concurrency, running = excluded.running,
                last_seen_at = excluded.last_seen_at, queues = excluded.queues
            "#,
        )
        .bind(&worker.worker_id)
        .bind(worker.concurrency)
        .bind(worker.running)
        .bind(worker.started_at)
        .bind(now())
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
        let mut tx = self.write().await?;
        let deleted = sqlx::query(
            r#"
            DELETE FROM tasks WHERE id IN (
                SELECT id FROM (SELECT id FROM tasks WHERE status = 'succeeded'
                                  AND completed_at < $1 LIMIT $3)
                UNION ALL
                SELECT id FROM (SELECT id FROM tasks WHERE status IN ('failed', 'cancelled')
                                  AND completed_at < $2 LIMIT $3)
            )
            "#,
        )
        .bind(now() - chrono::Duration::from_std(succeeded).unwrap_or(chrono::Duration::MAX))
        .bind(now() - chrono::Duration::from_std(failed).unwrap_or(chrono::Duration::MAX))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM workers WHERE last_seen_at < $1")
            .bind(now() - chrono::Duration::hours(1))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<TaskEvent>> {
        Ok(sqlx::query_as(
            r#"
            SELECT h.*, t.queue, t.type, t.name FROM task_history AS h JOIN tasks AS t ON t.id = h.task_id
            WHERE h.id > $1 ORDER BY h.id LIMIT $2
            "#,
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn last_event_id(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM task_history").fetch_one(&self.pool).await?)
    }

    async fn wakeups(&self) -> Result<Wakeups> {
        let receiver = self.wake.subscribe();
        Ok(futures_util::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(hint) => Some((Ok(hint), receiver)),
                // A lagged receiver missed hints: it looks at every queue.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Ok(Hint::Runnable(None)), receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed())
    }

    async fn bulk(&self, ids: &[Uuid], action: BulkAction) -> Result<Vec<Uuid>> {
        let changed = bulk::act(self, ids, action).await?;
        if action == BulkAction::Retry && !changed.is_empty() {
            let queues = super::distinct(changed.iter().map(|(_, queue)| queue.as_str()));
            self.wake_workers(Hint::Runnable(Some(queues.into_iter().map(str::to_owned).collect())));
        }
        Ok(changed.into_iter().map(|(id, _)| id).collect())
    }
}
