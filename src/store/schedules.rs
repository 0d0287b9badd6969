//! Periodic tasks in the store: schedules, the scheduler's leadership, and the ticks
//! it enqueues. Both backends implement [`ScheduleStore`]; the Scheduler actor and the
//! schedule API reach it through [`Store`](super::Store).
//!
//! Leadership is a lease in the `leaders` table, identified by its holder and the
//! database time it was won (`elected_at`): renewing is scoped to that term, so a
//! holder whose lease ran out and was taken over can never renew the new term, and
//! every write of the leader is fenced on a term that still holds by the database's
//! clock. A tick's task has an id derived from `(schedule, tick_at)` ([`tick_task_id`]),
//! so even two processes that both believe they lead cannot enqueue one tick twice:
//! the primary key refuses the second.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{NewTask, Result, TaskStatus};

/// Binds a schedule's settings as `$1`–`$8` of a statement on `schedules`, in this
/// order on both backends: name, cron, timezone, task, catch_up, paused, next_tick
/// (`$7`, the expression `$next_tick`), from_file.
macro_rules! bind_spec {
    ($query:expr, $spec:expr, $next_tick:expr) => {{
        let spec = $spec;
        $query
            .bind(&spec.name)
            .bind(&spec.cron)
            .bind(&spec.timezone)
            .bind(sqlx::types::Json(&spec.task))
            .bind(spec.catch_up.as_str())
            .bind(spec.paused)
            .bind($next_tick)
            .bind(spec.from_file)
    }};
}
pub(crate) use bind_spec;

/// The name of the scheduler's leadership in `leaders`.
pub const SCHEDULER_LEADERSHIP: &str = "scheduler";

/// The id of the task of `schedule`'s tick at `tick`: a UUID v7 whose time is the
/// tick's (so tick tasks sort by tick among the others) and whose other 74 bits come
/// from a hash of the schedule and the tick. Every process, every version of taskq,
/// computes the same id for one tick: the hash is FNV-1a, fixed here, not the standard
/// library's (whose algorithm may change between releases).
pub fn tick_task_id(schedule: &str, tick: DateTime<Utc>) -> Uuid {
    let fnv = |offset: u64| {
        let bytes = schedule.bytes().chain([0]).chain(tick.timestamp_micros().to_le_bytes());
        bytes.fold(offset, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    let (high, low) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    let mut bits = [0u8; 10];
    bits[..8].copy_from_slice(&high.to_le_bytes());
    bits[8..].copy_from_slice(&low.to_le_bytes()[..2]);
    let millis = u64::try_from(tick.timestamp_millis()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// Checks a schedule name: 1 to 64 characters of `[a-z0-9_.-]`, as the schema requires.
pub fn check_schedule_name(name: &str) -> Result<(), String> {
    super::check_queue_name(name).map_err(|_| {
        format!("schedule name {name:?} must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-'")
    })
}

/// What becomes of the ticks a schedule missed while no process led or while it was
/// paused (see `schedule::plan`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Drop them.
    Skip,
    /// One task, for the most recent of them.
    #[default]
    Latest,
    /// One task each, for the most recent 100 at most.
    All,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
}

impl TryFrom<String> for CatchUp {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "skip" => Ok(Self::Skip),
            "latest" => Ok(Self::Latest),
            "all" => Ok(Self::All),
            other => Err(format!("catch_up {other:?} must be one of skip, latest, all")),
        }
    }
}

/// The task each tick enqueues, with every default already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskTemplate {
    pub name: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub queue: String,
    pub priority: i32,
    pub max_retries: i32,
    pub backoff_seconds: i32,
    pub timeout_seconds: i32,
    /// Templates stored before snoozes existed have none: they get the default.
    #[serde(default = "super::model::default_max_snoozes")]
    pub max_snoozes: i32,
}

impl TaskTemplate {
    /// The template of a validated task request (its `run_at` and idempotency key,
    /// which a template cannot have, are not kept).
    pub fn of(task: &NewTask) -> Self {
        Self {
            name: task.name.clone(),
            task_type: task.task_type.clone(),
            payload: task.payload.clone(),
            queue: task.queue.clone(),
            priority: task.priority,
            max_retries: task.max_retries,
            backoff_seconds: task.backoff_seconds,
            timeout_seconds: task.timeout_seconds,
            max_snoozes: task.max_snoozes,
        }
    }

    /// A new task from the template, runnable now, with a fresh id.
    pub fn instantiate(&self) -> NewTask {
        NewTask {
            name: self.name.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            max_retries: self.max_retries,
            backoff_seconds: self.backoff_seconds,
            timeout_seconds: self.timeout_seconds,
            max_snoozes: self.max_snoozes,
            queue: self.queue.clone(),
            ..NewTask::new(self.task_type.clone(), Value::Null)
        }
    }
}

/// A schedule's definition, validated (the cron expression parses in its zone, the
/// template's type is registered).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub task: TaskTemplate,
    pub catch_up: CatchUp,
    pub paused: bool,
    /// Declared in `taskq.toml`.
    pub from_file: bool,
}

/// A schedule as stored, with its last task's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Schedule {
    pub name: String,
    /// Five fields, an optional leading seconds field, or `@hourly`, `@daily`, ….
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    #[sqlx(json)]
    pub task: TaskTemplate,
    #[sqlx(try_from = "String")]
    pub catch_up: CatchUp,
    pub paused: bool,
    /// Bumped by every change of the definition, pause and resume.
    pub revision: i64,
    /// The next tick to enqueue (ticks of a paused schedule wait here for `catch_up`).
    pub next_tick: DateTime<Utc>,
    /// The latest tick enqueued.
    pub last_tick: Option<DateTime<Utc>>,
    /// The task of the latest tick or manual run.
    pub last_task_id: Option<Uuid>,
    pub last_task_status: Option<TaskStatus>,
    /// Declared in `taskq.toml`: the file's definition is applied again at every start.
    pub from_file: bool,
    /// When the schedule was last resumed; ticks before it fell in its pause.
    #[serde(skip)]
    pub resumed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One term of a leadership: who holds it, and the database time it was won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub leader_id: String,
    pub elected_at: DateTime<Utc>,
}

/// The current holder of the scheduler's leadership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Leader {
    pub leader_id: String,
    pub elected_at: DateTime<Utc>,
    /// The lease runs out then unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// What a candidate learns from one pass: that it leads (this term), the database's
/// time, and the schedules due.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub elected_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The earliest next tick after `now` among running schedules that are not due.
    pub next_due: Option<DateTime<Utc>>,
    /// Running schedules whose next tick has come, earliest first.
    pub due: Vec<Schedule>,
}

/// Moves a schedule on after a pass, if it is still as the pass read it (same
/// revision and next tick, not paused).
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub name: String,
    pub revision: i64,
    pub expected: DateTime<Utc>,
    pub next_tick: DateTime<Utc>,
    pub last_tick: Option<DateTime<Utc>>,
    pub last_task_id: Option<Uuid>,
}

/// A task enqueued for a schedule: for a tick (its id is then
/// [`tick_task_id`]), or (`tick_at: None`) a manual run.
#[derive(Debug, Clone, PartialEq)]
pub struct TickTask {
    pub schedule: String,
    pub tick_at: Option<DateTime<Utc>>,
    pub task: NewTask,
}

/// Schedules and the scheduler's leadership. Times are the database's (PostgreSQL's
/// `now()`); on SQLite, one node, they are taskq's clock.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// The database's time.
    async fn clock(&self) -> Result<DateTime<Utc>>;
    async fn schedules(&self) -> Result<Vec<Schedule>>;
    async fn schedule(&self, name: &str) -> Result<Option<Schedule>>;
    /// Inserts a schedule whose first tick is `next_tick`; `None` when the name is taken.
    async fn create_schedule(
        &self,
        spec: &ScheduleSpec,
        next_tick: DateTime<Utc>,
    ) -> Result<Option<Schedule>>;
    /// Replaces the definition of a schedule still at `revision` (`None` otherwise, or
    /// when it is gone); `next_tick` restarts its ticks (a new expression or zone).
    async fn update_schedule(
        &self,
        spec: &ScheduleSpec,
        revision: i64,
        next_tick: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>>;
    /// Pauses or resumes; `None` for an unknown schedule.
    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<Option<Schedule>>;
    /// Whether the schedule existed.
    async fn delete_schedule(&self, name: &str) -> Result<bool>;

    /// Wins or renews the scheduler's leadership for `candidate` (`term`: the term it
    /// holds, if it believes it holds one) with a lease of `ttl`, and, when it leads,
    /// reads up to `limit` due schedules: one statement on PostgreSQL. `None` when
    /// another process leads.
    async fn scheduler_pass(
        &self,
        candidate: &str,
        term: Option<DateTime<Utc>>,
        ttl: Duration,
        limit: u32,
    ) -> Result<Option<Pass>>;
    /// Applies `advances` and inserts the tasks of the schedules they moved on (with
    /// their `task_queued` events), in one transaction fenced on `term` (that it still
    /// holds); a manual run passes no term. Returns each advanced schedule with the
    /// tasks it got.
    async fn enqueue_ticks(
        &self,
        term: Option<&Term>,
        advances: &[Advance],
        ticks: &[TickTask],
    ) -> Result<Vec<(String, i64)>>;
    /// Gives the term up at once (at shutdown), if it is still held.
    async fn resign(&self, term: &Term) -> Result<()>;
    /// The scheduler's leader while its lease holds.
    async fn leader(&self) -> Result<Option<Leader>>;
}

/// The history events a definition change writes, from `before` (`None`: created).
pub(super) fn schedule_events(before: Option<&Schedule>, after: &ScheduleSpec) -> Vec<&'static str> {
    let mut events = Vec::new();
    match before {
        None => events.push("created"),
        Some(b) => {
            if (&b.cron, &b.timezone, &b.task, b.catch_up)
                != (&after.cron, &after.timezone, &after.task, after.catch_up)
            {
                events.push("updated");
            }
        }
    }
    if after.paused != before.is_some_and(|b| b.paused) {
        events.push(if after.paused { "paused" } else { "resumed" });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_has_one_task_id_for_every_process_and_a_different_one_for_every_tick() {
        let tick = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
        let id = tick_task_id("nightly", tick);
        assert_eq!(id, tick_task_id("nightly", tick));
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_timestamp().map(|t| t.to_unix().0), Some(1_800_000_000));
        assert_ne!(id, tick_task_id("nightly", tick + chrono::Duration::seconds(1)));
        assert_ne!(id, tick_task_id("nightly2", tick));
        // Stable across releases: a rolling upgrade must not enqueue a tick twice.
        assert_eq!(id.to_string(), tick_task_id("nightly", tick).to_string());
    }
}
