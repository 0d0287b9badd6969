//! The store: the only way any part of taskq reads or changes the queue.
//!
//! PostgreSQL is the production store (many nodes, `FOR UPDATE SKIP LOCKED`,
//! LISTEN/NOTIFY); SQLite is the embedded one (one node, WAL, `BEGIN IMMEDIATE`). Both
//! implement [`Store`] and pass the same test suite. The store knows neither HTTP nor
//! actors.
//!
//! Every operation that changes a task writes its history event in the same
//! transaction, and every outcome write is fenced by the attempt it belongs to: a
//! write whose fence no longer holds changes nothing and is reported as not applied.
//!
//! Layout:
//! - `model`: the task, its history, and the inputs/outputs of operations;
//! - `postgres`, `sqlite`: one module per backend holding every query for it;
//! - [`stats`]: assembles the statistics snapshot from the backend's counters;
//! - [`search`], `bulk`: the task search and bulk actions on it, over both backends;
//! - [`flow`]: rate limits and concurrency keys: what a planned claim takes;
//! - `schedules`: periodic tasks and the scheduler's leadership ([`ScheduleStore`]).

mod bulk;
pub mod flow;
mod group;
mod model;
mod postgres;
mod schedules;
pub mod search;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use uuid::Uuid;

pub use bulk::{BULK_PAGE, BulkAction, BulkOutcome, BulkScope, run_bulk};
pub use group::CreateBatcher;
pub use model::*;
pub use postgres::PgStore;
pub use schedules::*;
pub use sqlite::SqliteStore;

/// How long a worker may go without a heartbeat before its running tasks are
/// rescued, without waiting for their leases. Three missed heartbeats.
pub const WORKER_STALE_AFTER: Duration = Duration::from_secs(15);

/// How many minutes of per-minute throughput the stats snapshot carries.
pub const THROUGHPUT_WINDOW_MINUTES: u32 = 15;

/// How long a caller waits for a pooled connection before the store answers
/// `Unavailable` (the API's 503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The NOTIFY channel that wakes Dispatchers when runnable tasks arrive.
pub const WAKEUP_CHANNEL: &str = "taskq_wakeup";

/// The NOTIFY channel that tells workers a running task's cancel was requested (the
/// payload is its id); sent in the requesting transaction. Kept apart from
/// [`WAKEUP_CHANNEL`], whose NOTIFYs are folded and sent off the writers' path.
pub const CANCEL_CHANNEL: &str = "taskq_cancel";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now (connection refused or lost, pool
    /// exhausted). Callers retry with backoff; the API answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// Any other database error: a bug or a violated constraint.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: expected postgres://, postgresql:// or sqlite://")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(Arc::new(error)),
            sqlx::Error::Database(db) if is_transient(db.as_ref()) => Self::Unavailable(Arc::new(error)),
            _ => Self::Database(error),
        }
    }
}

/// Errors that mean "not now" rather than "never": PostgreSQL's connection exceptions
/// (class 08) and operator interventions (57P: shutdown, cannot connect now), and
/// SQLite's busy and locked after the busy timeout (primary codes 5 and 6).
fn is_transient(db: &(dyn sqlx::error::DatabaseError + 'static)) -> bool {
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
        return matches!(primary, Some(5 | 6));
    }
    db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Decides whether a rescued attempt is retried, and after how long (see
/// [`RetryPolicy::decide`](crate::backoff::RetryPolicy::decide)).
pub type RetryDecision = dyn for<'t> Fn(&'t Task) -> Option<Duration> + Send + Sync;

/// Wake-up hints for Dispatchers: runnable tasks may have arrived, or a queue's
/// settings changed. Correctness never depends on them (the poll is the fallback).
pub type Wakeups = BoxStream<'static, Result<Hint>>;

/// Everything taskq does with its database. Methods taking slices are batched: one
/// statement (PostgreSQL) or one transaction (SQLite) per call.
#[async_trait]
pub trait Store: ScheduleStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Reverts the most recent migration.
    async fn migrate_down(&self) -> Result<()>;
    /// One round trip, for health checks.
    async fn ping(&self) -> Result<()>;
    /// Closes the pool; in-flight queries finish first.
    async fn close(&self);

    /// Inserts tasks in one transaction with their `task_queued` events and wakes
    /// workers after commit. A task whose idempotency key exists already is not
    /// inserted: the existing task is returned with `inserted: false`.
    async fn create_tasks(&self, tasks: &[NewTask]) -> Result<Vec<Created>>;
    async fn get_task(&self, id: Uuid) -> Result<Option<Task>>;
    /// The task's events, oldest first; empty when the task does not exist.
    async fn history(&self, id: Uuid) -> Result<Vec<HistoryEvent>>;
    async fn list_tasks(&self, filter: &ListFilter) -> Result<Vec<Task>>;

    /// Claims at most `limit` runnable tasks of `queue` in claim order (`priority DESC,
    /// run_at, id`) for `worker_id`, with a lease of `timeout_seconds + lease_grace`.
    /// Claims nothing from a paused queue, no more than a limited queue's `max_running`
    /// leaves free across all workers, and no task that its rate limits or its
    /// concurrency key hold back ([`flow`]).
    async fn claim_batch(
        &self,
        worker_id: &str,
        queue: &str,
        limit: u32,
        lease_grace: Duration,
    ) -> Result<Claim>;
    /// [`Store::claim_batch`]'s tasks alone.
    async fn claim(
        &self,
        worker_id: &str,
        queue: &str,
        limit: u32,
        lease_grace: Duration,
    ) -> Result<Vec<Task>> {
        Ok(self.claim_batch(worker_id, queue, limit, lease_grace).await?.tasks)
    }
    /// Marks attempts succeeded; returns the ids whose fence held.
    async fn complete(&self, worker_id: &str, done: &[Completion]) -> Result<Vec<Uuid>>;
    /// Records failed attempts and the retry decision; returns the ids whose fence held.
    async fn fail(&self, worker_id: &str, failures: &[Failure]) -> Result<Vec<Uuid>>;
    /// Records progress reports of running attempts and restarts their leases (`now +
    /// lease`), fenced like an outcome (worker, attempt, live lease); returns the ids
    /// whose fence held. A report is no state change: neither `updated_at` nor the
    /// history is written.
    async fn report_progress(&self, worker_id: &str, reports: &[ProgressUpdate]) -> Result<Vec<Uuid>>;
    /// The latest report of every running task that reported on its current attempt,
    /// for the live stream.
    async fn running_progress(&self) -> Result<Vec<TaskProgress>>;
    /// Puts running attempts back to `queued` without spending a retry; `reason` is
    /// the history note of their `task_requeued` event.
    async fn release(
        &self,
        worker_id: &str,
        attempts: &[AttemptRef],
        reason: ReleaseReason,
    ) -> Result<Vec<Uuid>>;
    /// Fails attempts whose lease ran out or whose worker stopped heartbeating, at most
    /// `limit`, deciding each retry with `decide`. Safe with several rescuers running.
    async fn rescue(&self, limit: u32, decide: &RetryDecision) -> Result<Vec<Uuid>>;

    /// `queued` → `cancelled` (its note names the API, and the reason if given); a
    /// `running` task is marked (`cancel_requested_at`, `cancel_reason`; a second
    /// request keeps the first) and stays running, and its worker is told (a NOTIFY on
    /// [`CANCEL_CHANNEL`] in the same transaction; in-process on SQLite). Its outcome
    /// write then ends it `cancelled`.
    async fn cancel(&self, id: Uuid, reason: Option<&str>) -> Result<Transition>;
    /// Of `running` (the tasks `worker_id` runs), the attempts whose cancel was
    /// requested: the fallback of the cancel's NOTIFY, polled by the worker.
    async fn cancels_requested(&self, worker_id: &str, running: &[Uuid]) -> Result<Vec<AttemptRef>>;
    /// `failed` or `cancelled` → `queued`, with its retries restored.
    async fn retry(&self, id: Uuid) -> Result<Transition>;

    /// Totals per queue and status from the counter tables.
    async fn status_counts(&self) -> Result<Vec<(String, TaskStatus, StatusCount)>>;
    /// Each known queue's shape.
    async fn queue_shape(&self) -> Result<Vec<(String, QueueShape)>>;
    /// Terminal counts per queue and minute, over the last `minutes`.
    async fn throughput(&self, minutes: u32) -> Result<Vec<(String, MinuteThroughput)>>;
    /// Every known queue's settings, by name.
    async fn queue_settings(&self) -> Result<Vec<QueueSettings>>;
    /// Changes a queue's settings, creating the queue if it is unknown, and records
    /// the change in `queue_history`. Returns once every claim that could have read the
    /// old settings has committed, and wakes the queue's Dispatchers.
    async fn change_queue(&self, name: &str, change: QueueChange) -> Result<QueueSettings>;
    /// Why a runnable queued task is not running, if its limits say ([`flow::HoldReason`]).
    async fn hold_reason(&self, task: &Task) -> Result<Option<flow::HoldReason>>;
    /// Every task type with flow settings, by name.
    async fn type_settings(&self) -> Result<Vec<TypeSettings>>;
    /// Changes a task type's flow settings, recording the change in `flow_history`; a
    /// type left with no settings has no row. Returns once every claim that could have
    /// read the old settings has committed.
    async fn change_type(&self, name: &str, change: TypeChange) -> Result<TypeSettings>;
    async fn live_workers(&self) -> Result<Vec<WorkerInfo>>;
    /// Folds counter deltas and drops throughput older than an hour.
    async fn compact_counters(&self) -> Result<()>;

    /// Records a worker's heartbeat.
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()>;
    async fn deregister(&self, worker_id: &str) -> Result<()>;
    /// Deletes up to `batch` terminal tasks (with their history) older than the
    /// retention, if no other process is pruning now. Returns how many went.
    async fn prune(&self, succeeded: Duration, failed: Duration, batch: u32) -> Result<u64>;

    /// History events with an id above `after`, oldest first, for the live stream.
    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<TaskEvent>>;
    async fn last_event_id(&self) -> Result<i64>;
    /// A stream of wake-up hints.
    async fn wakeups(&self) -> Result<Wakeups>;

    /// Applies a bulk action to those of `ids` whose status allows it, each fenced and
    /// with its history as the single-task action; returns the ids changed. One
    /// transaction: callers pass a page ([`run_bulk`]).
    async fn bulk(&self, ids: &[Uuid], action: BulkAction) -> Result<Vec<Uuid>>;
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    /// How long a query waits for a free connection before the store reports the
    /// database unavailable (so the API answers 503 instead of hanging).
    pub acquire_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 10, acquire_timeout: ACQUIRE_TIMEOUT }
    }
}

/// Opens the store the URL's scheme names. Connecting is lazy for PostgreSQL, so a
/// process starts (and answers `/livez`) while the database is still down.
pub async fn connect(options: &ConnectOptions) -> Result<Arc<dyn Store>> {
    let url = options.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(options)?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(options).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// The statistics snapshot: counters, queue shape, throughput and live workers, in
/// total and per queue.
pub async fn stats(store: &dyn Store) -> Result<Stats> {
    let counts = store.status_counts().await?;
    let shapes = store.queue_shape().await?;
    let throughput = store.throughput(THROUGHPUT_WINDOW_MINUTES).await?;
    let workers = store.live_workers().await?;
    let settings = store.queue_settings().await?;

    let queues = queue_stats(&settings, &counts, &shapes, &throughput, &workers);
    let per_minute = sum_minutes(throughput.iter().map(|(_, minute)| minute));
    let of = |status: TaskStatus| {
        counts.iter().filter(|(_, s, _)| *s == status).map(|(_, _, c)| c.tasks).sum::<i64>()
    };
    let total: StatusCount = counts.iter().fold(StatusCount::default(), |sum, (_, _, c)| StatusCount {
        tasks: sum.tasks + c.tasks,
        retry_sum: sum.retry_sum + c.retry_sum,
        with_retries: sum.with_retries + c.with_retries,
    });
    let scheduled_tasks = shapes.iter().map(|(_, shape)| shape.scheduled).sum();
    let oldest_runnable_age_seconds =
        shapes.iter().filter_map(|(_, shape)| shape.oldest_runnable_age_seconds).reduce(f64::max);
    let unserved_tasks = queues.iter().filter(|q| q.workers.is_empty()).map(|q| q.queued).sum();
    Ok(Stats {
        total_tasks: total.tasks,
        queued_tasks: of(TaskStatus::Queued),
        running_tasks: of(TaskStatus::Running),
        succeeded_tasks: of(TaskStatus::Succeeded),
        failed_tasks: of(TaskStatus::Failed),
        cancelled_tasks: of(TaskStatus::Cancelled),
        avg_retry_count: if total.tasks > 0 { total.retry_sum as f64 / total.tasks as f64 } else { 0.0 },
        tasks_with_retries: total.with_retries,
        scheduled_tasks,
        oldest_runnable_age_seconds,
        throughput: Throughput { window_minutes: THROUGHPUT_WINDOW_MINUTES, per_minute },
        live_workers: workers.len() as i64,
        workers,
        queues,
        unserved_tasks,
        generated_at: chrono::Utc::now(),
    })
}

/// Each known queue's figures, by name; a queue that has counters but no settings row
/// (none should) is listed too, without a limit. One pass over each input: a stats
/// tick costs the same per queue however many queues there are.
fn queue_stats(
    settings: &[QueueSettings],
    counts: &[(String, TaskStatus, StatusCount)],
    shapes: &[(String, QueueShape)],
    throughput: &[(String, MinuteThroughput)],
    workers: &[WorkerInfo],
) -> Vec<QueueStats> {
    let mut queues: std::collections::BTreeMap<&str, QueueStats> = std::collections::BTreeMap::new();
    let empty = |name: &str| QueueStats {
        name: name.to_owned(),
        max_running: None,
        paused: false,
        rate_limit: None,
        max_per_key: None,
        queued: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
        scheduled: 0,
        oldest_runnable_age_seconds: None,
        throughput: Throughput { window_minutes: THROUGHPUT_WINDOW_MINUTES, per_minute: Vec::new() },
        workers: Vec::new(),
    };
    for setting in settings {
        let queue = queues.entry(&setting.name).or_insert_with(|| empty(&setting.name));
        (queue.max_running, queue.paused) = (setting.max_running, setting.paused);
        (queue.rate_limit, queue.max_per_key) = (setting.rate_limit, setting.max_per_key);
    }
    for (name, status, count) in counts {
        let queue = queues.entry(name).or_insert_with(|| empty(name));
        *match status {
            TaskStatus::Queued => &mut queue.queued,
            TaskStatus::Running => &mut queue.running,
            TaskStatus::Succeeded => &mut queue.succeeded,
            TaskStatus::Failed => &mut queue.failed,
            TaskStatus::Cancelled => &mut queue.cancelled,
        } += count.tasks;
    }
    for (name, shape) in shapes {
        if let Some(queue) = queues.get_mut(name.as_str()) {
            queue.scheduled = shape.scheduled;
            queue.oldest_runnable_age_seconds = shape.oldest_runnable_age_seconds;
        }
    }
    let mut minutes: std::collections::HashMap<&str, Vec<&MinuteThroughput>> = Default::default();
    for (name, minute) in throughput {
        minutes.entry(name).or_default().push(minute);
    }
    for worker in workers {
        for name in worker.queue_names() {
            if let Some(queue) = queues.get_mut(name) {
                queue.workers.push(worker.worker_id.clone());
            }
        }
    }
    queues
        .into_values()
        .map(|mut queue| {
            let of_queue = minutes.remove(queue.name.as_str()).unwrap_or_default();
            queue.throughput.per_minute = sum_minutes(of_queue.into_iter());
            queue
        })
        .collect()
}

/// Adds up per-queue minutes into one series, oldest first.
fn sum_minutes<'a>(minutes: impl Iterator<Item = &'a MinuteThroughput>) -> Vec<MinuteThroughput> {
    let mut by_minute: std::collections::BTreeMap<chrono::DateTime<chrono::Utc>, (i64, i64)> =
        Default::default();
    for m in minutes {
        let sum = by_minute.entry(m.minute).or_default();
        sum.0 += m.succeeded;
        sum.1 += m.failed;
    }
    by_minute
        .into_iter()
        .map(|(minute, (succeeded, failed))| MinuteThroughput { minute, succeeded, failed })
        .collect()
}

/// Pairs each requested task with the stored one: inserted now, or the earlier task
/// that holds its idempotency key.
/// Batches hold up to a thousand tasks, so look-ups go through maps, not scans.
fn match_created(requested: &[NewTask], inserted: Vec<Task>, existing: Vec<Task>) -> Vec<Created> {
    let by_key: std::collections::HashMap<&str, &Task> = inserted
        .iter()
        .chain(existing.iter())
        .filter_map(|t| t.idempotency_key.as_deref().map(|key| (key, t)))
        .collect();
    let by_id: std::collections::HashMap<Uuid, &Task> = inserted.iter().map(|t| (t.id, t)).collect();
    requested
        .iter()
        .filter_map(|request| {
            if let Some(task) = by_id.get(&request.id) {
                return Some(Created { task: (*task).clone(), inserted: true });
            }
            let key = request.idempotency_key.as_deref()?;
            by_key.get(key).map(|task| Created { task: (*task).clone(), inserted: false })
        })
        .collect()
}

/// The reports of a batch to write, the latest of each task's only (a write takes one
/// report per task; which of two would win is not defined), oldest first.
fn latest_reports(reports: &[ProgressUpdate]) -> Vec<&ProgressUpdate> {
    let mut seen = std::collections::HashSet::new();
    let mut latest: Vec<&ProgressUpdate> =
        reports.iter().rev().filter(|report| seen.insert(report.attempt.task_id)).collect();
    latest.reverse();
    latest
}

/// The running tasks' progress, on either backend ([`current_progress`] keeps the
/// reports of their current attempt). Running tasks are few: PostgreSQL reaches them
/// through the lease index.
const RUNNING_PROGRESS: &str =
    "SELECT id, attempt, progress FROM tasks WHERE status = 'running' AND progress IS NOT NULL";

/// Of running tasks' stored progress, the reports made by their current attempt.
fn current_progress(rows: Vec<(Uuid, i32, sqlx::types::Json<Progress>)>) -> Vec<TaskProgress> {
    rows.into_iter()
        .filter(|(_, attempt, progress)| progress.attempt == *attempt)
        .map(|(task_id, _, progress)| TaskProgress { task_id, progress: progress.0 })
        .collect()
}

/// The distinct queue names among `queues`, sorted.
fn distinct<'a>(queues: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = queues.collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether any of the failures written (`written`: their task ids) put a task back in
/// the queue: only then is there something for the workers to wake up for.
fn requeues_any(failures: &[Failure], written: &[Uuid]) -> bool {
    failures.iter().any(|failure| failure.retry_in.is_some() && written.contains(&failure.attempt.task_id))
}

/// The failed attempts a rescue records: each expired attempt with its retry decision.
fn rescue_failures(expired: &[Task], decide: &RetryDecision) -> Vec<Failure> {
    expired
        .iter()
        .map(|task| Failure {
            attempt: AttemptRef { task_id: task.id, attempt: task.attempt },
            kind: FailureKind::LockExpired,
            error: format!(
                "worker {} lost its lease on attempt {}",
                task.worker_id.as_deref().unwrap_or("?"),
                task.attempt
            ),
            retry_in: decide(task),
        })
        .collect()
}

/// The `queue_history` events that a settings change from `before` (`None`: a queue
/// created by the change) to `after` writes: `paused`, `resumed`, and `limit_changed`
/// with the new limit.
fn queue_events(before: Option<&QueueSettings>, after: &QueueSettings) -> Vec<(&'static str, Option<i32>)> {
    let was_paused = before.is_some_and(|b| b.paused);
    let old_limit = before.and_then(|b| b.max_running);
    let mut events = Vec::new();
    if after.paused != was_paused {
        events.push((if after.paused { "paused" } else { "resumed" }, None));
    }
    if after.max_running != old_limit {
        events.push(("limit_changed", after.max_running));
    }
    events
}
