//! `taskq-testbed`: the real taskq process (the same [`Application`], configuration
//! and roles as `taskq`) with extra task handlers that the fault-injection suite
//! (`tests/faults`, `scripts/faults.sh`) needs and production must never have:
//!
//! | type | what a run does |
//! |---|---|
//! | `ledger` | writes one row per run into `taskq_ledger` (start, then end), sleeping `{"ms": n}` between: makes double execution visible to `taskq check` |
//! | `panic` | panics |
//! | `abort` | aborts the whole process, as a segfault or an OOM kill would |
//! | `hang` | awaits forever (until the executor's timeout stops it) |
//! | `block` | blocks its thread for `{"ms": n}` (default 5 s), ignoring the timeout |
//!
//! It exists as a binary of its own, rather than handlers compiled into `taskq`, so
//! the faults are run against real processes that can be killed, frozen and
//! restarted by pid, while the shipped binary keeps only the built-in handlers. The
//! ledger lives in the queue's own database, so a check reads both in one snapshot.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use taskq::app::Application;
use taskq::check::{LEDGER_DDL_POSTGRES, LEDGER_DDL_SQLITE};
use taskq::config::Config;
use taskq::handlers::{Handler, HandlerError, HandlerResult, Registry, TaskContext};

/// How long the ledger table's creation is retried while the database is starting.
const LEDGER_PATIENCE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("taskq-testbed: {error}");
            return ExitCode::from(2);
        }
    };
    taskq::telemetry::init(config.log_format);
    match actix_web::rt::System::new().block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "taskq-testbed failed");
            eprintln!("taskq-testbed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut registry = Registry::with_builtins(config.demo_time_scale);
    registry.register("ledger", Ledger::open(&config.database_url).await?);
    registry.register("panic", Panic);
    registry.register("abort", Abort);
    registry.register("hang", Hang);
    registry.register("block", Block);
    Application::build(config, registry).await?.run_until_stopped().await
}

/// The ledger's connection: its own small pool, apart from the store's.
#[derive(Clone)]
enum LedgerDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Records each run in `taskq_ledger`: one row when it begins (the side effect) and
/// its end when it finishes.
struct Ledger {
    db: LedgerDb,
}

impl Ledger {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .busy_timeout(Duration::from_secs(5));
            LedgerDb::Sqlite(SqlitePoolOptions::new().max_connections(2).connect_with(options).await?)
        } else {
            LedgerDb::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy(url)?,
            )
        };
        // Several processes may start at once, and the database may still be starting.
        let deadline = tokio::time::Instant::now() + LEDGER_PATIENCE;
        loop {
            let created = match &db {
                LedgerDb::Postgres(pool) => sqlx::query(LEDGER_DDL_POSTGRES).execute(pool).await.map(drop),
                LedgerDb::Sqlite(pool) => sqlx::query(LEDGER_DDL_SQLITE).execute(pool).await.map(drop),
            };
            match created {
                Ok(()) => return Ok(Self { db }),
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %error, "cannot create the ledger yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error).context("cannot create the ledger table"),
            }
        }
    }

    async fn begin(&self, task: &TaskContext) -> Result<i64, sqlx::Error> {
        const SQL: &str = "INSERT INTO taskq_ledger (task_id, attempt, worker_id, started_at) \
                           VALUES ($1, $2, $3, $4) RETURNING id";
        let worker = task.worker_id.to_string();
        match &self.db {
            LedgerDb::Postgres(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(task.id)
                    .bind(task.attempt)
                    .bind(worker)
                    .bind(Utc::now())
                    .fetch_one(pool)
                    .await
            }
            LedgerDb::Sqlite(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(task.id)
                    .bind(task.attempt)
                    .bind(worker)
                    .bind(Utc::now())
                    .fetch_one(pool)
                    .await
            }
        }
    }

    async fn finish(&self, row: i64) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE taskq_ledger SET finished_at = $1 WHERE id = $2";
        match &self.db {
            LedgerDb::Postgres(pool) => {
                sqlx::query(SQL).bind(Utc::now()).bind(row).execute(pool).await.map(drop)
            }
            LedgerDb::Sqlite(pool) => {
                sqlx::query(SQL).bind(Utc::now()).bind(row).execute(pool).await.map(drop)
            }
        }
    }
}

fn millis(payload: &Value, default: u64) -> u64 {
    payload.get("ms").and_then(Value::as_u64).unwrap_or(default)
}

#[async_trait]
impl Handler for Ledger {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        match payload.get("ms") {
            None | Some(Value::Null) => Ok(()),
            Some(ms) if ms.as_u64().is_some_and(|ms| ms <= 3_600_000) => Ok(()),
            Some(_) => Err("payload.ms must be a whole number of milliseconds up to an hour".into()),
        }
    }

    async fn run(&self, task: TaskContext) -> HandlerResult {
        // No row, no side effect: the attempt fails and is retried like any other.
        let row = self.begin(&task).await.map_err(|e| HandlerError::Retryable(format!("ledger: {e}")))?;
        tokio::time::sleep(Duration::from_millis(millis(&task.payload, 0))).await;
        // The run happened whatever this write does; a run without its end counts as
        // lasting until its attempt ended.
        for delay in [100, 400, 1600] {
            match self.finish(row).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "ledger: cannot record the end of a run");
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
        }
        Ok(Some(json!({ "ledger_row": row })))
    }
}

/// Panics in every run.
struct Panic;

#[async_trait]
impl Handler for Panic {
    async fn run(&self, _: TaskContext) -> HandlerResult {
        panic!("poison task: panic")
    }
}

/// Aborts the process in every run.
struct Abort;

#[async_trait]
impl Handler for Abort {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        eprintln!("taskq-testbed: poison task {} aborts the process (attempt {})", task.id, task.attempt);
        std::process::abort()
    }
}

/// Never finishes (asynchronously: the executor's timeout can stop it).
struct Hang;

#[async_trait]
impl Handler for Hang {
    async fn run(&self, _: TaskContext) -> HandlerResult {
        std::future::pending().await
    }
}

/// Blocks its thread for `{"ms": n}`: the timeout cannot stop it early.
struct Block;

#[async_trait]
impl Handler for Block {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(millis(&task.payload, 5_000)));
        Err(HandlerError::Retryable("blocked its thread".into()))
    }
}
