//! The task model shared by every layer: what a task is, what happened to it, and the
//! inputs and outputs of the store's operations.
//!
//! Field names are the JSON names of the HTTP API (compatible with TaskQueue-Go), so
//! the HTTP layer serialises these types as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::flow::{Held, RateLimit};

/// The queue of tasks created without one, and the one a worker serves without
/// `WORKER_QUEUES`.
pub const DEFAULT_QUEUE: &str = "default";

/// Checks a queue name: 1 to 64 characters of `[a-z0-9_.-]`, as the schema requires.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let valid_chars = name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if (1..=64).contains(&name.len()) && valid_chars {
        Ok(())
    } else {
        Err(format!("queue name {name:?} must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-'"))
    }
}

/// Where a task is in its life. `queued` includes scheduled tasks and tasks waiting
/// for a retry: `run_at` says when they become runnable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "task_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// Terminal statuses never change again, except by an explicit manual retry.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!("unknown status {s:?}: expected one of queued, running, succeeded, failed, cancelled")
        })
    }
}

/// One kind of entry in a task's history. Every state change writes exactly one or
/// two of these in the same transaction as the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "task_event", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    TaskQueued,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    RetryScheduled,
    TimeoutOccurred,
    WorkerLockExpired,
    TaskFailedFinal,
    TaskCancelled,
    TaskRequeued,
    /// The handler answered "not yet" (`HandlerError::Snooze`): back to the queue until
    /// `next_run_at`, without spending a retry.
    TaskSnoozed,
}

/// A task as stored. `attempt` counts claims and fences outcome writes; `locked_until`
/// is the lease of the current attempt while `running`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub task_type: String,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub payload: Value,
    pub status: TaskStatus,
    pub priority: i32,
    pub retry_count: i32,
    pub max_retries: i32,
    /// Snoozes so far (`HandlerError::Snooze`): each put the task back in the queue
    /// without spending a retry. A manual retry resets it. (Fields added to the
    /// original API default when absent, so a task read from older JSON still parses.)
    #[serde(default)]
    pub snooze_count: i32,
    /// The most snoozes the task may take; one more fails it for good.
    #[serde(default = "default_max_snoozes")]
    pub max_snoozes: i32,
    pub backoff_seconds: i32,
    pub timeout_seconds: i32,
    pub attempt: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    #[sqlx(json(nullable))]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub worker_id: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The latest progress report of the running attempt (or of the last attempt, once
    /// it ended); `null` when none was made.
    #[sqlx(json(nullable))]
    #[serde(default)]
    pub progress: Option<Progress>,
    /// When a cancel of the running task was requested (`POST /api/tasks/{id}/cancel`):
    /// its worker stops it and it ends `cancelled`. Cleared by a manual retry.
    #[serde(default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The reason given with that request, if any.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// The named queue the task waits in; workers claim per queue.
    pub queue: String,
    /// Tasks of a queue with the same key run at most `max_per_key` at a time.
    #[sqlx(default)]
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// The schedule that enqueued the task, if one did.
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The tick the task was enqueued for; `null` for a manual run of its schedule.
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_at: Option<DateTime<Utc>>,
}

/// One entry of a task's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HistoryEvent {
    pub id: i64,
    pub task_id: Uuid,
    pub event_type: EventType,
    pub status: TaskStatus,
    pub retry_count: i32,
    pub worker_id: Option<String>,
    pub error_message: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The task's queue (a task never changes queue, so it is read from the task).
    pub queue: String,
    /// The task's schedule and tick, read from the task like its queue.
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_at: Option<DateTime<Utc>>,
    /// On an event that ended an attempt: the attempt's last progress report, which had
    /// restarted its lease (`taskq check` measures the lease from it).
    #[sqlx(default)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<DateTime<Utc>>,
}

/// A handler's report on its running attempt (`TaskContext::progress`), as the task
/// holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// How far along, from 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub percent: u8,
    /// What it is doing, at most 200 characters (`handlers::PROGRESS_MESSAGE_MAX`).
    pub message: String,
    /// When the report was written: the attempt's deadline and lease restarted then.
    pub at: DateTime<Utc>,
    /// The attempt that made it.
    pub attempt: i32,
}

/// A progress report to write, fenced to its attempt like an outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub attempt: AttemptRef,
    pub percent: u8,
    pub message: String,
    /// The attempt's new lease from the write on: `timeout_seconds` plus the worker's
    /// lease grace.
    pub lease: std::time::Duration,
}

/// A progress report of a running task, as the live stream sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskProgress {
    pub task_id: Uuid,
    pub progress: Progress,
}

/// A history event with the task's type and name: what the live stream sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TaskEvent {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub event: HistoryEvent,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub task_type: String,
    pub name: String,
}

/// A validated request to enqueue one task. The HTTP layer validates ranges; the
/// schema's CHECK constraints hold the same limits as a last line of defence.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: Uuid,
    pub name: String,
    pub task_type: String,
    pub payload: Value,
    pub priority: i32,
    pub max_retries: i32,
    pub backoff_seconds: i32,
    pub timeout_seconds: i32,
    /// `None` means now (by the database's clock).
    pub run_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub queue: String,
    /// Tasks of a queue with the same key run at most `max_per_key` at a time.
    pub concurrency_key: Option<String>,
    pub max_snoozes: i32,
}

/// `max_snoozes` of a task that sets none.
pub const DEFAULT_MAX_SNOOZES: i32 = 25;

pub(crate) fn default_max_snoozes() -> i32 {
    DEFAULT_MAX_SNOOZES
}

impl NewTask {
    /// A task with the documented defaults (`max_retries` 3, `max_snoozes` 25,
    /// `backoff_seconds` 1, `timeout_seconds` 30, priority 0, runnable now) and a fresh
    /// UUID v7.
    pub fn new(task_type: impl Into<String>, payload: Value) -> Self {
        let task_type = task_type.into();
        Self {
            id: Uuid::now_v7(),
            name: task_type.clone(),
            task_type,
            payload,
            priority: 0,
            max_retries: 3,
            backoff_seconds: 1,
            timeout_seconds: 30,
            run_at: None,
            idempotency_key: None,
            queue: DEFAULT_QUEUE.to_owned(),
            concurrency_key: None,
            max_snoozes: DEFAULT_MAX_SNOOZES,
        }
    }
}

/// The outcome of `create_tasks` for one task: either inserted now, or an earlier
/// task with the same idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub task: Task,
    pub inserted: bool,
}

/// Names one attempt of one task: the fence of every outcome write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct AttemptRef {
    pub task_id: Uuid,
    pub attempt: i32,
}

/// Why a worker hands a claimed attempt back to the queue, without spending a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The worker is shutting down.
    Shutdown,
    /// A prefetched task waited in the worker's local queue for half its lease grace.
    NotStarted,
    /// A prefetched task's queue was paused before it started.
    Paused,
}

impl ReleaseReason {
    /// The `reason` label of `taskq_tasks_released_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::NotStarted => "not_started",
            Self::Paused => "paused",
        }
    }

    /// The `error_message` of the `task_requeued` event.
    pub fn note(self) -> &'static str {
        match self {
            Self::Shutdown => "released by a worker shutting down",
            Self::NotStarted => "released unstarted: it waited too long in a worker's local queue",
            Self::Paused => "released unstarted: its queue was paused",
        }
    }

    /// How the attempt stopped, when its task's cancel was requested: the release ends
    /// the task `cancelled` instead of requeuing it (see [`cancel_note`]).
    pub fn stopped(self) -> &'static str {
        match self {
            Self::Shutdown => "its worker shut down",
            Self::NotStarted | Self::Paused => "it never started",
        }
    }
}

/// A successful attempt to acknowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub attempt: AttemptRef,
    pub result: Option<Value>,
}

/// How an attempt ended without success; decides the history event written for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler returned an error or panicked (`task_failed`).
    Error,
    /// The executor stopped the handler at `timeout_seconds` (`timeout_occurred`).
    TimedOut,
    /// The lease ran out or the worker stopped heartbeating (`worker_lock_expired`).
    LockExpired,
    /// The handler answered "not yet" (`task_snoozed`): back to the queue after
    /// `retry_in`, without spending a retry.
    Snoozed,
    /// The executor stopped the attempt after its task's cancel was requested
    /// (`task_cancelled`); `error` says how.
    Cancelled,
}

impl FailureKind {
    pub fn event(self) -> EventType {
        match self {
            Self::Error => EventType::TaskFailed,
            Self::TimedOut => EventType::TimeoutOccurred,
            Self::LockExpired => EventType::WorkerLockExpired,
            Self::Snoozed => EventType::TaskSnoozed,
            Self::Cancelled => EventType::TaskCancelled,
        }
    }

    /// The failure's label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Error => "failed",
            Self::TimedOut => "timed_out",
            Self::LockExpired => "lock_expired",
            Self::Snoozed => "snoozed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An attempt that ended without success, with what happens next already decided.
///
/// Whatever the kind, the write ends a task whose cancel was requested `cancelled`
/// (one `task_cancelled` event whose note says how it stopped, [`Failure::stopped`]):
/// such a task is never retried nor snoozed. The decision is the database's, made in
/// the fenced write itself, so a request that lands while the outcome is on its way is
/// not missed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub attempt: AttemptRef,
    pub kind: FailureKind,
    /// The handler's error (`last_error`); for a snooze, the event's note; for a
    /// cancel, how the attempt stopped.
    pub error: String,
    /// `Some(delay)` schedules retry number `retry_count + 1` after `delay` (for a
    /// snooze: runs again after `delay`, no retry spent); `None` fails the task for
    /// good (`task_failed_final`).
    pub retry_in: Option<std::time::Duration>,
}

impl Failure {
    /// How the attempt stopped, for the note of a `task_cancelled` event.
    pub fn stopped(&self) -> &str {
        match self.kind {
            FailureKind::Error | FailureKind::Snoozed => "stopped by its handler",
            FailureKind::TimedOut => "stopped at its timeout",
            FailureKind::LockExpired => WORKER_LOST,
            FailureKind::Cancelled => &self.error,
        }
    }
}

/// How the Rescuer's `task_cancelled` note ends: the worker of a task whose cancel was
/// requested is gone (its lease ran out, or its heartbeats stopped).
pub const WORKER_LOST: &str = "its worker was lost";

/// Who cancels through `POST /api/tasks/{id}/cancel`, and through a bulk action.
pub const CANCELLED_BY_API: &str = "the API";
pub const CANCELLED_BY_BULK: &str = "a bulk action";

/// The note of a `task_cancelled` event: who cancelled the task, why if they said, and
/// how its running attempt stopped (`None`: it was queued). PostgreSQL's statements
/// write the same words with `taskq_cancel_note` (migrations/postgres).
pub fn cancel_note(by: &str, reason: Option<&str>, stopped: Option<&str>) -> String {
    let mut note = format!("cancelled by {by}");
    if let Some(reason) = reason {
        note.push_str(&format!(" (reason: {reason})"));
    }
    if let Some(stopped) = stopped {
        note.push_str("; ");
        note.push_str(stopped);
    }
    note
}

/// What a worker reports about itself on every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerInfo {
    pub worker_id: String,
    pub concurrency: i32,
    pub running: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The queues it serves with their executors, as `WORKER_QUEUES` has them:
    /// `default=5,emails=20`.
    pub queues: String,
}

impl WorkerInfo {
    /// The names of the queues it serves.
    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.split(',').filter_map(|entry| entry.split('=').next()).filter(|name| !name.is_empty())
    }
}

/// A task that a manual transition (cancel, retry) could not move.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Done(Box<Task>),
    NotFound,
    /// The task exists but its status does not allow the transition.
    Conflict(TaskStatus),
}

/// Filters and keyset cursor of `GET /api/tasks`, newest first; also the filter of a
/// bulk action. Every filter set must hold (`src/store/search.rs` says how each is
/// read and what bounds it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub status: Option<TaskStatus>,
    pub task_type: Option<String>,
    pub queue: Option<String>,
    /// Only tasks enqueued by this schedule.
    pub schedule: Option<String>,
    /// Only tasks older (smaller UUID v7) than this one.
    pub before: Option<Uuid>,
    pub limit: u32,
    /// Only ids within these bounds, both included: one id, or every id with a prefix.
    pub ids: Option<(Uuid, Uuid)>,
    /// Only tasks whose name contains this, ignoring ASCII case.
    pub name: Option<String>,
    /// Only tasks created at or after / before this instant.
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Only tasks that reached a terminal status at or after / before this instant.
    pub finished_after: Option<DateTime<Utc>>,
    pub finished_before: Option<DateTime<Utc>>,
    /// Only tasks whose payload's top-level `key` holds `value`, compared as text.
    pub payload: Option<PayloadMatch>,
}

/// A payload filter: `key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadMatch {
    pub key: String,
    pub value: String,
}

/// Tasks that reached a terminal failure or success in one minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MinuteThroughput {
    pub minute: DateTime<Utc>,
    pub succeeded: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Throughput {
    pub window_minutes: u32,
    pub per_minute: Vec<MinuteThroughput>,
}

/// The statistics snapshot of `/api/stats` and the `stats` SSE event. The first seven
/// fields are the original API's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    pub total_tasks: i64,
    pub queued_tasks: i64,
    pub running_tasks: i64,
    pub succeeded_tasks: i64,
    pub failed_tasks: i64,
    pub avg_retry_count: f64,
    pub tasks_with_retries: i64,
    pub cancelled_tasks: i64,
    /// Queued tasks whose `run_at` is still in the future (scheduled or backing off).
    pub scheduled_tasks: i64,
    /// How long the oldest runnable task has waited, `None` when nothing is runnable.
    pub oldest_runnable_age_seconds: Option<f64>,
    pub throughput: Throughput,
    pub live_workers: i64,
    pub workers: Vec<WorkerInfo>,
    /// Every known queue with its own figures, by name.
    pub queues: Vec<QueueStats>,
    /// Queued tasks in queues that no live worker serves: they wait until one does.
    pub unserved_tasks: i64,
    pub generated_at: DateTime<Utc>,
}

/// A queue's settings, stored in `queues` and changed through `PATCH /api/queues/{name}`,
/// pause and resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueSettings {
    pub name: String,
    /// At most this many of the queue's tasks run at once across all workers (tasks
    /// claimed into a worker's local queue count as running); `null` for no limit.
    pub max_running: Option<i32>,
    /// No task of a paused queue starts; running ones finish.
    pub paused: bool,
    /// At most `max` of the queue's tasks start per `per`, across all workers, spaced
    /// evenly; `null` for no limit.
    #[schema(value_type = Option<super::flow::RateLimitJson>)]
    pub rate_limit: Option<RateLimit>,
    /// How many of the queue's tasks with one `concurrency_key` may run at once (a
    /// type's own `max_per_key` overrides it); `null` means 1.
    pub max_per_key: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

/// A `queues` row as both backends read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct QueueRow {
    name: String,
    max_running: Option<i32>,
    paused: bool,
    rate_max: Option<i32>,
    rate_per_ms: Option<i64>,
    max_per_key: Option<i32>,
    updated_at: DateTime<Utc>,
}

/// The columns a [`QueueRow`] reads.
pub(crate) const QUEUE_COLUMNS: &str =
    "name, max_running, paused, rate_max, rate_per_ms, max_per_key, updated_at";

impl From<QueueRow> for QueueSettings {
    fn from(row: QueueRow) -> Self {
        Self {
            name: row.name,
            max_running: row.max_running,
            paused: row.paused,
            rate_limit: RateLimit::from_columns(row.rate_max, row.rate_per_ms),
            max_per_key: row.max_per_key,
            updated_at: row.updated_at,
        }
    }
}

/// A change to a queue's settings; `None` leaves a setting as it is, `Some(None)`
/// removes it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueChange {
    pub paused: Option<bool>,
    pub max_running: Option<Option<i32>>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub max_per_key: Option<Option<i32>>,
}

impl QueueChange {
    /// Whether the change touches the flow settings `flow_history` records.
    pub fn changes_flow(&self) -> bool {
        self.rate_limit.is_some() || self.max_per_key.is_some()
    }
}

/// A task type's flow settings, stored in `task_types` and changed through
/// `PATCH /api/task-types/{type}`. They apply in every queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TypeSettings {
    #[serde(rename = "type")]
    pub name: String,
    /// At most `max` tasks of the type start per `per`, whatever their queue.
    #[schema(value_type = Option<super::flow::RateLimitJson>)]
    pub rate_limit: Option<RateLimit>,
    /// Overrides the queue's `max_per_key` for tasks of this type.
    pub max_per_key: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

/// A `task_types` row as both backends read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TypeRow {
    name: String,
    rate_max: Option<i32>,
    rate_per_ms: Option<i64>,
    max_per_key: Option<i32>,
    updated_at: DateTime<Utc>,
}

/// The columns a [`TypeRow`] reads.
pub(crate) const TYPE_COLUMNS: &str = "name, rate_max, rate_per_ms, max_per_key, updated_at";

impl From<TypeRow> for TypeSettings {
    fn from(row: TypeRow) -> Self {
        Self {
            name: row.name,
            rate_limit: RateLimit::from_columns(row.rate_max, row.rate_per_ms),
            max_per_key: row.max_per_key,
            updated_at: row.updated_at,
        }
    }
}

/// A change to a task type's flow settings, as [`QueueChange`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TypeChange {
    pub rate_limit: Option<Option<RateLimit>>,
    pub max_per_key: Option<Option<i32>>,
}

/// What a claim took, and what it left queued for flow control.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    /// The claimed tasks in claim order. A rate-limited task's `started_at` may lie up
    /// to [`LOOKAHEAD`](super::flow::LOOKAHEAD) ahead: it must not start before.
    pub tasks: Vec<Task>,
    /// How long after the claim each task may start (zero for most), by the database's
    /// clock, parallel to `tasks`.
    pub start_in: Vec<std::time::Duration>,
    pub held: Held,
}

impl Claim {
    /// Tasks claimed from the head of the queue: each may start at once.
    pub fn unplanned(tasks: Vec<Task>) -> Self {
        Self { start_in: vec![std::time::Duration::ZERO; tasks.len()], tasks, held: Held::default() }
    }

    /// Tasks a planned claim took at `now`: each waits for its recorded start.
    pub fn planned(tasks: Vec<Task>, plan: &super::flow::Plan, now: DateTime<Utc>) -> Self {
        let start_in = tasks
            .iter()
            .map(|task| {
                task.started_at.map_or(Default::default(), |at| (at - now).to_std().unwrap_or_default())
            })
            .collect();
        Self { tasks, start_in, held: plan.held }
    }
}

/// One queue in the statistics snapshot and in `GET /api/queues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub name: String,
    pub max_running: Option<i32>,
    pub paused: bool,
    #[schema(value_type = Option<super::flow::RateLimitJson>)]
    pub rate_limit: Option<RateLimit>,
    pub max_per_key: Option<i32>,
    pub queued: i64,
    /// Running now, prefetched tasks included (what `max_running` caps).
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Queued tasks whose `run_at` is still in the future.
    pub scheduled: i64,
    pub oldest_runnable_age_seconds: Option<f64>,
    pub throughput: Throughput,
    /// Live workers serving the queue, by id.
    pub workers: Vec<String>,
}

/// A queue's shape: how many of its queued tasks wait for their `run_at`, and how long
/// its oldest runnable task has waited.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueShape {
    pub scheduled: i64,
    pub oldest_runnable_age_seconds: Option<f64>,
}

/// A wake-up hint for Dispatchers. Correctness never depends on hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Tasks may have become runnable in these queues; `None` for any queue.
    Runnable(Option<Vec<String>>),
    /// A queue's settings changed (paused, resumed, limit).
    Settings(String),
    /// A cancel of this running task was requested: its worker stops it (sent on a
    /// channel of its own on PostgreSQL, `CANCEL_CHANNEL`; the payload is the id).
    Cancel(Uuid),
}

impl Hint {
    /// Whether the Dispatcher of `queue` should look.
    pub fn concerns(&self, queue: &str) -> bool {
        match self {
            Self::Runnable(None) => true,
            Self::Runnable(Some(queues)) => queues.iter().any(|q| q == queue),
            Self::Settings(name) => name == queue,
            Self::Cancel(_) => false,
        }
    }

    /// The NOTIFY payload: `""` for any queue, `r:a,b` for runnable tasks in `a` and
    /// `b`, `s:a` for a settings change of `a`; the task's id for a cancel (on its own
    /// channel).
    pub fn to_payload(&self) -> String {
        match self {
            Self::Runnable(None) => String::new(),
            Self::Runnable(Some(queues)) => format!("r:{}", queues.join(",")),
            Self::Settings(name) => format!("s:{name}"),
            Self::Cancel(id) => id.to_string(),
        }
    }

    pub fn from_payload(payload: &str) -> Self {
        if let Some(name) = payload.strip_prefix("s:") {
            Self::Settings(name.to_owned())
        } else if let Some(queues) = payload.strip_prefix("r:") {
            Self::Runnable(Some(queues.split(',').map(str::to_owned).collect()))
        } else {
            Self::Runnable(None)
        }
    }
}

/// Per-status totals, as the counter tables hold them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatusCount {
    pub tasks: i64,
    pub retry_sum: i64,
    pub with_retries: i64,
}
