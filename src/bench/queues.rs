//! `queues`: a drain spread over four named queues served by one worker, with a global
//! limit on one of them. It prices what named queues add to the plain `drain`: a
//! Dispatcher and a claim per queue, and the exclusive claim gate of a limited queue
//! (its claims take turns, and count its running tasks before each).

use std::sync::Arc;
use std::time::Instant;

use super::drain::{drain_patience, enqueue_spread, wait_terminal};
use super::{Bench, Unit};
use crate::actors::Worker;
use crate::config::{QueueSpec, WorkerConfig};
use crate::handlers::Registry;
use crate::store::QueueChange;

/// The queues, each served by `--concurrency`'s first value of executors.
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "q3"];
/// The limited queue and its `max_running`: below what its executors plus their
/// prefetch would hold, so the limit binds.
const LIMITED: (&str, i32) = ("q3", 10);

pub async fn queues(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.drain_tasks;
    let concurrency = bench.args.concurrency.first().copied().unwrap_or(5) as usize;
    for run in 1..=bench.args.runs {
        bench.step(format!("queues run {run}: {n} tasks over {} queues", QUEUES.len()));
        bench.db.reset().await?;
        let store = bench.store(10).await?;
        enqueue_spread(&*store, n, bench.args.batch, &QUEUES).await?;
        store
            .change_queue(LIMITED.0, QueueChange { max_running: Some(Some(LIMITED.1)), ..Default::default() })
            .await?;
        store.close().await;

        let worker_store = bench.store(10).await?;
        let mut conn = bench.db.connect().await?;
        let config = WorkerConfig {
            worker_id: format!("bench-queues-{run}"),
            queues: QUEUES.iter().map(|name| QueueSpec { name: (*name).to_owned(), concurrency }).collect(),
            ..WorkerConfig::default()
        };
        let started = Instant::now();
        let worker = Worker::start(Arc::clone(&worker_store), Arc::new(Registry::with_builtins(1.0)), config);
        let done = wait_terminal(&mut conn, i64::from(n), drain_patience(n)).await;
        let elapsed = started.elapsed();
        worker.shutdown().await;
        worker_store.close().await;
        let _ = sqlx::Connection::close(conn).await;
        done?;
        bench.report.taskq(
            "queues",
            &format!(
                "completed tasks/s, {} queues × {concurrency} executors, {} limited to {}",
                QUEUES.len(),
                LIMITED.0,
                LIMITED.1
            ),
            Unit::PerSecond,
            None,
            f64::from(n) / elapsed.as_secs_f64(),
        );
        bench.progress.inc(1);
    }
    Ok(())
}
