//! Flow control against a real database: rate limits per queue and per type, and
//! concurrency keys, through the store, a worker and the API.

use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use serde_json::json;
use taskq::actors::Worker;
use taskq::config::QueueSpec;
use taskq::handlers::Registry;
use taskq::store::flow::{HoldReason, RateLimit};
use taskq::store::{Backend, NewTask, QueueChange, TaskStatus, TypeChange};

use crate::api::json_of;
use crate::helpers::*;

const GRACE: Duration = Duration::from_secs(10);

fn task(queue: &str, task_type: &str, key: Option<&str>) -> NewTask {
    let mut task = NewTask::new(task_type, json!({}));
    task.queue = queue.to_owned();
    task.concurrency_key = key.map(str::to_owned);
    task
}

fn rate(max: i32, per_ms: i64) -> QueueChange {
    QueueChange { rate_limit: Some(Some(RateLimit { max, per_ms })), ..Default::default() }
}

/// Milliseconds between consecutive recorded starts.
fn gaps(tasks: &[taskq::store::Task]) -> Vec<i64> {
    let mut starts: Vec<_> = tasks.iter().map(|t| t.started_at.unwrap()).collect();
    starts.sort();
    starts.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_rate_limited_claim_takes_evenly_spaced_slots_and_says_when_to_come_back(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.change_queue("emails", rate(10, 1000)).await.unwrap();
    let tasks: Vec<NewTask> = (0..30).map(|_| task("emails", "noop", None)).collect();
    store.create_tasks(&tasks).await.unwrap();
    let last = store.get_task(tasks[29].id).await.unwrap().unwrap();

    let first = store.claim_batch("w", "emails", 100, GRACE).await.unwrap();
    // Slots 100 ms apart, at most 200 ms ahead: now, +100 ms, +200 ms.
    assert_eq!(first.tasks.len(), 3, "{:?}", first.held);
    assert_eq!(gaps(&first.tasks), [100, 100]);
    assert!(
        first.start_in[2] > Duration::from_millis(150) && first.start_in[2] <= Duration::from_millis(200)
    );
    assert_eq!(first.held.rate_limited, 27);
    let retry_in = first.held.retry_in.expect("the next slot's time");
    assert!(retry_in <= Duration::from_millis(100), "{retry_in:?}");

    let early = store.claim_batch("w2", "emails", 100, GRACE).await.unwrap();
    assert!(early.tasks.is_empty(), "no slot is free before the next one comes");
    assert!(
        matches!(store.hold_reason(&last).await.unwrap(), Some(HoldReason::RateLimited { ref scope, .. }) if scope == "queue"),
        "a queued task says why it waits"
    );
    tokio::time::sleep(retry_in).await;
    let next = store.claim_batch("w2", "emails", 100, GRACE).await.unwrap();
    assert!(!next.tasks.is_empty(), "a claim at the time it was given finds a slot");
    let mut all = first.tasks.clone();
    all.extend(next.tasks);
    assert!(gaps(&all).iter().all(|gap| *gap >= 100), "{:?}", gaps(&all));

    // Other queues are not held back.
    store.create_tasks(&[task("default", "noop", None)]).await.unwrap();
    assert_eq!(store.claim("w", "default", 10, GRACE).await.unwrap().len(), 1);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_type_rate_limit_holds_its_tasks_in_every_queue_and_lets_other_types_pass(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let limit =
        TypeChange { rate_limit: Some(Some(RateLimit { max: 1, per_ms: 60_000 })), max_per_key: None };
    store.change_type("send_email", limit).await.unwrap();
    store
        .create_tasks(&[
            task("default", "send_email", None),
            task("default", "send_email", None),
            task("default", "noop", None),
            task("other", "send_email", None),
        ])
        .await
        .unwrap();
    let claim = store.claim_batch("w", "default", 10, GRACE).await.unwrap();
    let types: Vec<&str> = claim.tasks.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(types, ["send_email", "noop"]);
    assert_eq!(claim.held.rate_limited, 1);
    assert!(store.claim("w", "other", 10, GRACE).await.unwrap().is_empty(), "the type's bucket is shared");

    // Removing the settings removes the type's row, and the limit with it.
    let removed = TypeChange { rate_limit: Some(None), max_per_key: Some(None) };
    assert_eq!(store.change_type("send_email", removed).await.unwrap().rate_limit, None);
    assert!(store.type_settings().await.unwrap().is_empty());
    assert_eq!(store.claim("w", "other", 10, GRACE).await.unwrap().len(), 1);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn tasks_with_a_busy_key_wait_while_other_keys_pass_them(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks = [
        task("imports", "noop", Some("tenant-a")),
        task("imports", "noop", Some("tenant-a")),
        task("imports", "noop", Some("tenant-b")),
        task("imports", "noop", None),
    ];
    store.create_tasks(&tasks).await.unwrap();
    let first = store.claim_batch("w", "imports", 10, GRACE).await.unwrap();
    let keys: Vec<Option<&str>> = first.tasks.iter().map(|t| t.concurrency_key.as_deref()).collect();
    assert_eq!(keys, [Some("tenant-a"), Some("tenant-b"), None], "one per key by default");
    assert_eq!(first.held.waiting_for_key, 1);
    assert!(store.claim("w2", "imports", 10, GRACE).await.unwrap().is_empty(), "no worker runs a second");
    let queued = store.get_task(tasks[1].id).await.unwrap().unwrap();
    assert_eq!(
        store.hold_reason(&queued).await.unwrap(),
        Some(HoldReason::WaitingForKey { key: "tenant-a".into(), running: 1, max_per_key: 1 })
    );

    let a = first.tasks[0].clone();
    let done = taskq::store::Completion {
        attempt: taskq::store::AttemptRef { task_id: a.id, attempt: a.attempt },
        result: None,
    };
    store.complete("w", &[done]).await.unwrap();
    let second = store.claim("w2", "imports", 10, GRACE).await.unwrap();
    assert_eq!(second.len(), 1, "tenant-a's next task starts once its first ended");

    // A queue's max_per_key lets more run at once; a type's overrides it.
    store
        .create_tasks(&[
            task("imports", "noop", Some("tenant-b")),
            task("imports", "sleep", Some("tenant-b")),
        ])
        .await
        .unwrap();
    let per_key = QueueChange { max_per_key: Some(Some(3)), ..Default::default() };
    store.change_queue("imports", per_key).await.unwrap();
    let one = TypeChange { rate_limit: None, max_per_key: Some(Some(1)) };
    store.change_type("sleep", one).await.unwrap();
    let third = store.claim("w3", "imports", 10, GRACE).await.unwrap();
    assert_eq!(
        third.iter().map(|t| t.task_type.as_str()).collect::<Vec<_>>(),
        ["noop"],
        "sleep's own limit of 1 is full"
    );
}

/// Two workers drain a queue limited to 20 starts a second: 30 tasks take about 1.5 s,
/// their recorded starts are at least 50 ms apart, and every one succeeds.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn workers_drain_a_rate_limited_queue_at_its_rate(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.change_queue("limited", rate(20, 1000)).await.unwrap();
    let workers: Vec<Worker> = (0..2)
        .map(|i| {
            let mut config = test_config("unused").worker;
            config.worker_id = format!("flow-{i}");
            config.queues = vec![QueueSpec { name: "limited".into(), concurrency: 4 }];
            Worker::start(store.clone(), Arc::new(Registry::with_builtins(0.01)), config)
        })
        .collect();
    let created = store
        .create_tasks(&(0..30).map(|_| task("limited", "noop", None)).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut done = Vec::new();
    for created in &created {
        done.push(
            wait_for_status(&*store, created.task.id, TaskStatus::Succeeded, Duration::from_secs(20)).await,
        );
    }
    let gaps = gaps(&done);
    assert!(gaps.iter().all(|gap| *gap >= 50), "{gaps:?}");
    let span: i64 = gaps.iter().sum();
    assert!((1400..2500).contains(&span), "29 gaps of 50 ms, allowing for the workers' wake-ups: {span} ms");
    for worker in workers {
        worker.shutdown().await;
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn flow_settings_are_managed_through_the_api_and_bad_ones_are_named(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let client = reqwest::Client::new();
    let patch = |path: &str, body: serde_json::Value| client.patch(app.url(path)).json(&body).send();

    let (status, queue) = json_of(
        patch("/api/queues/emails", json!({"rate_limit": {"max": 10, "per": "1s"}, "max_per_key": 2}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["rate_limit"], json!({"max": 10, "per": "1s"}));
    assert_eq!(queue["max_per_key"], 2);
    let (_, listed) = json_of(app.get("/api/queues/emails").await).await;
    assert_eq!(listed["rate_limit"], json!({"max": 10, "per": "1s"}));
    let (_, removed) = json_of(patch("/api/queues/emails", json!({"rate_limit": null})).await.unwrap()).await;
    assert_eq!((removed["rate_limit"].clone(), removed["max_per_key"].clone()), (json!(null), json!(2)));

    let (status, settings) = json_of(
        patch("/api/task-types/Send_Email", json!({"rate_limit": {"max": 5, "per": "1m"}})).await.unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["type"], "send_email");
    let (_, types) = json_of(app.get("/api/task-types").await).await;
    assert_eq!(types["settings"][0]["rate_limit"], json!({"max": 5, "per": "1m"}));

    for (path, body, problem) in [
        (
            "/api/queues/emails",
            json!({"rate_limit": {"max": 0, "per": "1s"}}),
            "rate_limit.max must be from 1",
        ),
        ("/api/queues/emails", json!({"rate_limit": {"max": 5, "per": "often"}}), "rate_limit.per"),
        ("/api/queues/emails", json!({"rate_limit": {"max": 5}}), "per"),
        ("/api/queues/emails", json!({"max_per_key": 0}), "max_per_key must be from 1"),
        ("/api/queues/emails", json!({}), "nothing to change"),
        ("/api/task-types/send_email", json!({"max_per_key": 2.5}), "whole number"),
        ("/api/task-types/send_email", json!({"rate": 1}), "unknown field"),
        ("/api/queues/emails", json!([null, null]), "expected a JSON object"),
        ("/api/task-types/%00", json!({"max_per_key": 2}), "type must not contain NUL"),
        ("/api/task-types/send_email", json!([null, null]), "expected a JSON object"),
    ] {
        let (status, error) = json_of(patch(path, body.clone()).await.unwrap()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(problem), "{body}: {error}");
    }

    let (status, created) = json_of(
        app.post("/api/tasks", &json!({"name": "import", "type": "noop", "concurrency_key": "tenant-1"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["concurrency_key"], "tenant-1");
    let (status, error) =
        json_of(app.post("/api/tasks", &json!({"name": "x", "type": "noop", "concurrency_key": " "})).await)
            .await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("concurrency_key"), "{error}");
    app.stop().await;
}
