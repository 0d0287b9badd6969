//! Flow control under faults: four worker processes drain a queue with a rate limit and
//! keyed tasks (a key limit of 2, from `taskq.toml`) while PostgreSQL is restarted and
//! a busy worker is killed with `kill -9` and replaced. The checker proves from the
//! history alone that no two starts came closer than the rate allows and that no key
//! ever ran more attempts at once than its limit; the test makes sure keys did run side
//! by side and the limit did hold tasks back, so that the proof is about something.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_key_limits_hold_through_kills_and_restarts() {
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

    let worker =
        |name: &str| Spec::new("worker", &url, name).env("WORKER_QUEUES", format!("{QUEUE}={EXECUTORS}"));
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

    let mut kills = 0;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg.restart("immediate");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = rng.random_range(0..fleet.len());
        fleet.swap_remove(victim).kill9();
        kills += 1;
        generation += 1;
        fleet.push(Proc::start(worker(&format!("f{generation}")), &scratch).await);
    }

    let counts = settle(&url, Duration::from_secs(scale(180, 900))).await;
    assert_eq!(counts.get("succeeded").copied(), Some(tasks as i64), "every task succeeded: {counts:?}");
    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    let peak = report.peak_per_key.get(QUEUE).copied().unwrap_or(0);
    assert_eq!(peak, MAX_PER_KEY, "some key ran its limit's worth of attempts at once, and never more");
    let drained = began.elapsed();
    assert!(
        drained >= Duration::from_secs_f64(tasks as f64 / f64::from(RATE) * 0.9),
        "{tasks} tasks at {RATE}/s cannot drain in {drained:?}"
    );
    figure(
        TEST,
        "tasks / workers × executors / rate / keys × limit",
        format!("{tasks} of 20–60 ms / 4 × {EXECUTORS} / {RATE} per s / {KEYS} × {MAX_PER_KEY}"),
    );
    figure(TEST, "PostgreSQL restarts / kills", format!("{rounds} / {kills}"));
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
