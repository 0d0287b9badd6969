//! `ratelimit`: a backlog drained under a queue's rate limit by several worker
//! processes. It checks that the limit holds the pace it promises, neither faster (no
//! two recorded starts closer than the limit's spacing) nor slower (the backlog drains
//! in `tasks × per / max`), when every process claims from the same bucket.
//!
//! The queue gets its limit (`PATCH /api/queues/{name}`'s `rate_limit`, through
//! `Store::change_queue`) and its tasks before any worker exists; then the worker
//! processes start together and the clock runs until every task is terminal. The
//! starts are read from the tasks afterwards: a planned claim records each task's
//! rate-limit slot as its `started_at` (src/store/flow.rs), the time its executor
//! waits for.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;

use super::drain::{enqueue_spread, wait_terminal};
use super::process::TaskqProcess;
use super::{Bench, Goal, Unit};
use crate::store::QueueChange;
use crate::store::flow::RateLimit;

/// The limited queue: a named one, so that no other scenario's `default` is limited.
const QUEUE: &str = "ratelimited";
/// How far the drain time and the rate may stray from what the limit promises.
const TOLERANCE: f64 = 0.10;

pub async fn ratelimit(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.ratelimit_tasks;
    let (processes, concurrency) = (bench.args.ratelimit_workers, bench.args.ratelimit_concurrency);
    let per = bench.args.ratelimit_per;
    anyhow::ensure!(
        (Duration::from_millis(1)..=crate::store::flow::RATE_PER_MAX).contains(&per),
        "--ratelimit-per must be from 1ms to 1 day"
    );
    let limit = RateLimit { max: bench.args.ratelimit_max as i32, per_ms: per.as_millis() as i64 };
    let step_ms = limit.step().num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    // The pace the limit promises: n starts, one every step, the last one's run ending
    // right away (no-op tasks).
    let promised = f64::from(n) * step_ms / 1000.0;
    let rate = f64::from(limit.max) * 1000.0 / limit.per_ms as f64;
    let case = format!(
        "{n} tasks, {} per {}, {processes} processes × {concurrency}",
        limit.max,
        humantime::format_duration(per)
    );
    let names = Names::new(&case);
    for run in 1..=bench.args.runs {
        bench.step(format!("ratelimit run {run}: {case}"));
        bench.db.reset().await?;
        let store = bench.store(10).await?;
        store
            .change_queue(QUEUE, QueueChange { rate_limit: Some(Some(limit)), ..Default::default() })
            .await?;
        enqueue_spread(&*store, n, bench.args.batch, &[QUEUE]).await?;

        let mut conn = bench.db.connect().await?;
        let started = Instant::now();
        let workers = try_join_all((0..processes).map(|index| {
            let env = [
                ("WORKER_QUEUES", format!("{QUEUE}={concurrency}")),
                ("WORKER_ID", format!("bench-ratelimit-{run}-{index}")),
            ];
            let (bin, url) = (&bench.taskq_bin, &bench.db.url);
            async move { TaskqProcess::spawn(bin, "worker", url, &env).await }
        }))
        .await?;
        let done = wait_terminal(&mut conn, i64::from(n), patience(promised)).await;
        let wall = started.elapsed();
        for worker in workers {
            worker.stop().await;
        }
        done?;
        let starts = Starts::read(&mut conn).await?;
        store.change_queue(QUEUE, QueueChange { rate_limit: Some(None), ..Default::default() }).await?;
        store.close().await;
        let _ = sqlx::Connection::close(conn).await;
        anyhow::ensure!(starts.starts.len() == n as usize, "{} of {n} tasks succeeded", starts.starts.len());

        let report = &mut bench.report;
        for (name, seconds) in [(&names.span, starts.span()), (&names.wall, wall.as_secs_f64())] {
            report.taskq("ratelimit", name, Unit::Seconds, Some(promised), seconds);
            report.figure("ratelimit", name, Unit::Seconds, None).goal = Goal::Within(TOLERANCE);
        }
        report.taskq("ratelimit", &names.rate, Unit::PerSecond, Some(rate), starts.rate());
        report.figure("ratelimit", &names.rate, Unit::PerSecond, None).goal = Goal::Within(TOLERANCE);
        report.taskq("ratelimit", &names.gap, Unit::Millis, Some(step_ms), starts.smallest_gap_ms());
        report.figure("ratelimit", &names.gap, Unit::Millis, None).goal = Goal::AtLeast;
        bench.progress.inc(1);
    }
    Ok(())
}

/// The figures' names, each with the case.
struct Names {
    span: String,
    wall: String,
    rate: String,
    gap: String,
}

impl Names {
    fn new(case: &str) -> Self {
        Self {
            span: format!("drain s, first start → last finish, {case}"),
            wall: format!("drain s, worker start → all finished, {case}"),
            rate: format!("starts/s, first → last start, {case}"),
            gap: format!("smallest gap between starts, {case}"),
        }
    }
}

/// Long enough for a drain at a third of the promised pace, before it counts as failed.
fn patience(promised: f64) -> Duration {
    Duration::from_secs(30) + Duration::from_secs_f64(promised * 3.0)
}

/// The recorded starts of the limited queue's succeeded tasks, in order, and its last
/// finish.
struct Starts {
    starts: Vec<DateTime<Utc>>,
    last_finish: Option<DateTime<Utc>>,
}

impl Starts {
    async fn read(conn: &mut sqlx::PgConnection) -> anyhow::Result<Self> {
        let (starts, last_finish): (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT coalesce(array_agg(started_at ORDER BY started_at) FILTER (WHERE status = 'succeeded'), '{}'), \
                    max(completed_at) \
             FROM tasks WHERE queue = $1",
        )
        .bind(QUEUE)
        .fetch_one(conn)
        .await?;
        Ok(Self { starts, last_finish })
    }

    /// Seconds from the first start to the last finish.
    fn span(&self) -> f64 {
        match (self.starts.first(), self.last_finish) {
            (Some(first), Some(last)) => seconds(last - *first),
            _ => f64::NAN,
        }
    }

    /// Starts per second between the first and the last start: the pace of the
    /// intervals, `n - 1` of them.
    fn rate(&self) -> f64 {
        match (self.starts.first(), self.starts.last()) {
            (Some(first), Some(last)) if self.starts.len() > 1 => {
                (self.starts.len() - 1) as f64 / seconds(*last - *first)
            }
            _ => f64::NAN,
        }
    }

    fn smallest_gap_ms(&self) -> f64 {
        self.starts.windows(2).map(|pair| seconds(pair[1] - pair[0]) * 1000.0).fold(f64::NAN, f64::min)
    }
}

fn seconds(duration: chrono::TimeDelta) -> f64 {
    duration.num_microseconds().map_or(f64::NAN, |us| us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_figures_come_from_the_recorded_starts_and_the_last_finish() {
        let starts = Starts { starts: vec![at(0), at(10), at(25), at(40)], last_finish: Some(at(1000)) };
        assert_eq!(starts.span(), 1.0);
        assert_eq!(starts.rate(), 75.0, "three intervals in 40 ms");
        assert_eq!(starts.smallest_gap_ms(), 10.0);
        let one = Starts { starts: vec![at(0)], last_finish: Some(at(5)) };
        assert!(one.rate().is_nan() && one.smallest_gap_ms().is_nan(), "no interval, no figure");
    }
}
