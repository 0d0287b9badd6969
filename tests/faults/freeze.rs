//! A worker frozen with SIGSTOP past its lease, then resumed: another worker takes
//! the task over, and the frozen one's late result is ignored.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_past_its_lease_cannot_overwrite_the_hand_over() {
    let _gate = shared();
    const TEST: &str = "SIGSTOP past the lease";
    let scratch = Scratch::new("freeze");
    let pg = Postgres::start();
    let url = pg.database("freeze").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let frozen = Proc::start(Spec::new("worker", &url, "frozen").concurrency(1), &scratch).await;

    // 3 s of work under a 5 s timeout: the lease is 15 s.
    let id = api.create_batch(vec![ledger_task("frozen", 3_000, 5, 3)]).await[0];
    wait_for("the task's run to begin on the worker to freeze", Duration::from_secs(30), || async {
        (pg_ledger_runs(&url, id).await == 1).then_some(())
    })
    .await;
    frozen.signal("STOP");
    let stopped = Instant::now();
    let _rescuer = Proc::start(Spec::new("worker", &url, "rescuer"), &scratch).await;

    // The rescuer's Rescuer gives the task back and its Dispatcher takes attempt 2.
    wait_for("the hand-over to the other worker", Duration::from_secs(60), || async {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.ok()?;
        (task["worker_id"] == "rescuer" && task["attempt"] == 2).then_some(())
    })
    .await;
    let handed_over = stopped.elapsed();
    frozen.signal("CONT");
    // The frozen worker wakes, finishes its run and reports: the fence drops it.
    wait_for("the late result to be refused", Duration::from_secs(30), || async {
        frozen.log_text().contains("ignored: the attempt's lease was lost").then_some(())
    })
    .await;
    let done = wait_for("the task to succeed", Duration::from_secs(30), || async {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.ok()?;
        (task["status"] == "succeeded").then_some(task)
    })
    .await;
    assert_eq!((done["worker_id"].as_str(), done["attempt"].as_i64()), (Some("rescuer"), Some(2)));
    assert_eq!(
        history_types(&api, id).await,
        [
            "task_queued",
            "task_started",
            "worker_lock_expired",
            "retry_scheduled",
            "task_started",
            "task_succeeded"
        ]
    );
    let events = pg_events(&url).await;
    let by: Vec<_> =
        events.iter().filter(|e| e.task_id == id).map(|e| e.worker_id.clone().unwrap_or_default()).collect();
    assert_eq!(by[1], "frozen");
    assert_eq!(by[4..], ["rescuer", "rescuer"], "nothing from the frozen worker after the hand-over");

    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    figure(
        TEST,
        "hand-over after the freeze",
        format!("{:.1} s (lease 15 s + rescuer {} s)", handed_over.as_secs_f64(), RESCUE_INTERVAL.as_secs()),
    );
    figure(TEST, "late results applied", 0);
    figure(TEST, "runs of the task (ledger)", report.ledger_runs);
    assert_eq!(report.ledger_runs, 2, "both runs are in the ledger, explained by the lease expiry");
    let _: Uuid = id;
}
