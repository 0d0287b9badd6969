//! `latency`: how long a task waits for an idle worker. One task at a time is inserted
//! (its own transaction, as `POST /api/tasks` does), a fixed pause apart; the figure
//! is the time from the moment the insert's commit is acknowledged to the moment the
//! handler starts running, measured on one clock in one process.
//!
//! The path measured: the commit's NOTIFY reaches the Dispatcher's listener, the
//! Dispatcher claims (one statement and its commit), an Executor starts the handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::Connection as _;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::baseline::{Limit, Script};
use super::drain::insert_raw;
use super::peer::{PEER, Peer};
use super::process::wait_listening;
use super::{Bench, Unit, percentile};
use crate::actors::Worker;
use crate::config::WorkerConfig;
use crate::handlers::{Handler, HandlerResult, Registry, TaskContext};
use crate::store::NewTask;

/// The targets taskq sets itself, in milliseconds.
const P50_TARGET: f64 = 2.0;
const P99_TARGET: f64 = 5.0;
/// The type of the probe tasks.
const PROBE: &str = "bench_probe";

/// Reports when and which task it started, and succeeds.
struct Probe(mpsc::UnboundedSender<(Uuid, Instant)>);

#[async_trait]
impl Handler for Probe {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        let _ = self.0.send((task.id, Instant::now()));
        Ok(None)
    }
}

pub async fn latency(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.latency_tasks;
    let interval = bench.args.latency_interval;
    let raw_what = "pgbench claim.sql, 1 task per claim, 1 client: one durable claim";
    for run in 1..=bench.args.runs {
        bench.step(format!("latency run {run}: {n} tasks, {interval:?} apart"));
        bench.db.reset().await?;
        let (started_tx, mut started_rx) = mpsc::unbounded_channel();
        let mut registry = Registry::with_builtins(1.0);
        registry.register(PROBE, Probe(started_tx));
        let worker_store = bench.store(10).await?;
        let worker = Worker::start(
            Arc::clone(&worker_store),
            Arc::new(registry),
            WorkerConfig { worker_id: format!("bench-latency-{run}"), ..WorkerConfig::default() },
        );
        let mut conn = bench.db.connect().await?;
        wait_listening(&mut conn, 1).await?;
        let _ = conn.close().await;

        // The producer: a store of its own, as an API server would have.
        let producer = bench.store(2).await?;
        let mut committed = HashMap::with_capacity(n as usize);
        for _ in 0..n {
            let task = NewTask::new(PROBE, serde_json::json!({}));
            producer.create_tasks(std::slice::from_ref(&task)).await?;
            committed.insert(task.id, Instant::now());
            tokio::time::sleep(interval).await;
        }
        let mut waits = Vec::with_capacity(n as usize);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while waits.len() < committed.len() {
            let Ok(Some((id, started))) = tokio::time::timeout_at(deadline, started_rx.recv()).await else {
                anyhow::bail!("only {} of {n} probe tasks started", waits.len());
            };
            if let Some(at) = committed.get(&id) {
                // Signed: a handler that started before the client saw the commit counts
                // as a negative wait rather than being hidden.
                let wait = if started >= *at {
                    started.duration_since(*at).as_secs_f64()
                } else {
                    -at.duration_since(started).as_secs_f64()
                };
                waits.push(wait * 1000.0);
            }
        }
        worker.shutdown().await;
        worker_store.close().await;
        producer.close().await;

        let waits = super::sorted(waits);
        let report = &mut bench.report;
        report.taskq(
            "latency",
            "commit → handler start, p50",
            Unit::Millis,
            Some(P50_TARGET),
            percentile(&waits, 50.0),
        );
        report.taskq(
            "latency",
            "commit → handler start, p99",
            Unit::Millis,
            Some(P99_TARGET),
            percentile(&waits, 99.0),
        );
        report.taskq("latency", "commit → handler start, max", Unit::Millis, None, percentile(&waits, 100.0));

        if let Some(peer) = &bench.peer {
            bench.step(format!("latency run {run}: {PEER}"));
            let args = ["--n".into(), n.to_string(), "--gap-ms".into(), interval.as_millis().to_string()];
            let line = peer.run("w2", &args).await?;
            for (figure, key) in [("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")] {
                let name = format!("commit → handler start, {figure}");
                bench.report.peer("latency", &name, Unit::Millis, PEER, Peer::number(&line, key)?);
            }
        }
        if let Some(pgbench) = &bench.pgbench {
            bench.step(format!("latency run {run}: raw SQL"));
            bench.db.reset().await?;
            let mut conn = bench.db.connect().await?;
            insert_raw(&mut conn, n).await?;
            let _ = conn.close().await;
            let raw = pgbench.run(&bench.db.url, Script::Claim, 1, 1, Limit::Transactions(n)).await?;
            let report = &mut bench.report;
            let lat = &raw.latencies_ms;
            report.raw(
                "latency",
                "commit → handler start, p50",
                Unit::Millis,
                raw_what,
                percentile(lat, 50.0),
            );
            report.raw(
                "latency",
                "commit → handler start, p99",
                Unit::Millis,
                raw_what,
                percentile(lat, 99.0),
            );
            report.raw(
                "latency",
                "commit → handler start, max",
                Unit::Millis,
                raw_what,
                percentile(lat, 100.0),
            );
        }
        bench.progress.inc(1);
    }
    Ok(())
}
