//! `enqueue`: inserting tasks through the store, as the API and embedding producers
//! do. Single-task inserts (one transaction each, with the history row and the NOTIFY)
//! from one connection and from many, and batches of `--batch` tasks per statement.
//!
//! A single insert from one connection waits for its commit to be flushed (fsync)
//! before the next begins, so that case measures the WAL flush more than taskq; many
//! connections share flushes (group commit), and batches pay one flush per batch.

use std::time::Instant;

use super::Bench;
use super::Unit;
use super::baseline::{Limit, Script};
use super::drain::enqueue_bulk;
use super::peer::{PEER, Peer};
use crate::store::NewTask;

/// The targets taskq sets itself.
const SINGLE_TARGET: f64 = 2_000.0;
const BATCH_TARGET: f64 = 50_000.0;

pub async fn enqueue(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.enqueue_tasks;
    let connections = bench.args.enqueue_connections.max(1);
    let batch = bench.args.batch.max(1);
    let batch_total = bench.args.enqueue_batch_tasks;
    let single = "single-task inserts/s, 1 connection";
    let many = format!("single-task inserts/s, {connections} connections");
    let batched = format!("tasks/s in batches of {batch}");
    for run in 1..=bench.args.runs {
        bench.step(format!("enqueue run {run}: {n} single inserts, 1 connection"));
        bench.db.reset().await?;
        let store = bench.store(1).await?;
        let started = Instant::now();
        for _ in 0..n {
            store.create_tasks(&[NewTask::new("noop", serde_json::json!({}))]).await?;
        }
        let rate = f64::from(n) / started.elapsed().as_secs_f64();
        store.close().await;
        bench.report.taskq("enqueue", single, Unit::PerSecond, Some(SINGLE_TARGET), rate);
        if let Some(peer) = &bench.peer {
            bench.step(format!("enqueue run {run}: {PEER}, {n} single inserts"));
            let line = peer.run("w3", &["--n".into(), n.to_string()]).await?;
            bench.report.peer("enqueue", single, Unit::PerSecond, PEER, Peer::number(&line, "jobs_per_s")?);
        }

        bench.step(format!("enqueue run {run}: {n} single inserts, {connections} connections"));
        bench.db.reset().await?;
        let store = bench.store(connections).await?;
        let per_connection = n.div_ceil(connections);
        let started = Instant::now();
        let producers = (0..connections).map(|_| {
            let store = std::sync::Arc::clone(&store);
            async move {
                for _ in 0..per_connection {
                    store.create_tasks(&[NewTask::new("noop", serde_json::json!({}))]).await?;
                }
                anyhow::Ok(())
            }
        });
        for produced in futures_util::future::join_all(producers).await {
            produced?;
        }
        let rate = f64::from(per_connection * connections) / started.elapsed().as_secs_f64();
        store.close().await;
        bench.report.taskq("enqueue", &many, Unit::PerSecond, None, rate);

        bench.step(format!("enqueue run {run}: {batch_total} tasks in batches of {batch}"));
        bench.db.reset().await?;
        let store = bench.store(1).await?;
        let started = Instant::now();
        enqueue_bulk(&*store, batch_total, batch).await?;
        let rate = f64::from(batch_total) / started.elapsed().as_secs_f64();
        store.close().await;
        bench.report.taskq("enqueue", &batched, Unit::PerSecond, Some(BATCH_TARGET), rate);

        if let Some(pgbench) = &bench.pgbench {
            let url = bench.db.url.clone();
            bench.step(format!("enqueue run {run}: raw SQL"));
            bench.db.reset().await?;
            let raw = pgbench.run(&url, Script::InsertOne, 1, 1, Limit::Transactions(n)).await?;
            let what = "pgbench insert_one.sql, 1 client";
            bench.report.raw(
                "enqueue",
                single,
                Unit::PerSecond,
                what,
                f64::from(n) / raw.elapsed.as_secs_f64(),
            );

            bench.db.reset().await?;
            let raw = pgbench
                .run(&url, Script::InsertOne, 1, connections, Limit::Transactions(per_connection))
                .await?;
            let what = format!("pgbench insert_one.sql, {connections} clients");
            let rate = f64::from(per_connection * connections) / raw.elapsed.as_secs_f64();
            bench.report.raw("enqueue", &many, Unit::PerSecond, &what, rate);

            bench.db.reset().await?;
            let statements = batch_total.div_ceil(batch);
            let raw =
                pgbench.run(&url, Script::InsertBatch, batch, 1, Limit::Transactions(statements)).await?;
            let what = format!("pgbench insert_batch.sql, {batch} per statement, 1 client");
            let rate = f64::from(statements * batch) / raw.elapsed.as_secs_f64();
            bench.report.raw("enqueue", &batched, Unit::PerSecond, &what, rate);
        }
        bench.progress.inc(1);
    }
    Ok(())
}
