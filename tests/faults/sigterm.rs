//! SIGTERM during work: the worker claims nothing after the signal, lets short tasks
//! finish, releases long ones without spending a retry, and exits 0 within its grace.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_short_tasks_releases_long_ones_and_exits_within_the_grace() {
    let _gate = shared();
    const TEST: &str = "SIGTERM during work";
    const GRACE: Duration = Duration::from_secs(3);
    let scratch = Scratch::new("sigterm");
    let pg = Postgres::start();
    let url = pg.database("sigterm").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let spec = Spec::new("worker", &url, "leaving").concurrency(4).env("SHUTDOWN_GRACE", "3s");
    let mut worker = Proc::start(spec, &scratch).await;

    let short: Vec<_> = (0..2).map(|i| ledger_task(&format!("short{i}"), 1_000, 30, 3)).collect();
    let long: Vec<_> = (0..2).map(|i| ledger_task(&format!("long{i}"), 60_000, 120, 3)).collect();
    let short = api.create_batch(short).await;
    let long = api.create_batch(long).await;
    wait_for("four tasks running", Duration::from_secs(30), || async {
        (status_counts(&url).await.get("running").copied() == Some(4)).then_some(())
    })
    .await;
    // Queued behind the busy executors: these must stay queued.
    let waiting =
        api.create_batch((0..10).map(|i| ledger_task(&format!("wait{i}"), 10, 30, 3)).collect()).await;

    let signalled = Utc::now();
    let began = Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(GRACE + Duration::from_secs(10)).await;
    let took = began.elapsed();
    figure(
        TEST,
        "exit after SIGTERM",
        format!("{:.2} s, code {:?} (grace {} s)", took.as_secs_f64(), status.code(), GRACE.as_secs()),
    );
    assert!(status.success(), "exit status {status:?}");
    assert!(took <= GRACE + Duration::from_secs(2), "exit took {took:?}");

    for id in &short {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        assert_eq!(task["status"], "succeeded", "short task finished within the grace: {task}");
    }
    for id in &long {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        assert_eq!(
            (task["status"].as_str(), task["retry_count"].as_i64()),
            (Some("queued"), Some(0)),
            "{task}"
        );
        assert_eq!(history_types(&api, *id).await, ["task_queued", "task_started", "task_requeued"]);
    }
    let late_claims = pg_events(&url)
        .await
        .into_iter()
        .filter(|e| e.event_type == "task_started" && e.created_at > signalled)
        .count();
    figure(TEST, "claims after the signal", late_claims);
    assert_eq!(late_claims, 0, "claimed after SIGTERM");
    for id in &waiting {
        let (_, task) = api.get(&format!("/api/tasks/{id}")).await.unwrap();
        assert_eq!((task["status"].as_str(), task["attempt"].as_i64()), (Some("queued"), Some(0)));
    }

    // The released tasks are cancelled (not worth a minute each); a new worker runs the rest.
    for id in &long {
        let response = api
            .client
            .post(api.url(&format!("/api/tasks/{id}/cancel")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let _next = Proc::start(Spec::new("worker", &url, "next"), &scratch).await;
    settle(&url, Duration::from_secs(60)).await;
    assert_invariants(TEST, &url, api.acknowledged(), true).await;
}
