//! Poison tasks: a handler that panics, one that aborts the whole process, one that
//! hangs past its timeout, one that blocks its thread. Each spends its retries and
//! then fails; healthy tasks keep flowing meanwhile; and the fleet, restarted by its
//! supervisor like a Kubernetes Deployment would, stops crashing once the aborting
//! task has failed for good.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

/// A supervisor: restarts worker processes that exit, counting the crashes.
struct Fleet {
    url: String,
    procs: Vec<Proc>,
    crashes: usize,
    started: usize,
}

impl Fleet {
    fn restart_the_dead(&mut self, scratch: &Scratch) {
        for i in 0..self.procs.len() {
            if self.procs[i].exited().is_some() {
                self.crashes += 1;
                self.started += 1;
                let spec = Spec::new("worker", &self.url, &format!("poisoned{}", self.started));
                self.procs[i] = Proc::spawn(spec, scratch);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_tasks_spend_their_retries_and_fail_while_the_rest_flows() {
    let _gate = shared();
    const TEST: &str = "poison tasks";
    let scratch = Scratch::new("poison");
    let pg = Postgres::start();
    let url = pg.database("poison").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let mut fleet = Fleet { url: url.clone(), procs: Vec::new(), crashes: 0, started: 0 };
    for _ in 0..2 {
        fleet.started += 1;
        fleet.procs.push(
            Proc::start(Spec::new("worker", &url, &format!("poisoned{}", fleet.started)), &scratch).await,
        );
    }

    let poison = |kind: &str, payload| json!({"name": kind, "type": kind, "payload": payload, "timeout_seconds": 1, "max_retries": 1, "backoff_seconds": 1});
    let kinds = ["panic", "abort", "hang", "block"];
    let poisons = api
        .create_batch(vec![
            poison("panic", json!({})),
            poison("abort", json!({})),
            poison("hang", json!({})),
            poison("block", json!({"ms": 3000})),
        ])
        .await;

    // Healthy tasks trickle in the whole time, one every 100 ms.
    let began = Instant::now();
    let mut healthy: Vec<Uuid> = Vec::new();
    let poisoned_done =
        |counts: &std::collections::HashMap<String, i64>| counts.get("failed").copied() == Some(4);
    loop {
        fleet.restart_the_dead(&scratch);
        if healthy.len() < scale(150, 1_500) {
            healthy.extend(api.create_batch(vec![ledger_task("healthy", 20, 5, 5)]).await);
        } else if poisoned_done(&status_counts(&url).await) {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(scale(120, 600)), "poison tasks did not fail in time");
        tokio::time::sleep(Duration::from_millis(100)).await; // the producer's pace
    }
    let crashes_when_failed = fleet.crashes;
    // The fleet has stopped crashing: nothing poisonous is left to claim.
    for id in &poisons {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        assert_eq!(
            (task["status"].as_str(), task["retry_count"].as_i64()),
            (Some("failed"), Some(1)),
            "{task}"
        );
    }
    let finishing = Instant::now();
    let counts = loop {
        fleet.restart_the_dead(&scratch);
        let counts = status_counts(&url).await;
        if counts.get("succeeded").copied() == Some(healthy.len() as i64) {
            break counts;
        }
        assert!(finishing.elapsed() < Duration::from_secs(60), "healthy tasks did not finish: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    fleet.restart_the_dead(&scratch);
    assert_eq!(fleet.crashes, crashes_when_failed, "no crash after the aborting task failed");
    assert_eq!(fleet.crashes, 2, "the aborting task crashed its worker once per attempt");

    // How long healthy tasks waited while poison went round (claim to success).
    let mut slowest = Duration::ZERO;
    for id in &healthy {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        let at = |field: &str| chrono::DateTime::parse_from_rfc3339(task[field].as_str().unwrap()).unwrap();
        slowest = slowest.max((at("completed_at") - at("created_at")).to_std().unwrap_or_default());
    }
    for (kind, id) in kinds.iter().zip(&poisons) {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        figure(
            TEST,
            &format!("{kind}: outcome"),
            format!("failed after {} attempts: {}", task["attempt"], task["last_error"]),
        );
    }
    figure(TEST, "worker crashes (abort, max_retries 1)", fleet.crashes);
    figure(TEST, "healthy tasks succeeded", format!("{} of {}", counts["succeeded"], healthy.len()));
    figure(TEST, "slowest healthy task (created to done)", format!("{:.1} s", slowest.as_secs_f64()));
    assert_invariants(TEST, &url, api.acknowledged(), true).await;
}
