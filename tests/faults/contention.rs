//! Four worker processes compete for the same short tasks: each task succeeds exactly
//! once and runs exactly once (the ledger holds one run per task).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_competing_workers_run_every_task_exactly_once() {
    let _gate = exclusive();
    const TEST: &str = "four workers competing";
    let tasks: usize = scale(4_000, 10_000);
    let scratch = Scratch::new("contention");
    let pg = Postgres::start();
    let url = pg.database("contention").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let mut workers = Vec::new();
    for i in 1..=4 {
        workers.push(Proc::start(Spec::new("worker", &url, &format!("c{i}")).concurrency(8), &scratch).await);
    }

    let began = Instant::now();
    let all: Vec<_> = (0..tasks).map(|i| ledger_task(&format!("c{i}"), 0, 30, 3)).collect();
    for chunk in all.chunks(1_000) {
        api.create_batch(chunk.to_vec()).await;
    }
    let counts = settle(&url, Duration::from_secs(scale(240, 1_200))).await;
    let took = began.elapsed();
    assert_eq!(counts.get("succeeded").copied(), Some(tasks as i64), "{counts:?}");

    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for event in pg_events(&url).await.iter().filter(|e| e.event_type == "task_succeeded") {
        *per_worker.entry(event.worker_id.clone().unwrap_or_default()).or_default() += 1;
    }
    let mut shares: Vec<_> = per_worker.into_iter().collect();
    shares.sort();
    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    figure(TEST, "tasks", tasks);
    figure(TEST, "runs in the ledger", report.ledger_runs);
    figure(TEST, "tasks run twice", report.repeated_runs);
    figure(TEST, "successes per worker", format!("{shares:?}"));
    figure(
        TEST,
        "drained in",
        format!(
            "{:.1} s ({:.0} tasks/s, debug build)",
            took.as_secs_f64(),
            tasks as f64 / took.as_secs_f64()
        ),
    );
    assert_eq!(report.ledger_runs, tasks, "every task ran exactly once");
    assert_eq!(report.repeated_runs, 0);
    assert!(shares.len() >= 2, "the work was shared: {shares:?}");
    drop(workers);
}
