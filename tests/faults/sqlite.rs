//! Embedded SQLite: the single `ROLE=all` process is killed with `kill -9` in the
//! middle of a run and started again on the same file, twice. Nothing acknowledged is
//! lost, and `taskq check` (the operator's command) passes on the file.

use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_survives_kill_9_and_a_restart() {
    let _gate = shared();
    const TEST: &str = "SQLite kill -9 and restart";
    let scratch = Scratch::new("sqlite");
    let db = format!("sqlite://{}", scratch.path("taskq.db").display());
    let (rounds, per_round) = scale((2, 150), (10, 1_000));
    let mut rng = rand::rng();
    let mut acknowledged = Vec::new();
    let mut rescued_after = Duration::ZERO;

    for round in 0..=rounds {
        let mut node = Proc::start(Spec::new("all", &db, &format!("node{round}")), &scratch).await;
        let api = Api::new(node.url(""));
        if round == rounds {
            // The last life: finish everything, then leave cleanly. The backlog is every
            // round's tasks (175 ms on average, 5 executors), with room for retries.
            let began = Instant::now();
            let backlog = Duration::from_millis((rounds * per_round) as u64 * 175 / 5);
            settle(&db, Duration::from_secs(120) + 2 * backlog).await;
            rescued_after = began.elapsed();
            node.signal("TERM");
            assert!(node.wait_exit(Duration::from_secs(20)).await.success());
            break;
        }
        // Single requests, so each 201 is a commit the kill may follow at once.
        for i in 0..per_round {
            api.create(&ledger_task(&format!("r{round}-{i}"), rng.random_range(50..300), 2, 10))
                .await
                .unwrap();
        }
        wait_for("work in flight", Duration::from_secs(30), || async {
            (status_counts(&db).await.get("running").copied().unwrap_or(0) > 0).then_some(())
        })
        .await;
        node.kill9();
        acknowledged.extend(api.acknowledged());
    }

    let file = scratch.path("acknowledged.txt");
    std::fs::write(&file, acknowledged.iter().map(|id| format!("{id}\n")).collect::<String>()).unwrap();
    let output = Command::new(TASKQ)
        .args(["check", "--settled", "--acknowledged"])
        .arg(&file)
        .env_clear()
        .env("DATABASE_URL", &db)
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    println!("{TEST}: {printed}");
    assert!(
        output.status.success(),
        "taskq check failed: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let report = assert_invariants(TEST, &db, acknowledged.clone(), true).await;
    figure(TEST, "kills / tasks acknowledged", format!("{rounds} / {}", acknowledged.len()));
    figure(TEST, "attempts rescued after restart", report.rescued_attempts);
    figure(TEST, "drained after the last restart", format!("{:.1} s", rescued_after.as_secs_f64()));
    figure(TEST, "taskq check", printed.lines().next().unwrap_or_default().trim());
}
