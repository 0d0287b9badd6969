//! Flow control and long work under faults: four worker processes drain a queue with a
//! rate limit and keyed tasks (a key limit of 2, from `taskq.toml`), some of which
//! snooze once, and a queue of long tasks some of which are cancelled while they run,
//! while PostgreSQL is restarted and a worker is killed with `kill -9` and replaced. The
//! checker proves from the history alone that no two starts came closer than the rate
//! allows, that no key ever ran more attempts at once than its limit, that no snooze
//! spent a retry and that no cancelled task ran again; the test makes sure keys did run
//! side by side, tasks did snooze and running tasks were cancelled, so that the proof
//! is about something.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::harness::*;

const QUEUE: &str = "flow";
/// Starts per second the queue allows: its tasks take 20–60 ms on 4 × 3 executors,
/// which could start far more.
const RATE: u32 = 40;
const KEYS: usize = 6;
const MAX_PER_KEY: usize = 2;
const EXECUTORS: usize = 3;
/// The queue of long tasks, some cancelled while they run.
const LONG: &str = "long";

/// Cancels one running task of the queue of long tasks, if one runs; returns whether
/// the cancel was accepted.
async fn cancel_a_running_task(api: &Api, url: &str) -> bool {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    let running: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM tasks WHERE queue = $1 AND status = 'running' LIMIT 1")
            .bind(LONG)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    let Some(id) = running else { return false };
    let response = api
        .client
        .post(api.url(&format!("/api/tasks/{id}/cancel")))
        .json(&json!({"reason": "fault test"}))
        .send()
        .await
        .unwrap();
    response.status().as_u16() == 200
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_limits_snoozes_and_cancels_hold_through_kills_and_restarts() {
    let _gate = shared();
    const TEST: &str = "flow control under faults";
    let (tasks, rounds) = scale((400, 2), (3_000, 6));
    let began = Instant::now();
    let scratch = Scratch::new("flow");
    std::fs::write(
        scratch.path("taskq.toml"),
        format!(
            "[queues.{QUEUE}]\nrate_limit = {{ max = {RATE}, per = \"1s\" }}\nmax_per_key = {MAX_PER_KEY}\n"
        ),
    )
    .unwrap();
    let pg = Postgres::start();
    let url = pg.database("flow").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));

    let worker = |name: &str| {
        Spec::new("worker", &url, name).env("WORKER_QUEUES", format!("{QUEUE}={EXECUTORS},{LONG}=2"))
    };
    let mut generation = 0;
    let mut fleet: Vec<Proc> = Vec::new();
    for _ in 0..4 {
        generation += 1;
        fleet.push(Proc::start(worker(&format!("f{generation}")), &scratch).await);
    }

    let mut rng = rand::rng();
    let batch: Vec<serde_json::Value> = (0..tasks)
        .map(|i| {
            let mut task = ledger_task(&format!("f{i}"), rng.random_range(20..60), 5, 20);
            task["queue"] = json!(QUEUE);
            // Most tasks carry one of a few keys; some carry none and pass them all.
            if i % 5 != 0 {
                task["concurrency_key"] = json!(format!("tenant-{}", i % KEYS));
            }
            task
        })
        .collect();
    for chunk in batch.chunks(500) {
        api.create_batch(chunk.to_vec()).await;
    }
    // Tasks that snooze once for 300 ms before they run, and long ones to cancel.
    let snoozers = 40;
    let snoozing: Vec<serde_json::Value> = (0..snoozers)
        .map(|i| json!({"name": format!("s{i}"), "type": "sleep", "queue": QUEUE, "payload": {"ms": 20, "snooze_ms": 300}}))
        .collect();
    api.create_batch(snoozing).await;
    let long = 12;
    let long_tasks: Vec<serde_json::Value> = (0..long)
        .map(|i| json!({"name": format!("l{i}"), "type": "sleep", "queue": LONG, "payload": {"ms": 2_500}, "max_retries": 5}))
        .collect();
    api.create_batch(long_tasks).await;

    let (mut kills, mut cancels) = (0, 0);
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancels += usize::from(cancel_a_running_task(&api, &url).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        pg.restart("immediate");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = rng.random_range(0..fleet.len());
        fleet.swap_remove(victim).kill9();
        kills += 1;
        generation += 1;
        fleet.push(Proc::start(worker(&format!("f{generation}")), &scratch).await);
    }

    let counts = settle(&url, Duration::from_secs(scale(180, 900))).await;
    let cancelled = counts.get("cancelled").copied().unwrap_or(0);
    assert_eq!(
        counts.get("succeeded").copied().unwrap_or(0) + cancelled,
        (tasks + snoozers + long) as i64,
        "every task succeeded but the cancelled ones: {counts:?}"
    );
    assert!(
        cancels > 0 && cancelled > 0,
        "running tasks were cancelled ({cancels} accepted, {cancelled} ended so)"
    );
    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let snoozed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM task_events WHERE event_type = 'task_snoozed'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    // A snoozing task whose first attempt a kill cut short runs without snoozing.
    assert!(snoozed >= snoozers as i64 * 3 / 4, "the snoozing tasks snoozed ({snoozed} snoozes)");
    let peak = report.peak_per_key.get(QUEUE).copied().unwrap_or(0);
    assert_eq!(peak, MAX_PER_KEY, "some key ran its limit's worth of attempts at once, and never more");
    let drained = began.elapsed();
    let limited = tasks + snoozers;
    assert!(
        drained >= Duration::from_secs_f64(limited as f64 / f64::from(RATE) * 0.9),
        "{limited} tasks at {RATE}/s cannot drain in {drained:?}"
    );
    figure(
        TEST,
        "tasks / workers × executors / rate / keys × limit",
        format!("{tasks} of 20–60 ms / 4 × {EXECUTORS} / {RATE} per s / {KEYS} × {MAX_PER_KEY}"),
    );
    figure(TEST, "PostgreSQL restarts / kills", format!("{rounds} / {kills}"));
    figure(
        TEST,
        "snoozes / running tasks cancelled",
        format!("{snoozed} / {cancelled} ({cancels} cancels accepted)"),
    );
    figure(TEST, "peak of one key's attempts overlapping a start", format!("{peak} (limit {MAX_PER_KEY})"));
    figure(
        TEST,
        "drain time",
        format!(
            "{:.1} s (at least {:.1} s at the rate)",
            drained.as_secs_f64(),
            tasks as f64 / f64::from(RATE)
        ),
    );
    drop(fleet);
    drop(server);
}
