//! `drain`, `scale` and `memory`: how fast workers empty a full queue, whether more
//! worker processes add throughput, and what an idle worker costs in memory.
//!
//! A drain is timed from the worker's start (in process) or from the commit that makes
//! the tasks visible (worker processes already waiting) until the counters say every
//! task is terminal: it includes the first claim and the last acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};

use super::baseline::{Limit, Script};
use super::peer::{PEER, Peer};
use super::process::{TaskqProcess, wait_listening};
use super::{Bench, Unit};
use crate::actors::Worker;
use crate::config::WorkerConfig;
use crate::handlers::Registry;
use crate::store::{NewTask, Store, WAKEUP_CHANNEL};

/// The targets taskq sets itself.
const DRAIN_TARGET: f64 = 17_000.0;
const MEMORY_TARGET_MB: f64 = 40.0;
/// Raw-SQL drain: tasks per claim statement, and clients (one claiming while the
/// other completes, like a worker's Dispatcher and Completer).
const RAW_BATCH: u32 = 100;
const RAW_CLIENTS: u32 = 2;
/// How often the counters are read while waiting for a drain to finish: often enough
/// for a resolution under 1% of a drain, rarely enough that the reads (a scan of the
/// counter deltas, which grow by a row or two per statement) cost the database little.
const POLL: Duration = Duration::from_millis(20);

pub async fn drain(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.drain_tasks;
    for run in 1..=bench.args.runs {
        for &concurrency in &bench.args.concurrency.clone() {
            bench.step(format!("drain run {run}: {n} tasks, concurrency {concurrency}"));
            bench.db.reset().await?;
            let store = bench.store(10).await?;
            let started = Instant::now();
            enqueue_bulk(&*store, n, bench.args.batch).await?;
            let enqueue = f64::from(n) / started.elapsed().as_secs_f64();
            store.close().await;
            bench.report.taskq(
                "drain",
                &format!("enqueue tasks/s, {} per insert", bench.args.batch),
                Unit::PerSecond,
                None,
                enqueue,
            );

            let worker_store = bench.store(10).await?;
            let mut conn = bench.db.connect().await?;
            let config = WorkerConfig {
                worker_id: format!("bench-drain-{run}-{concurrency}"),
                concurrency: concurrency as usize,
                ..WorkerConfig::default()
            };
            let started = Instant::now();
            let worker =
                Worker::start(Arc::clone(&worker_store), Arc::new(Registry::with_builtins(1.0)), config);
            let done = wait_terminal(&mut conn, i64::from(n), drain_patience(n)).await;
            let elapsed = started.elapsed();
            worker.shutdown().await;
            worker_store.close().await;
            let _ = conn.close().await;
            done?;
            bench.report.taskq(
                "drain",
                &format!("completed tasks/s, concurrency {concurrency}"),
                Unit::PerSecond,
                Some(DRAIN_TARGET),
                f64::from(n) / elapsed.as_secs_f64(),
            );
        }
        if let Some(peer) = &bench.peer {
            bench.step(format!("drain run {run}: {PEER}"));
            let line = peer.run("w1", &["--n".into(), n.to_string()]).await?;
            // Beside taskq's default concurrency: the setting users run.
            let concurrency = WorkerConfig::default().concurrency;
            bench.report.peer(
                "drain",
                &format!("completed tasks/s, concurrency {concurrency}"),
                Unit::PerSecond,
                PEER,
                Peer::number(&line, "completed_per_s")?,
            );
        }
        if bench.pgbench.is_some() {
            bench.step(format!("drain run {run}: raw SQL"));
            let rate = raw_drain(bench, n, RAW_CLIENTS).await?;
            for &concurrency in &bench.args.concurrency.clone() {
                bench.report.raw(
                    "drain",
                    &format!("completed tasks/s, concurrency {concurrency}"),
                    Unit::PerSecond,
                    &format!("pgbench claim_complete.sql, {RAW_BATCH} per claim, {RAW_CLIENTS} clients"),
                    rate,
                );
            }
        }
        bench.progress.inc(1);
    }
    Ok(())
}

pub async fn scale(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.scale_tasks;
    let concurrency = bench.args.scale_concurrency;
    for run in 1..=bench.args.runs {
        for &processes in &bench.args.scale_workers.clone() {
            bench.step(format!("scale run {run}: {processes} worker processes × {concurrency}"));
            bench.db.reset().await?;
            let mut workers = Vec::new();
            for index in 0..processes {
                let env = [
                    ("WORKER_CONCURRENCY", concurrency.to_string()),
                    ("WORKER_ID", format!("bench-scale-{run}-{processes}-{index}")),
                ];
                workers.push(TaskqProcess::spawn(&bench.taskq_bin, "worker", &bench.db.url, &env).await?);
            }
            let mut conn = bench.db.connect().await?;
            wait_listening(&mut conn, i64::from(processes)).await?;

            // The tasks become visible, and the NOTIFY is sent, at this commit: every
            // worker is already waiting, so no process start-up is timed.
            let mut tx = conn.begin().await?;
            insert_with_history(&mut tx, n).await?;
            sqlx::query("SELECT pg_notify($1, '')").bind(WAKEUP_CHANNEL).execute(&mut *tx).await?;
            tx.commit().await?;
            let started = Instant::now();
            let done = wait_terminal(&mut conn, i64::from(n), drain_patience(n)).await;
            let elapsed = started.elapsed();
            for worker in workers {
                worker.stop().await;
            }
            let _ = conn.close().await;
            done?;
            bench.report.taskq(
                "scale",
                &scale_figure(processes, concurrency),
                Unit::PerSecond,
                None,
                f64::from(n) / elapsed.as_secs_f64(),
            );
        }
        if bench.pgbench.is_some() {
            for &processes in &bench.args.scale_workers.clone() {
                bench.step(format!("scale run {run}: raw SQL, {} clients", processes * RAW_CLIENTS));
                let rate = raw_drain(bench, n, processes * RAW_CLIENTS).await?;
                bench.report.raw(
                    "scale",
                    &scale_figure(processes, concurrency),
                    Unit::PerSecond,
                    &format!(
                        "pgbench claim_complete.sql, {RAW_BATCH} per claim, {RAW_CLIENTS} clients per process"
                    ),
                    rate,
                );
            }
        }
        bench.progress.inc(1);
    }
    // More processes must never lower the total: each count's target is the median
    // of the count before it.
    let names: Vec<String> = bench.args.scale_workers.iter().map(|&p| scale_figure(p, concurrency)).collect();
    for pair in names.windows(2) {
        let before = bench.report.figure("scale", &pair[0], Unit::PerSecond, None).median();
        bench.report.figure("scale", &pair[1], Unit::PerSecond, None).target = Some(before);
    }
    Ok(())
}

fn scale_figure(processes: u32, concurrency: u32) -> String {
    format!("completed tasks/s, {processes} process(es) × {concurrency}")
}

pub async fn memory(bench: &mut Bench) -> anyhow::Result<()> {
    let concurrency = bench.args.memory_concurrency;
    for run in 1..=bench.args.runs {
        bench.step(format!("memory run {run}: an idle worker process with {concurrency} executors"));
        bench.db.reset().await?;
        let env =
            [("WORKER_CONCURRENCY", concurrency.to_string()), ("WORKER_ID", format!("bench-memory-{run}"))];
        let worker = TaskqProcess::spawn(&bench.taskq_bin, "worker", &bench.db.url, &env).await?;
        let mut conn = bench.db.connect().await?;
        wait_listening(&mut conn, 1).await?;
        let _ = conn.close().await;
        // Past the first heartbeats and poll ticks, so every lazily built part exists.
        tokio::time::sleep(bench.args.memory_settle).await;
        let rss = worker.rss_bytes()?;
        worker.stop().await;
        bench.report.taskq(
            "memory",
            &format!("RSS of an idle worker, {concurrency} executors"),
            Unit::Megabytes,
            Some(MEMORY_TARGET_MB),
            rss as f64 / 1e6,
        );
        bench.progress.inc(1);
    }
    Ok(())
}

/// Enqueues `n` no-op tasks through the store, `batch` per call.
pub async fn enqueue_bulk(store: &dyn Store, n: u32, batch: u32) -> anyhow::Result<()> {
    enqueue_spread(store, n, batch, &[crate::store::DEFAULT_QUEUE]).await
}

/// Enqueues `n` no-op tasks through the store, `batch` per call, in `queues` in turn.
pub async fn enqueue_spread(store: &dyn Store, n: u32, batch: u32, queues: &[&str]) -> anyhow::Result<()> {
    let mut queue = queues.iter().cycle();
    let mut left = n;
    while left > 0 {
        let size = left.min(batch.max(1));
        let tasks: Vec<NewTask> = (0..size)
            .map(|_| {
                let mut task = NewTask::new("noop", serde_json::json!({}));
                task.queue = (*queue.next().expect("a queue")).to_owned();
                task
            })
            .collect();
        store.create_tasks(&tasks).await?;
        left -= size;
    }
    Ok(())
}

/// Inserts `n` no-op tasks with their `task_queued` events, as `create_tasks` writes
/// them, in the caller's transaction (so they appear together at its commit).
pub async fn insert_with_history(conn: &mut PgConnection, n: u32) -> anyhow::Result<()> {
    sqlx::query(
        r#"
        WITH inserted AS (
            INSERT INTO tasks (id, name, type, payload)
            SELECT id, 'bench', 'noop', '{}' FROM unnest($1::uuid[]) AS ids (id)
            RETURNING id, created_at
        )
        INSERT INTO task_history (task_id, event_type, status, retry_count, created_at)
        SELECT id, 'task_queued', 'queued', 0, created_at FROM inserted
        "#,
    )
    .bind(v7_ids(n))
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts `n` queued tasks without history, for the raw-SQL runs.
pub async fn insert_raw(conn: &mut PgConnection, n: u32) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO tasks (id, name, type, payload) SELECT id, 'bench', 'noop', '{}' FROM unnest($1::uuid[]) AS ids (id)",
    )
    .bind(v7_ids(n))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ids as taskq makes them (UUID v7, time-ordered): tasks inserted in one statement
/// share `run_at`, so the claim order is the id order, and random ids would scatter
/// every claim over the table's pages where taskq's own ids keep it in insertion order.
fn v7_ids(n: u32) -> Vec<uuid::Uuid> {
    (0..n).map(|_| uuid::Uuid::now_v7()).collect()
}

/// Tasks in a terminal status, from the counter tables (a few rows, not the tasks table).
async fn terminal(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(tasks), 0)::int8 FROM task_counts WHERE status IN ('succeeded', 'failed', 'cancelled')",
    )
    .fetch_one(conn)
    .await?)
}

/// Waits until `n` tasks are terminal.
pub(super) async fn wait_terminal(conn: &mut PgConnection, n: i64, patience: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let done = terminal(conn).await?;
        if done >= n {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < patience, "only {done} of {n} tasks finished in {patience:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Generous: a drain slower than 100 tasks/s is a failure, not a figure.
pub(super) fn drain_patience(n: u32) -> Duration {
    Duration::from_secs(30 + u64::from(n) / 100)
}

/// Raw SQL drains `n` tasks with `clients` pgbench clients; returns completed tasks/s.
async fn raw_drain(bench: &Bench, n: u32, clients: u32) -> anyhow::Result<f64> {
    let pgbench = bench.pgbench.as_ref().expect("checked by the caller");
    bench.db.reset().await?;
    let mut conn = bench.db.connect().await?;
    insert_raw(&mut conn, n).await?;
    // One extra round per client: a claim that found rows locked by another client
    // comes back short, and the extra round picks up what it left.
    let per_client = n.div_ceil(RAW_BATCH * clients) + 1;
    let run = pgbench
        .run(&bench.db.url, Script::ClaimComplete, RAW_BATCH, clients, Limit::Transactions(per_client))
        .await?;
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(done as f64 / run.elapsed.as_secs_f64())
}
