//! `kill -9` of workers in the middle of tasks, again and again, each replaced at
//! once: nothing is lost, and every attempt of a dead worker is rescued within its
//! lease plus one rescuer interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_nothing_and_their_tasks_are_rescued_within_the_lease() {
    let _gate = shared();
    const TEST: &str = "kill -9 of workers";
    let (tasks, kills, workers) = scale((400, 4, 3), (3_000, 30, 4));
    const TIMEOUT: u32 = 3;
    let scratch = Scratch::new("kill");
    let pg = Postgres::start();
    let url = pg.database("kill").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let mut generation = 0;
    let mut fleet: Vec<Proc> = Vec::new();
    for _ in 0..workers {
        generation += 1;
        fleet.push(Proc::start(Spec::new("worker", &url, &format!("w{generation}")), &scratch).await);
    }

    let mut rng = rand::rng();
    let batch: Vec<_> =
        (0..tasks).map(|i| ledger_task(&format!("k{i}"), rng.random_range(100..600), TIMEOUT, 20)).collect();
    for chunk in batch.chunks(500) {
        api.create_batch(chunk.to_vec()).await;
    }

    // Kill a worker that is running tasks, replace it at once, and go on.
    let mut killed_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    for _ in 0..kills {
        wait_for("the fleet to be busy", Duration::from_secs(30), || async {
            (status_counts(&url).await.get("running").copied().unwrap_or(0) > 0).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await; // mid-task
        let victim = rng.random_range(0..fleet.len());
        let mut dead = fleet.swap_remove(victim);
        dead.kill9();
        killed_at.insert(dead.spec.worker_id.clone(), Utc::now());
        generation += 1;
        fleet.push(Proc::start(Spec::new("worker", &url, &format!("w{generation}")), &scratch).await);
    }

    let began = Instant::now();
    let counts = settle(&url, Duration::from_secs(scale(180, 900))).await;
    println!("{TEST}: settled {:?} after the last kill in {:?}", counts, began.elapsed());
    assert_eq!(counts.get("succeeded").copied(), Some(tasks as i64), "every task succeeded: {counts:?}");

    // Rescue times: from the claim of each lost attempt, and from the kill.
    let events = pg_events(&url).await;
    let mut started: HashMap<uuid::Uuid, (Option<String>, DateTime<Utc>)> = HashMap::new();
    let (mut worst_from_claim, mut worst_from_kill, mut rescued) = (Duration::ZERO, Duration::ZERO, 0);
    for event in &events {
        match event.event_type.as_str() {
            "task_started" => {
                started.insert(event.task_id, (event.worker_id.clone(), event.created_at));
            }
            "worker_lock_expired" => {
                rescued += 1;
                let (worker, claimed) = started[&event.task_id].clone();
                let worker = worker.unwrap_or_default();
                let from_claim = (event.created_at - claimed).to_std().unwrap_or_default();
                worst_from_claim = worst_from_claim.max(from_claim);
                let kill = killed_at
                    .get(&worker)
                    .unwrap_or_else(|| panic!("{worker} lost a lease but was not killed"));
                worst_from_kill =
                    worst_from_kill.max((event.created_at - *kill).to_std().unwrap_or_default());
            }
            _ => {}
        }
    }
    let lease = Duration::from_secs(TIMEOUT.into()) + LEASE_GRACE;
    figure(TEST, "tasks / kills", format!("{tasks} / {kills}"));
    figure(TEST, "attempts rescued", rescued);
    figure(
        TEST,
        "slowest rescue after the claim",
        format!(
            "{:.1} s (bound: lease {} s + rescuer {} s)",
            worst_from_claim.as_secs_f64(),
            lease.as_secs(),
            RESCUE_INTERVAL.as_secs()
        ),
    );
    figure(TEST, "slowest rescue after the kill", format!("{:.1} s", worst_from_kill.as_secs_f64()));
    assert!(rescued > 0, "killing busy workers left attempts to rescue");
    assert!(
        worst_from_claim <= lease + RESCUE_INTERVAL + Duration::from_secs(1),
        "a rescue took {worst_from_claim:?} after the claim"
    );

    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    figure(TEST, "runs repeated after a kill", report.repeated_runs);
    drop(fleet);
    drop(server);
}
