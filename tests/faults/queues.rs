//! A limited queue under faults: four worker processes serve a queue whose
//! `max_running` (from `taskq.toml`) is below their executors, while the queue is
//! paused and resumed, its limit lowered and raised through the API, PostgreSQL
//! restarted, and a busy worker killed with `kill -9` and restarted. The checker proves
//! from the history alone that no task started while the queue was paused and that no
//! more than the limit of its attempts ever overlapped; the test makes sure the queue
//! did run its tasks side by side, so that the proof is about something.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};

use crate::harness::*;

const QUEUE: &str = "limited";
/// The limit of `taskq.toml`.
const LIMIT: usize = 3;
/// Executors per worker: four workers have 8, more than the limit.
const EXECUTORS: usize = 2;

/// How many of the queue's tasks each worker runs (or holds prefetched).
async fn running_by_worker(url: &str) -> Vec<(String, i64)> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_as(
        "SELECT worker_id, count(*)::int8 FROM tasks WHERE queue = $1 AND status = 'running' \
         GROUP BY worker_id ORDER BY worker_id",
    )
    .bind(QUEUE)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn succeeded(url: &str) -> i64 {
    status_counts(url).await.get("succeeded").copied().unwrap_or(0)
}

/// Waits until `n` more tasks have succeeded.
async fn progress(url: &str, n: i64) {
    let target = succeeded(url).await + n;
    wait_for("the queue to make progress", Duration::from_secs(60), || async {
        (succeeded(url).await >= target).then_some(())
    })
    .await;
}

/// The first `task_started` of the queue after `since`, if any yet.
async fn first_start_after(url: &str, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.ok()?;
    sqlx::query_scalar(
        "SELECT min(h.created_at) FROM task_events AS h JOIN tasks AS t ON t.id = h.task_id \
         WHERE t.queue = $1 AND h.event_type = 'task_started' AND h.created_at > $2",
    )
    .bind(QUEUE)
    .bind(since)
    .fetch_one(&mut conn)
    .await
    .ok()
    .flatten()
}

/// Handler runs (ledger rows) that began between `from` and `until`.
async fn runs_begun_between(url: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*)::int8 FROM taskq_ledger WHERE started_at > $1 AND started_at < $2")
        .bind(from)
        .bind(until)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// The `created_at` of the queue's latest settings change of kind `event`.
async fn acknowledged_at(url: &str, event: &str) -> DateTime<Utc> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT max(created_at) FROM queue_history WHERE queue = $1 AND event = $2")
        .bind(QUEUE)
        .bind(event)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn queue_api(api: &Api, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = api.client.request(method, api.url(&format!("/api/queues/{QUEUE}{path}")));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path} answered {status}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_queue_keeps_its_limit_and_its_pauses_through_kills_and_restarts() {
    let _gate = shared();
    const TEST: &str = "limited queue under faults";
    let (tasks, rounds) = scale((900, 1), (6_000, 5));
    let began = Instant::now();
    let scratch = Scratch::new("queues");
    // Every process starts in the scratch directory and applies this at its start.
    std::fs::write(scratch.path("taskq.toml"), format!("[queues.{QUEUE}]\nmax_running = {LIMIT}\n")).unwrap();
    let pg = Postgres::start();
    let url = pg.database("queues").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let settings = queue_api(&api, reqwest::Method::GET, "", None).await;
    assert_eq!(settings["max_running"], json!(LIMIT), "taskq.toml set the limit: {settings}");

    let worker =
        |name: &str| Spec::new("worker", &url, name).env("WORKER_QUEUES", format!("{QUEUE}={EXECUTORS}"));
    let mut generation = 0;
    let mut fleet: Vec<Proc> = Vec::new();
    for _ in 0..4 {
        generation += 1;
        fleet.push(Proc::start(worker(&format!("q{generation}")), &scratch).await);
    }

    let mut rng = rand::rng();
    let batch: Vec<Value> = (0..tasks)
        .map(|i| {
            let mut task = ledger_task(&format!("q{i}"), rng.random_range(20..60), 5, 20);
            task["queue"] = json!(QUEUE);
            task
        })
        .collect();
    for chunk in batch.chunks(500) {
        api.create_batch(chunk.to_vec()).await;
    }

    let (mut pauses, mut worst_resume, mut runs_in_pauses) = (0, Duration::ZERO, 0);
    let mut kills = 0;
    for _ in 0..rounds {
        // A pause of a busy queue: starts stop once it is acknowledged, running tasks
        // finish, and starts come back after the resume.
        progress(&url, 60).await;
        queue_api(&api, reqwest::Method::POST, "/pause", None).await;
        let paused_at = acknowledged_at(&url, "paused").await;
        let queued = status_counts(&url).await.get("queued").copied().unwrap_or(0);
        assert!(queued > 0, "the queue was paused with tasks waiting");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(first_start_after(&url, paused_at).await, None, "a task started after the pause");
        queue_api(&api, reqwest::Method::POST, "/resume", None).await;
        let resumed_at = acknowledged_at(&url, "resumed").await;
        let restarted = wait_for("starts after the resume", Duration::from_secs(30), || {
            first_start_after(&url, resumed_at)
        })
        .await;
        worst_resume = worst_resume.max((restarted - resumed_at).to_std().unwrap_or_default());
        // Tasks claimed before the pause (prefetched) whose handler began after it:
        // legal, but worth knowing.
        runs_in_pauses += runs_begun_between(&url, paused_at, resumed_at).await;
        pauses += 1;

        // The limit lowered to 1 while three run, then raised again.
        progress(&url, 40).await;
        queue_api(&api, reqwest::Method::PATCH, "", Some(json!({ "max_running": 1 }))).await;
        progress(&url, 20).await;
        queue_api(&api, reqwest::Method::PATCH, "", Some(json!({ "max_running": LIMIT }))).await;

        // PostgreSQL restarted under the fleet, as after a crash.
        progress(&url, 40).await;
        pg.restart("immediate");

        // A worker killed while it runs tasks of the queue, and replaced at once.
        progress(&url, 40).await;
        let victim_id = wait_for("a worker running tasks of the queue", Duration::from_secs(30), || async {
            let busy = running_by_worker(&url).await;
            fleet.iter().map(|p| p.spec.worker_id.clone()).find(|id| busy.iter().any(|(w, _)| w == id))
        })
        .await;
        let victim = fleet.iter().position(|p| p.spec.worker_id == victim_id).unwrap();
        fleet.swap_remove(victim).kill9();
        kills += 1;
        generation += 1;
        fleet.push(Proc::start(worker(&format!("q{generation}")), &scratch).await);
    }

    let counts = settle(&url, Duration::from_secs(scale(120, 900))).await;
    assert_eq!(counts.get("succeeded").copied(), Some(tasks as i64), "every task succeeded: {counts:?}");
    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    let peak = report.peak_running.get(QUEUE).copied().unwrap_or(0);
    figure(
        TEST,
        "tasks / workers × executors / limit",
        format!("{tasks} of 20–60 ms / 4 × {EXECUTORS} / max_running {LIMIT} (1 for a while)"),
    );
    figure(
        TEST,
        "pauses / limit changes / PostgreSQL restarts / kills",
        format!("{pauses} / {} / {rounds} / {kills}", 2 * rounds),
    );
    figure(TEST, "peak of the queue's attempts overlapping a start", format!("{peak} (limit {LIMIT})"));
    figure(TEST, "slowest first start after a resume", format!("{} ms", worst_resume.as_millis()));
    figure(TEST, "handler runs begun during a pause (claimed before it)", runs_in_pauses);
    figure(
        TEST,
        "attempts rescued / of them within their lease",
        format!("{} / {}", report.rescued_attempts, report.rescued_within_lease),
    );
    figure(TEST, "whole run", format!("{:.1} s", began.elapsed().as_secs_f64()));
    // The limit was reached: tasks ran side by side, so the checker's sweep had
    // overlaps to count.
    assert!(peak >= 2, "the queue never ran two tasks at once (peak {peak})");
    assert!(peak <= LIMIT, "the checker passed with a peak of {peak} over the limit {LIMIT}");
    assert!(report.rescued_attempts > 0, "killing a busy worker left attempts to rescue");
    drop(fleet);
    drop(server);
}
