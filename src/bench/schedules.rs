//! `schedules`: the scheduler's cost and promptness. A Scheduler leads over 1,000
//! schedules of which none is due; its statements per second are counted while it
//! idles (its only work then is the pass that renews its lease and finds nothing
//! due). Then some of the schedules tick every second, and the lag from each tick to
//! its task's creation (both by the database's clock) is taken over every tick.

use std::sync::Arc;

use actix::Actor;
use chrono::DurationRound;

use super::{Bench, Unit, percentile};
use crate::actors::Scheduler;
use crate::store::{CatchUp, NewTask, ScheduleSpec, Store, TaskTemplate};

/// Schedules created; none is due while the idle cost is measured.
const SCHEDULES: usize = 1_000;

pub async fn schedules(bench: &mut Bench) -> anyhow::Result<()> {
    let (idle, ticking, every_second) =
        (bench.args.schedules_idle, bench.args.schedules_ticking, bench.args.schedules_every_second);
    for run in 1..=bench.args.runs {
        bench.step(format!("schedules run {run}: {SCHEDULES} schedules, none due, for {idle:?}"));
        bench.db.reset().await?;
        let store = bench.store(10).await?;
        let now = store.clock().await?;
        for i in 0..SCHEDULES {
            let spec = spec(&format!("s{i:04}"), "0 0 1 1 *");
            store.create_schedule(&spec, now + chrono::Duration::days(365)).await?;
        }
        crate::metrics::handle();
        let before = statements();
        let scheduler =
            Scheduler::new(Arc::clone(&store), Arc::from(format!("bench-scheduler-{run}"))).start();
        tokio::time::sleep(idle).await;
        let per_second = (statements() - before) / idle.as_secs_f64();
        bench.report.taskq(
            "schedules",
            &format!("leader statements/s, {SCHEDULES} schedules, none due"),
            Unit::PerSecond,
            None,
            per_second,
        );

        bench.step(format!("schedules run {run}: {every_second} schedules every second for {ticking:?}"));
        // All start at one whole second, after the changes are written.
        let start = store.clock().await? + chrono::Duration::seconds(2);
        let start = start.duration_trunc(chrono::Duration::seconds(1))?;
        for current in store.schedules().await?.into_iter().take(every_second) {
            let spec = ScheduleSpec { cron: "* * * * * *".into(), ..spec(&current.name, "") };
            store.update_schedule(&spec, current.revision, Some(start)).await?;
        }
        tokio::time::sleep(ticking).await;
        crate::actors::stop_scheduler(&scheduler).await;
        let lags = tick_lags(&*store).await?;
        store.close().await;
        let name = |p: &str| format!("tick → task created, {p}, {every_second} schedules every second");
        bench.report.taskq("schedules", &name("p50"), Unit::Millis, None, percentile(&lags, 50.0));
        bench.report.taskq("schedules", &name("p99"), Unit::Millis, None, percentile(&lags, 99.0));
        bench.progress.inc(1);
    }
    Ok(())
}

fn spec(name: &str, cron: &str) -> ScheduleSpec {
    let mut task = NewTask::new("noop", serde_json::json!({}));
    task.name = name.to_owned();
    ScheduleSpec {
        name: name.to_owned(),
        cron: cron.to_owned(),
        timezone: "UTC".into(),
        task: TaskTemplate::of(&task),
        catch_up: CatchUp::Skip,
        paused: false,
        from_file: false,
    }
}

/// `taskq_scheduler_statements_total` of this process.
fn statements() -> f64 {
    let rendered = crate::metrics::handle().render();
    rendered
        .lines()
        .find_map(|line| line.strip_prefix("taskq_scheduler_statements_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every tick's lag, in milliseconds, sorted.
async fn tick_lags(store: &dyn Store) -> anyhow::Result<Vec<f64>> {
    let filter = crate::store::ListFilter { limit: 500, ..Default::default() };
    let mut lags = Vec::new();
    let mut page = store.list_tasks(&filter).await?;
    while let Some(last) = page.last().map(|t| t.id) {
        lags.extend(page.iter().filter_map(|t| {
            t.tick_at.map(|tick| (t.created_at - tick).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        }));
        page = store.list_tasks(&crate::store::ListFilter { before: Some(last), ..filter.clone() }).await?;
    }
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}
