//! `search`: what the dashboard's views and filters cost on a big table. With the
//! table filled as `stats` fills it (a week of a million tasks by default), a server
//! process answers each request a view or a filter makes, in turn; each is timed over
//! a few sequential requests after one warm-up. The figure is the median of a run's
//! requests; taskq's target for each is under a second.

use std::time::Instant;

use super::http::{Connection, fill};
use super::process::TaskqProcess;
use super::{Bench, Unit};

/// The target of every view and filter, in milliseconds.
const TARGET_MS: f64 = 1_000.0;

/// What the dashboard asks for: a label, and the request (`{id}` is a task's id,
/// `{prefix}` its first eight hex digits, `{hour_ago}` the time an hour ago).
const REQUESTS: [(&str, &str); 19] = [
    ("overview: stats", "/api/stats"),
    ("queues view", "/api/queues"),
    ("schedules view", "/api/schedules"),
    ("task list, newest", "/api/tasks?limit=50"),
    ("task list, next page", "/api/tasks?limit=50&cursor={id}"),
    ("status = failed", "/api/tasks?status=failed"),
    ("status = running", "/api/tasks?status=running"),
    ("status = queued", "/api/tasks?status=queued"),
    ("status = succeeded", "/api/tasks?status=succeeded"),
    ("type, common", "/api/tasks?type=send_email"),
    ("type, rare (0.1%)", "/api/tasks?type=rare_type"),
    ("failed of a rare type", "/api/tasks?status=failed&type=rare_type"),
    ("queue", "/api/tasks?queue=default"),
    ("id prefix", "/api/tasks?id={prefix}"),
    ("name contains", "/api/tasks?name=order-4242"),
    ("created in the last hour", "/api/tasks?created_after={hour_ago}"),
    ("finished in the last hour", "/api/tasks?finished_after={hour_ago}"),
    ("payload key = value (24 h)", "/api/tasks?payload=customer_id%3D42"),
    ("task detail and history", "/api/tasks/{id}/history"),
];

pub async fn search(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.search_tasks;
    let requests = bench.args.search_requests.max(1);
    bench.step(format!("search: filling the table with {n} tasks"));
    bench.db.reset().await?;
    fill(bench, n).await?;
    let mut conn = bench.db.connect().await?;
    // A task from the middle of the week: the detail view's, and the list's cursor.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks ORDER BY id OFFSET $1 LIMIT 1")
        .bind(i64::from(n / 2))
        .fetch_one(&mut conn)
        .await?;
    let _ = sqlx::Connection::close(conn).await;
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let prefix = id.simple().to_string()[..8].to_owned();
    let server = TaskqProcess::spawn(&bench.taskq_bin, "server", &bench.db.url, &[]).await?;
    let outcome = async {
        for run in 1..=bench.args.runs {
            let mut http = Connection::open(server.port).await?;
            for (label, path) in REQUESTS {
                bench.step(format!("search run {run}: {label}"));
                let path = path
                    .replace("{id}", &id.to_string())
                    .replace("{prefix}", &prefix)
                    .replace("{hour_ago}", &hour_ago);
                let status = http.get(&path).await?; // warm-up: plans, caches
                anyhow::ensure!(status == 200, "GET {path} answered {status}");
                let mut times = Vec::with_capacity(requests as usize);
                for _ in 0..requests {
                    let started = Instant::now();
                    http.get(&path).await?;
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                let name = format!("{label}, {n} tasks");
                bench.report.taskq(
                    "search",
                    &name,
                    Unit::Millis,
                    Some(TARGET_MS),
                    super::report::median(&times),
                );
            }
            bench.progress.inc(1);
        }
        anyhow::Ok(())
    }
    .await;
    server.stop().await;
    outcome
}
