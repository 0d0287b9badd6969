//! The invariant checker: proof, from the database alone, that nothing was lost and
//! that every task's history tells the truth.
//!
//! [`check`] reads every task, its history and (when present) the test ledger in one
//! consistent snapshot, and [`verify`] holds them against the invariants below. The
//! fault-injection suite (`tests/faults`) runs it after every fault; an operator runs
//! the same code against a live database with `taskq check` (add `--settled` when
//! the fleet is idle, so that the invariants that only hold at rest are checked too).
//!
//! | # | invariant |
//! |---|---|
//! | 1 | every task acknowledged with 201 is stored |
//! | 2 | at rest (`settled`), nothing is `running` and nothing runnable is `queued` |
//! | 3 | each history starts with `task_queued`, follows the state machine, and its last event agrees with the task |
//! | 4 | `retry_count` equals the retries scheduled and never exceeds `max_retries`; a `failed` task used its retries or hit a fatal error |
//! | 5 | at most one `task_succeeded` per task, exactly one when `succeeded` |
//! | 6 | no two attempts of a task overlap, unless the earlier one's lease expired |
//! | 7 | no outcome from a worker after its lease on that attempt expired |
//! | 8 | after a terminal event only an explicit manual retry follows |
//! | 9 | every retry delay lies within the backoff bounds, and no retry starts early |
//! | 10 | every state change has its event from the same transaction (same timestamp, attempt count, worker) |
//! | 11 | every ledger entry of a test handler is explained by the history |
//! | 12 | no task of a queue starts while the queue is paused (after the pause was acknowledged) |
//! | 13 | no more than a queue's `max_running` of its attempts overlap when one of them starts |
//! | 14–16 | schedules: one task per tick, gaps only while no process led or while paused, nothing enqueued while paused (see `schedules`) |
//! | 17 | no two starts under a queue's or a type's rate limit closer than `per / max` (so no window of `per` holds more than `max`) |
//! | 18 | no more attempts of a queue with one concurrency key overlap than the key limit when one of them starts |
//! | 19 | no snooze spent a retry, and each says when its task runs again |
//! | 20 | no cancelled task ran again (no `task_started` after `task_cancelled`, unless a manual retry requeued it) |
//!
//! Each family of invariants has its module. `lifecycle` walks every history through
//! the state machine (2, 3, 5, 8, 10, 20) and hands each step to `retries` (4, 9, 19)
//! and `leases` (6, 7, 11) as it meets it; `queues` (12, 13), `schedules` (14–16) and `limits` (17, 18)
//! collect what they need page by page and judge it once every page is read. This
//! module reads the database and runs them.
//!
//! # The ledger
//!
//! A test handler that wants its side effects audited writes one row per run into
//! [`LEDGER_TABLE`] (see [`LEDGER_DDL_POSTGRES`] / [`LEDGER_DDL_SQLITE`]): the task,
//! the attempt (`TaskContext::attempt`), the worker, and when the run began and ended.
//! Double execution then becomes visible: every row must match the history's start of
//! that attempt by that worker, no attempt may run twice, and two runs of one task may
//! overlap in time only when the earlier one lost its lease (`worker_lock_expired`).
//! taskq itself never writes the ledger; `taskq-testbed` does.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use uuid::Uuid;

mod leases;
mod lifecycle;
mod limits;
mod queues;
mod retries;
mod schedules;
#[cfg(test)]
mod test_support;

use crate::backoff::RetryPolicy;
use crate::store::{EventType, HistoryEvent, Task};
use limits::FlowCheck;
pub use limits::{FlowEvent, FlowScope};
use queues::QueueCheck;
pub use queues::{QueueEvent, QueueEventKind};

/// The table a test handler records its runs in.
pub const LEDGER_TABLE: &str = "taskq_ledger";

/// The ledger on PostgreSQL.
pub const LEDGER_DDL_POSTGRES: &str = r#"
CREATE TABLE IF NOT EXISTS taskq_ledger (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     uuid        NOT NULL,
    attempt     integer     NOT NULL,
    worker_id   text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz
)"#;

/// The ledger on SQLite (times as RFC 3339 text, ids as UUID blobs, like the store).
pub const LEDGER_DDL_SQLITE: &str = r#"
CREATE TABLE IF NOT EXISTS taskq_ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     BLOB    NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT
)"#;

/// Tasks read per page: bounds the checker's memory on a large table.
const PAGE: i64 = 5_000;

/// What the checker needs to know beyond the database.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fleet's retry policy (`RETRY_MAX_BACKOFF`), for the backoff bounds.
    pub policy: RetryPolicy,
    /// The lease grace the workers add to `timeout_seconds` (10 s by default).
    pub lease_grace: Duration,
    /// The fleet is at rest: check invariant 2.
    pub settled: bool,
    /// How long a runnable task may wait at rest (a retry that just came due) and the
    /// tolerance of time comparisons between clocks.
    pub slack: Duration,
    /// Ids that `POST /api/tasks` acknowledged with 201 (invariant 1).
    pub acknowledged: Vec<Uuid>,
    /// Task types whose handler writes the ledger: a success of theirs must be there.
    pub ledger_types: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: RetryPolicy::default(),
            lease_grace: crate::config::WorkerConfig::default().lease_grace,
            settled: false,
            slack: Duration::from_secs(2),
            acknowledged: Vec::new(),
            ledger_types: vec!["ledger".into()],
        }
    }
}

/// The invariants, numbered as in the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    Stored = 1,
    Settled = 2,
    HistoryShape = 3,
    Retries = 4,
    SingleSuccess = 5,
    NoOverlap = 6,
    FencedOutcome = 7,
    TerminalIsFinal = 8,
    BackoffBounds = 9,
    SameTransaction = 10,
    LedgerExplained = 11,
    QueuePaused = 12,
    QueueLimit = 13,
    ScheduleTickOnce = 14,
    ScheduleGap = 15,
    SchedulePaused = 16,
    RateLimit = 17,
    KeyLimit = 18,
    SnoozeSpentNoRetry = 19,
    CancelledRanAgain = 20,
}

impl Invariant {
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub task_id: Option<Uuid>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {} ({:?})", self.invariant.number(), self.invariant)?;
        if let Some(id) = self.task_id {
            write!(f, " task {id}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// One run of a ledger-writing handler.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LedgerRun {
    pub task_id: Uuid,
    pub attempt: i32,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    /// `None` when the process died during the run.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub tasks: usize,
    pub events: usize,
    pub ledger_runs: usize,
    pub by_status: BTreeMap<String, usize>,
    /// Acknowledged ids that are not stored (counted also as violations).
    pub lost: usize,
    /// Attempts rescued after their worker vanished (`worker_lock_expired`).
    pub rescued_attempts: usize,
    /// Of those, attempts rescued while their lease still held: their worker had
    /// stopped heartbeating (dead, frozen, or cut off from the database).
    pub rescued_within_lease: usize,
    /// Ledger runs beyond the first per task: executions the history explains as retries.
    pub repeated_runs: usize,
    /// For each queue that ever had a limit: the most of its attempts that overlapped
    /// the start of one of them (whatever the limit was then).
    pub peak_running: BTreeMap<String, usize>,
    /// For each queue with keyed tasks: the most attempts with one key that overlapped
    /// the start of one of them.
    pub peak_per_key: BTreeMap<String, usize>,
    /// Tasks enqueued for a schedule's tick.
    pub scheduled_ticks: usize,
    /// Ticks with no task that fell while no process led or while their schedule was
    /// paused.
    pub missed_ticks: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self.by_status.iter().map(|(s, n)| format!("{s}={n}")).collect();
        let peaks: String =
            self.peak_running.iter().map(|(q, n)| format!(", peak running in {q}={n}")).collect();
        let ticks = if self.scheduled_ticks > 0 {
            format!(
                ", scheduled ticks={} (missed while no process led or paused={})",
                self.scheduled_ticks, self.missed_ticks
            )
        } else {
            String::new()
        };
        format!(
            "{} tasks ({}), {} events, {} ledger runs, lost={}, rescued attempts={} ({} within their lease), repeated runs={}{peaks}{ticks}, violations={}",
            self.tasks,
            statuses.join(" "),
            self.events,
            self.ledger_runs,
            self.lost,
            self.rescued_attempts,
            self.rescued_within_lease,
            self.repeated_runs,
            self.violations.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database URL {0:?}: expected postgres://, postgresql:// or sqlite://")]
    UnsupportedUrl(String),
}

/// Reads the database at `url` in one snapshot and verifies every invariant.
pub async fn check(url: &str, options: &Options) -> Result<Report, CheckError> {
    let mut source = Source::open(url).await?;
    let mut report = Report::default();
    let now = source.now().await?;
    let has_ledger = source.has_table(LEDGER_TABLE).await?;
    let mut queues = QueueCheck::new(source.queue_history().await?);
    let mut flow = FlowCheck::new(source.flow_history().await?);
    let mut schedules = schedules::ScheduleCheck::new(source.schedule_facts().await?);
    let mut acknowledged: Vec<Uuid> = options.acknowledged.clone();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    let mut found = vec![false; acknowledged.len()];

    let mut after: Option<Uuid> = None;
    loop {
        let tasks = source.tasks(after).await?;
        let (Some(first), Some(last)) = (tasks.first(), tasks.last()) else { break };
        let (first, last) = (first.id, last.id);
        let history = source.history(first, last).await?;
        let ledger = if has_ledger { source.ledger(first, last).await? } else { Vec::new() };
        for task in &tasks {
            if let Ok(index) = acknowledged.binary_search(&task.id) {
                found[index] = true;
            }
        }
        report.events += history.len();
        report.ledger_runs += ledger.len();
        verify_page(&tasks, history, ledger, options, now, (&mut queues, &mut flow), &mut report);
        schedules.observe(&tasks);
        after = Some(last);
        if (tasks.len() as i64) < PAGE {
            break;
        }
    }
    source.close().await;
    queues.sweep(&mut report);
    flow.sweep(&mut report);
    schedules.sweep(options, now, &mut report);

    for (id, _) in acknowledged.iter().zip(&found).filter(|(_, found)| !**found) {
        report.lost += 1;
        report.violations.push(Violation {
            invariant: Invariant::Stored,
            task_id: Some(*id),
            detail: "acknowledged with 201 but not stored".into(),
        });
    }
    Ok(report)
}

/// Verifies tasks, their events, ledger runs and the queues' (and task types') settings
/// history already in memory (a test's hand-made history, or a whole small database). `now` is the
/// database's time.
///
/// For invariants 12 and 13 an attempt runs from its `task_started` to the first later
/// event of the task that takes it out of `running` (`task_succeeded`, `task_failed`,
/// `timeout_occurred`, `worker_lock_expired`, `task_requeued`); an attempt that ends
/// at the very time another starts no longer counts then. A claimed task is `running`
/// from its claim, prefetched ones too, so they count. A queue's limit at a time is the
/// one its latest `limit_changed` before then set (none before the first).
pub fn verify(
    tasks: &[Task],
    history: Vec<HistoryEvent>,
    ledger: Vec<LedgerRun>,
    queue_history: Vec<QueueEvent>,
    flow_history: Vec<FlowEvent>,
    options: &Options,
    now: DateTime<Utc>,
) -> Report {
    let mut report = Report { events: history.len(), ledger_runs: ledger.len(), ..Report::default() };
    let mut queues = QueueCheck::new(queue_history);
    let mut flow = FlowCheck::new(flow_history);
    verify_page(tasks, history, ledger, options, now, (&mut queues, &mut flow), &mut report);
    queues.sweep(&mut report);
    flow.sweep(&mut report);
    let stored: std::collections::HashSet<Uuid> = tasks.iter().map(|t| t.id).collect();
    for id in options.acknowledged.iter().filter(|id| !stored.contains(id)) {
        report.lost += 1;
        report.violations.push(Violation {
            invariant: Invariant::Stored,
            task_id: Some(*id),
            detail: "acknowledged with 201 but not stored".into(),
        });
    }
    report
}

fn verify_page(
    tasks: &[Task],
    history: Vec<HistoryEvent>,
    ledger: Vec<LedgerRun>,
    options: &Options,
    now: DateTime<Utc>,
    (queues, flow): (&mut QueueCheck, &mut FlowCheck),
    report: &mut Report,
) {
    let mut events: HashMap<Uuid, Vec<HistoryEvent>> = HashMap::new();
    for event in history {
        events.entry(event.task_id).or_default().push(event);
    }
    let mut runs: HashMap<Uuid, Vec<LedgerRun>> = HashMap::new();
    for run in ledger {
        runs.entry(run.task_id).or_default().push(run);
    }
    for task in tasks {
        report.tasks += 1;
        *report.by_status.entry(task.status.as_str().to_owned()).or_default() += 1;
        let mut history = events.remove(&task.id).unwrap_or_default();
        history.sort_by_key(|e| e.id);
        let mut task_runs = runs.remove(&task.id).unwrap_or_default();
        task_runs.sort_by_key(|r| (r.attempt, r.started_at));
        let mut checker = TaskCheck { task, options, now, violations: &mut report.violations };
        let attempts = checker.history(&history);
        report.rescued_attempts +=
            attempts.iter().filter(|a| a.end == Some(EventType::WorkerLockExpired)).count();
        let lease = leases::lease(task, options);
        report.rescued_within_lease += attempts
            .iter()
            .filter(|a| a.end == Some(EventType::WorkerLockExpired))
            .filter(|a| a.ended_at.is_some_and(|ended| ended < a.started_at + lease))
            .count();
        report.repeated_runs += task_runs.len().saturating_sub(1);
        checker.ledger(&attempts, &task_runs);
        queues.attempts(task, &attempts, &mut report.violations);
        flow.attempts(task, &attempts);
    }
    // Ledger rows of tasks that do not exist (or belong to no task in this page, which
    // cannot happen: pages cover id ranges).
    for (task_id, runs) in runs {
        report.violations.push(Violation {
            invariant: Invariant::LedgerExplained,
            task_id: Some(task_id),
            detail: format!("{} ledger run(s) of a task that is not stored", runs.len()),
        });
    }
}

/// A time as microseconds since the epoch: how the sweeps of attempts keep it.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// One attempt as the history tells it.
#[derive(Debug, Clone)]
struct Attempt {
    number: i32,
    worker_id: Option<String>,
    started_at: DateTime<Utc>,
    /// The event that ended the attempt; `None` while it runs.
    end: Option<EventType>,
    ended_at: Option<DateTime<Utc>>,
}

/// The checks of one task and its history. Each family of invariants adds its own to
/// an `impl TaskCheck` block in its module.
struct TaskCheck<'a> {
    task: &'a Task,
    options: &'a Options,
    now: DateTime<Utc>,
    violations: &'a mut Vec<Violation>,
}

fn slack(options: &Options) -> chrono::Duration {
    chrono::Duration::from_std(options.slack).unwrap_or_default()
}

impl TaskCheck<'_> {
    fn violation(&mut self, invariant: Invariant, detail: String) {
        self.violations.push(Violation { invariant, task_id: Some(self.task.id), detail });
    }
}

/// The database a check reads, in one read-only snapshot.
enum Source {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Source {
    async fn open(url: &str) -> Result<Self, CheckError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            let tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
            Ok(Self::Postgres(tx))
        } else if url.starts_with("sqlite:") {
            use std::str::FromStr;
            let options =
                SqliteConnectOptions::from_str(url)?.read_only(true).busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
            // A read transaction in WAL mode sees one snapshot from its first read on.
            let tx = pool.begin().await?;
            Ok(Self::Sqlite(tx))
        } else {
            Err(CheckError::UnsupportedUrl(url.to_owned()))
        }
    }

    async fn now(&mut self) -> Result<DateTime<Utc>, CheckError> {
        match self {
            Self::Postgres(tx) => Ok(sqlx::query_scalar("SELECT now()").fetch_one(&mut **tx).await?),
            Self::Sqlite(tx) => {
                // Start the snapshot now, then take the clock taskq writes with.
                sqlx::query("SELECT count(*) FROM tasks").execute(&mut **tx).await?;
                Ok(Utc::now())
            }
        }
    }

    /// Whether the database has `table`: the ledger is optional, and a database from
    /// before named queues or schedules lacks their tables.
    async fn has_table(&mut self, table: &str) -> Result<bool, CheckError> {
        match self {
            Self::Postgres(tx) => Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&mut **tx)
                .await?),
            Self::Sqlite(tx) => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_one(&mut **tx)
                .await?;
                Ok(n > 0)
            }
        }
    }

    async fn tasks(&mut self, after: Option<Uuid>) -> Result<Vec<Task>, CheckError> {
        const SQL: &str = "SELECT * FROM tasks WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2";
        Ok(match self {
            Self::Postgres(tx) => {
                sqlx::query_as(&SQL.replace("$1 IS NULL", "$1::uuid IS NULL"))
                    .bind(after)
                    .bind(PAGE)
                    .fetch_all(&mut **tx)
                    .await?
            }
            Self::Sqlite(tx) => sqlx::query_as(SQL).bind(after).bind(PAGE).fetch_all(&mut **tx).await?,
        })
    }

    async fn history(&mut self, first: Uuid, last: Uuid) -> Result<Vec<HistoryEvent>, CheckError> {
        const SQL: &str = "SELECT h.*, t.queue FROM task_events AS h JOIN tasks AS t ON t.id = h.task_id \
                           WHERE h.task_id BETWEEN $1 AND $2 ORDER BY h.task_id, h.id";
        Ok(match self {
            Self::Postgres(tx) => sqlx::query_as(SQL).bind(first).bind(last).fetch_all(&mut **tx).await?,
            Self::Sqlite(tx) => sqlx::query_as(SQL).bind(first).bind(last).fetch_all(&mut **tx).await?,
        })
    }

    async fn ledger(&mut self, first: Uuid, last: Uuid) -> Result<Vec<LedgerRun>, CheckError> {
        const SQL: &str = "SELECT task_id, attempt, worker_id, started_at, finished_at FROM taskq_ledger \
                           WHERE task_id BETWEEN $1 AND $2 ORDER BY task_id, id";
        Ok(match self {
            Self::Postgres(tx) => sqlx::query_as(SQL).bind(first).bind(last).fetch_all(&mut **tx).await?,
            Self::Sqlite(tx) => sqlx::query_as(SQL).bind(first).bind(last).fetch_all(&mut **tx).await?,
        })
    }

    async fn close(self) {
        // Read-only: rolling back ends the snapshot.
        let _ = match self {
            Self::Postgres(tx) => tx.rollback().await,
            Self::Sqlite(tx) => tx.rollback().await,
        };
    }
}

/// `taskq check`: the command line of the checker.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The fleet is idle: also require that nothing is running and nothing runnable
    /// is left queued.
    #[arg(long)]
    pub settled: bool,
    /// A file of task ids (one per line) that clients were answered 201 for: each
    /// must be stored.
    #[arg(long, value_name = "FILE")]
    pub acknowledged: Option<std::path::PathBuf>,
    /// The lease grace the workers add to a task's timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_grace: Duration,
    /// Tolerance of time comparisons, and how long a due task may wait at rest.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub slack: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The most violations printed (all are counted).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Runs `taskq check` against the configured database; fails when any invariant is
/// broken, so scripts and CI can rely on the exit code.
pub async fn command(config: crate::config::Config, args: CheckArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let acknowledged = match &args.acknowledged {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| Uuid::parse_str(line).with_context(|| format!("{line:?} is not a task id")))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let options = Options {
        policy: config.worker.retry,
        lease_grace: args.lease_grace,
        settled: args.settled,
        slack: args.slack,
        acknowledged,
        ..Options::default()
    };
    let report = check(&config.database_url, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("taskq check: {}", report.summary());
        for violation in report.violations.iter().take(args.limit) {
            println!("  {violation}");
        }
        if report.violations.len() > args.limit {
            println!("  … and {} more", report.violations.len() - args.limit);
        }
    }
    anyhow::ensure!(report.passed(), "{} invariant violation(s)", report.violations.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::test_support::{Story, broken};
    use super::*;

    #[test]
    fn an_acknowledged_task_that_is_missing_is_lost() {
        let story = Story::new();
        let missing = Uuid::now_v7();
        let options = Options { acknowledged: vec![story.task.id, missing], ..Options::default() };
        let report = story.verify(vec![], &options);
        assert_eq!((report.lost, broken(&report)), (1, vec![1]));
    }
}
