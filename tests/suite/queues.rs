//! Named queues against a real database: routing, global limits, pause and resume,
//! per-queue figures, and the API that manages them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rstest::rstest;
use serde_json::{Value, json};
use taskq::actors::Worker;
use taskq::config::{QueueSpec, WorkerConfig};
use taskq::handlers::Registry;
use taskq::store::{AttemptRef, Backend, Completion, NewTask, QueueChange, Store, TaskStatus, stats};

use crate::api::json_of;
use crate::helpers::*;

const GRACE: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(20);

fn in_queue(queue: &str, name: &str, priority: i32) -> NewTask {
    let mut task = noop(name);
    task.queue = queue.to_owned();
    task.priority = priority;
    task
}

/// `count` tasks of the built-in `sleep` handler in `queue`, named `queue-i`.
fn sleeps(queue: &str, count: usize, ms: u64) -> Vec<NewTask> {
    (0..count)
        .map(|i| {
            let mut task = NewTask::new("sleep", json!({ "ms": ms }));
            task.name = format!("{queue}-{i}");
            task.queue = queue.to_owned();
            task
        })
        .collect()
}

fn limit(n: i32) -> QueueChange {
    QueueChange { max_running: Some(Some(n)), ..Default::default() }
}

fn paused(paused: bool) -> QueueChange {
    QueueChange { paused: Some(paused), ..Default::default() }
}

async fn complete(store: &dyn Store, worker: &str, tasks: &[taskq::store::Task]) {
    let done: Vec<Completion> = tasks
        .iter()
        .map(|t| Completion { attempt: AttemptRef { task_id: t.id, attempt: t.attempt }, result: None })
        .collect();
    assert_eq!(store.complete(worker, &done).await.unwrap().len(), tasks.len());
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_claim_takes_only_its_queue_by_priority_then_in_arrival_order(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks = [
        in_queue("emails", "e-low", 0),
        in_queue("default", "d-high", 9),
        in_queue("emails", "e-high", 5),
        in_queue("emails", "e-low-2", 0),
    ];
    store.create_tasks(&tasks).await.unwrap();

    let emails = store.claim("w", "emails", 10, GRACE).await.unwrap();
    let names: Vec<&str> = emails.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["e-high", "e-low", "e-low-2"]);
    assert!(emails.iter().all(|t| t.queue == "emails"));
    let default = store.claim("w", "default", 10, GRACE).await.unwrap();
    assert_eq!(default.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["d-high"]);
    assert!(store.claim("w", "reports", 10, GRACE).await.unwrap().is_empty(), "an unknown queue has nothing");
    let history = store.history(emails[0].id).await.unwrap();
    assert!(history.iter().all(|event| event.queue == "emails"), "history events carry the queue");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_paused_queue_starts_nothing_takes_new_tasks_and_resumes(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.create_tasks(&[in_queue("emails", "before", 0)]).await.unwrap();
    let settings = store.change_queue("emails", paused(true)).await.unwrap();
    assert!(settings.paused);
    store.create_tasks(&[in_queue("emails", "while-paused", 0)]).await.unwrap();
    store.create_tasks(&[in_queue("default", "other-queue", 0)]).await.unwrap();

    assert!(store.claim("w", "emails", 10, GRACE).await.unwrap().is_empty());
    assert_eq!(store.claim("w", "default", 10, GRACE).await.unwrap().len(), 1, "other queues run on");

    assert!(!store.change_queue("emails", paused(false)).await.unwrap().paused);
    assert_eq!(store.claim("w", "emails", 10, GRACE).await.unwrap().len(), 2);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn pausing_an_unknown_queue_creates_it_paused(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.change_queue("later", paused(true)).await.unwrap();
    let settings = store.queue_settings().await.unwrap();
    let later = settings.iter().find(|s| s.name == "later").expect("the queue exists");
    assert!(later.paused);
    assert_eq!(later.max_running, None);

    store.create_tasks(&[in_queue("later", "first", 0)]).await.unwrap();
    assert!(store.claim("w", "later", 10, GRACE).await.unwrap().is_empty());
    let snapshot = stats(&*store).await.unwrap();
    let queue = snapshot.queues.iter().find(|q| q.name == "later").unwrap();
    assert_eq!((queue.paused, queue.queued), (true, 1));
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_limited_queue_runs_at_most_its_limit_across_workers_and_a_rescue_frees_a_slot(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks: Vec<NewTask> = (0..10).map(|i| in_queue("partner", &format!("p{i}"), 0)).collect();
    store.create_tasks(&tasks).await.unwrap();
    store.change_queue("partner", limit(3)).await.unwrap();
    store.heartbeat(&heartbeat("w1")).await.unwrap();
    store.heartbeat(&heartbeat("w2")).await.unwrap();

    let first = store.claim("w1", "partner", 10, GRACE).await.unwrap();
    assert_eq!(first.len(), 3, "the limit caps one claim");
    assert!(store.claim("w2", "partner", 10, GRACE).await.unwrap().is_empty(), "and every other worker's");

    complete(&*store, "w1", &first[..1]).await;
    assert_eq!(
        store.claim("w2", "partner", 10, GRACE).await.unwrap().len(),
        1,
        "a finished task frees its slot"
    );

    // A worker that never heartbeats is gone: its task is rescued, and its slot freed.
    store.change_queue("partner", limit(4)).await.unwrap();
    let orphan = store.claim("gone", "partner", 10, GRACE).await.unwrap();
    assert_eq!(orphan.len(), 1);
    assert!(store.claim("w2", "partner", 10, GRACE).await.unwrap().is_empty());
    let rescued = store.rescue(10, &|_| Some(Duration::ZERO)).await.unwrap();
    assert_eq!(rescued, [orphan[0].id]);
    assert_eq!(store.claim("w2", "partner", 10, GRACE).await.unwrap().len(), 1);

    // Removing the limit lets the rest run.
    store
        .change_queue("partner", QueueChange { max_running: Some(None), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(store.claim("w2", "partner", 10, GRACE).await.unwrap().len(), 5);
}

fn heartbeat(worker: &str) -> taskq::store::WorkerInfo {
    taskq::store::WorkerInfo {
        worker_id: worker.into(),
        concurrency: 10,
        running: 0,
        started_at: chrono::Utc::now(),
        last_seen_at: chrono::Utc::now(),
        queues: "partner=10".into(),
    }
}

/// Eight connections claim and complete as fast as they can. Each holder counts what
/// it holds only after the database said it runs, and stops counting before it says
/// it finished, so the count never exceeds what the database had running at once.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn concurrent_claims_never_exceed_a_queue_limit(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks: Vec<NewTask> = (0..300).map(|i| in_queue("partner", &format!("p{i}"), 0)).collect();
    store.create_tasks(&tasks).await.unwrap();
    store.change_queue("partner", limit(5)).await.unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let claimers: Vec<_> = (0..8)
        .map(|i| {
            let (store, held, peak, done) = (store.clone(), held.clone(), peak.clone(), done.clone());
            tokio::spawn(async move {
                let worker = format!("w{i}");
                store.heartbeat(&heartbeat(&worker)).await.unwrap();
                while done.load(Ordering::SeqCst) < 300 {
                    let claimed = store.claim(&worker, "partner", 3, GRACE).await.unwrap();
                    let now = held.fetch_add(claimed.len(), Ordering::SeqCst) + claimed.len();
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    held.fetch_sub(claimed.len(), Ordering::SeqCst);
                    if !claimed.is_empty() {
                        complete(&*store, &worker, &claimed).await;
                        done.fetch_add(claimed.len(), Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for claimer in claimers {
        tokio::time::timeout(Duration::from_secs(60), claimer).await.expect("claims finish").unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 5, "{peak} tasks of a queue limited to 5 ran at once");
    assert!(peak >= 2, "the claimers overlapped (peak {peak}), or the test shows nothing");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn one_slow_queue_never_starves_another_in_the_same_worker(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut config: WorkerConfig = test_config("unused").worker;
    config.queues = vec![
        QueueSpec { name: "imports".into(), concurrency: 2 },
        QueueSpec { name: "emails".into(), concurrency: 2 },
    ];
    store.create_tasks(&sleeps("imports", 20, 5_000)).await.unwrap();
    let worker = Worker::start(store.clone(), Arc::new(Registry::with_builtins(1.0)), config);
    wait_for("the imports to occupy their executors", DEADLINE, || {
        let store = store.clone();
        async move {
            let snapshot = stats(&*store).await.ok()?;
            (snapshot.queues.iter().find(|q| q.name == "imports")?.running == 2).then_some(())
        }
    })
    .await;

    let quick: Vec<NewTask> = (0..20).map(|i| in_queue("emails", &format!("email-{i}"), 0)).collect();
    let ids: Vec<_> = store.create_tasks(&quick).await.unwrap().into_iter().map(|c| c.task.id).collect();
    for id in ids {
        wait_for_status(&*store, id, TaskStatus::Succeeded, Duration::from_secs(4)).await;
    }
    let snapshot = stats(&*store).await.unwrap();
    let imports = snapshot.queues.iter().find(|q| q.name == "imports").unwrap();
    assert_eq!(imports.succeeded, 0, "every email ran while the first imports still ran");
    let workers = &snapshot.queues.iter().find(|q| q.name == "emails").unwrap().workers;
    assert_eq!(workers, &[worker.id().to_owned()]);
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_task_whose_queue_no_worker_serves_stays_queued_and_counts_as_unserved(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker =
        Worker::start(store.clone(), Arc::new(Registry::with_builtins(0.01)), test_config("unused").worker);
    let served = store.create_tasks(&[noop("served")]).await.unwrap()[0].task.id;
    let unserved = store.create_tasks(&[in_queue("nobody", "unserved", 0)]).await.unwrap()[0].task.id;
    wait_for_status(&*store, served, TaskStatus::Succeeded, DEADLINE).await;
    // The served task ran after the unserved one was created: the worker had its chance.
    let snapshot = stats(&*store).await.unwrap();
    assert_eq!(snapshot.unserved_tasks, 1);
    let nobody = snapshot.queues.iter().find(|q| q.name == "nobody").unwrap();
    assert!(nobody.workers.is_empty());
    assert_eq!(store.get_task(unserved).await.unwrap().unwrap().status, TaskStatus::Queued);
    worker.shutdown().await;
}

/// A stream of short tasks runs in a paused-then-resumed queue. From the moment the
/// pause is answered, no task starts: no `task_started` event is later than it, and
/// the tasks a worker had prefetched go back to the queue unstarted.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn after_a_pause_is_answered_no_task_of_the_queue_starts_until_it_is_resumed(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut config = test_config("unused").worker;
    config.queues = vec![QueueSpec { name: "bulk".into(), concurrency: 2 }];
    let worker = Worker::start(store.clone(), Arc::new(Registry::with_builtins(1.0)), config);
    store.create_tasks(&sleeps("bulk", 3000, 1)).await.unwrap();
    wait_for("some tasks to finish", DEADLINE, || {
        let store = store.clone();
        async move { (stats(&*store).await.ok()?.succeeded_tasks >= 50).then_some(()) }
    })
    .await;

    store.change_queue("bulk", paused(true)).await.unwrap();
    let answered = chrono::Utc::now();
    wait_for("the queue to stop running", DEADLINE, || {
        let store = store.clone();
        async move { (stats(&*store).await.ok()?.running_tasks == 0).then_some(()) }
    })
    .await;
    let snapshot = stats(&*store).await.unwrap();
    assert!(snapshot.queued_tasks > 0, "the pause came before the queue drained");
    let started_late = started_after(&*store, answered).await;
    assert_eq!(started_late, 0, "tasks started after the pause was answered");

    store.change_queue("bulk", paused(false)).await.unwrap();
    wait_for("the rest to run after the resume", Duration::from_secs(60), || {
        let store = store.clone();
        async move { (stats(&*store).await.ok()?.succeeded_tasks == 3000).then_some(()) }
    })
    .await;
    worker.shutdown().await;
}

/// `task_started` events later than `at`, over every task.
async fn started_after(store: &dyn Store, at: chrono::DateTime<chrono::Utc>) -> usize {
    let mut late = 0;
    let mut filter = taskq::store::ListFilter { limit: 500, ..Default::default() };
    loop {
        let page = store.list_tasks(&filter).await.unwrap();
        for task in &page {
            let history = store.history(task.id).await.unwrap();
            late += history
                .iter()
                .filter(|e| e.event_type == taskq::store::EventType::TaskStarted && e.created_at > at)
                .count();
        }
        match page.last() {
            Some(last) if page.len() == 500 => filter.before = Some(last.id),
            _ => return late,
        }
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_api_routes_lists_limits_pauses_and_resumes_queues(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let email = app.create(json!({"name": "welcome", "type": "noop", "queue": "emails"})).await;
    assert_eq!(email["queue"], "emails");
    let plain = app.create(json!({"name": "plain", "type": "noop"})).await;
    assert_eq!(plain["queue"], "default", "clients that send no queue keep working");

    let (status, listed) = json_of(app.get("/api/tasks?queue=emails").await).await;
    assert_eq!(status, 200);
    let names: Vec<&str> =
        listed["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["welcome"]);
    let id = email["id"].as_str().unwrap();
    let (_, history) = json_of(app.get(&format!("/api/tasks/{id}/history")).await).await;
    assert_eq!(history[0]["queue"], "emails");

    let patch = |body: Value| {
        let request = app.client.patch(app.url("/api/queues/emails")).json(&body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, settings) = patch(json!({"max_running": 2})).await;
    assert_eq!((status, settings["max_running"].clone()), (200, json!(2)));
    let (status, settings) = patch(json!({"max_running": null})).await;
    assert_eq!((status, settings["max_running"].clone()), (200, Value::Null));
    for (bad, names) in [
        (json!({"max_running": 0}), "max_running"),
        (json!({"max_running": "ten"}), "max_running"),
        (json!({}), "max_running"),
        (json!({"paused": true}), "paused"),
    ] {
        let (status, error) = patch(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {error}");
        assert!(error["error"].as_str().unwrap().contains(names), "{bad}: {error}");
    }

    let (status, settings) = json_of(app.post("/api/queues/reports/pause", &json!({})).await).await;
    assert_eq!((status, settings["paused"].clone()), (200, json!(true)));
    let (_, queues) = json_of(app.get("/api/queues").await).await;
    let names: Vec<&str> =
        queues["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "emails", "reports"]);
    let (status, reports) = json_of(app.get("/api/queues/reports").await).await;
    assert_eq!((status, reports["paused"].clone(), reports["queued"].clone()), (200, json!(true), json!(0)));
    let (status, _) = json_of(app.post("/api/queues/reports/resume", &json!({})).await).await;
    assert_eq!(status, 200);
    let (_, reports) = json_of(app.get("/api/queues/reports").await).await;
    assert_eq!(reports["paused"], false);

    let (status, _) = json_of(app.get("/api/queues/unknown").await).await;
    assert_eq!(status, 404);
    for path in ["/api/queues/Bad%20Name/pause", "/api/queues/bad!/resume"] {
        let (status, error) = json_of(app.post(path, &json!({})).await).await;
        assert_eq!(status, 400, "{path}: {error}");
        assert!(error["error"].as_str().unwrap().contains("queue name"), "{error}");
    }
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_bad_queue_on_a_task_is_a_400_naming_the_field(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    for queue in [json!(""), json!("Emails"), json!("a".repeat(65)), json!("e mails"), json!(7)] {
        let (status, error) =
            json_of(app.post("/api/tasks", &json!({"name": "x", "type": "noop", "queue": queue})).await)
                .await;
        assert_eq!(status, 400, "{queue}: {error}");
        assert!(error["error"].as_str().unwrap().contains("queue"), "{queue}: {error}");
    }
    let batch =
        json!({"tasks": [{"name": "a", "type": "noop"}, {"name": "b", "type": "noop", "queue": "B"}]});
    let (status, error) = json_of(app.post("/api/tasks/batch", &batch).await).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("tasks[1].queue"), "{error}");
    let (status, error) = json_of(app.get("/api/tasks?queue=Nope").await).await;
    assert_eq!(status, 400, "{error}");
    app.stop().await;
}

#[actix_rt::test]
async fn limits_in_the_configuration_file_are_applied_at_start() {
    let app = spawn_app_with(Backend::Sqlite, Registry::with_builtins(0.01), |config| {
        let change = taskq::store::QueueChange { max_running: Some(Some(7)), ..Default::default() };
        config.queue_settings.insert("partner".into(), change);
    })
    .await;
    let (_, partner) = json_of(app.get("/api/queues/partner").await).await;
    assert_eq!(partner["max_running"], 7);
    app.stop().await;
}

/// The poll is ten minutes away, so only the worker's own finished attempts can make it
/// claim again once the limit held its claims short.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_limited_queue_claims_again_as_its_own_tasks_finish_without_waiting_for_the_poll(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let recorder = Recorder::default();
    let tasks: Vec<NewTask> = (0..40)
        .map(|i| {
            let mut task = record(&format!("p{i}"), json!({"ms": 5}));
            task.queue = "partner".into();
            task
        })
        .collect();
    let ids: Vec<_> = store.create_tasks(&tasks).await.unwrap().into_iter().map(|c| c.task.id).collect();
    store.change_queue("partner", limit(2)).await.unwrap();
    let mut config = test_config("unused").worker;
    config.poll_interval = Duration::from_secs(600);
    config.queues = vec![QueueSpec { name: "partner".into(), concurrency: 4 }];
    let worker = Worker::start(store.clone(), Arc::new(recorder.registry()), config);
    for id in ids {
        wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    }
    let peak = recorder.max_running.lock().unwrap().values().copied().max().unwrap_or_default();
    assert!(peak <= 2, "{peak} ran at once in a queue limited to 2");
    worker.shutdown().await;
}

/// `taskq check` reads the queues' settings history on both backends: a limited,
/// paused and resumed queue that kept its settings passes, and history that shows a
/// start inside a pause and over a limit is caught.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_checker_holds_starts_against_the_queues_pauses_and_limits(#[case] backend: Backend) {
    use taskq::check::{self, Invariant, Options};
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.heartbeat(&heartbeat("w")).await.unwrap();
    let tasks: Vec<NewTask> = (0..4).map(|i| in_queue("partner", &format!("p{i}"), 0)).collect();
    store.create_tasks(&tasks).await.unwrap();
    store.change_queue("partner", limit(2)).await.unwrap();
    let first = store.claim("w", "partner", 10, GRACE).await.unwrap();
    assert_eq!(first.len(), 2);
    store.change_queue("partner", paused(true)).await.unwrap();
    complete(&*store, "w", &first).await;
    store.change_queue("partner", paused(false)).await.unwrap();
    let second = store.claim("w", "partner", 10, GRACE).await.unwrap();
    complete(&*store, "w", &second).await;

    let options = Options { settled: true, ..Options::default() };
    let report = check::check(&db.url, &options).await.unwrap();
    assert!(report.passed(), "{:#?}", report.violations);
    assert_eq!(report.peak_running.get("partner"), Some(&2));

    // Two tasks claimed together in a queue whose history, written here by hand, says
    // it was paused with a limit of 1 just before.
    store.create_tasks(&[in_queue("forged", "f1", 0), in_queue("forged", "f2", 0)]).await.unwrap();
    let pair = store.claim("w", "forged", 10, GRACE).await.unwrap();
    assert_eq!(pair.len(), 2);
    let before = pair[0].started_at.unwrap() - chrono::Duration::milliseconds(1);
    const FORGE: &str =
        "INSERT INTO queue_history (queue, event, max_running, created_at) VALUES ($1, $2, $3, $4)";
    for (event, max_running) in [("limit_changed", Some(1)), ("paused", None)] {
        match backend {
            Backend::Postgres => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
                sqlx::query(FORGE)
                    .bind("forged")
                    .bind(event)
                    .bind(max_running)
                    .bind(before)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Backend::Sqlite => {
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
                sqlx::query(FORGE)
                    .bind("forged")
                    .bind(event)
                    .bind(max_running)
                    .bind(before)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    let report = check::check(&db.url, &Options::default()).await.unwrap();
    let mut broken: Vec<(Invariant, uuid::Uuid)> =
        report.violations.iter().map(|v| (v.invariant, v.task_id.unwrap())).collect();
    broken.sort();
    let mut expected = vec![
        (Invariant::QueuePaused, pair[0].id),
        (Invariant::QueuePaused, pair[1].id),
        (Invariant::QueueLimit, pair[0].id.min(pair[1].id)),
    ];
    expected.sort();
    assert_eq!(broken, expected, "{:#?}", report.violations);
    assert_eq!(report.peak_running.get("forged"), Some(&2));
}

/// The schema holds the queue-name rule too, for writers that bypass the API.
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_schema_refuses_a_task_in_a_badly_named_queue(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    for name in ["", "Upper", "with space", "ünï", &"q".repeat(65)] {
        assert!(store.create_tasks(&[in_queue(name, "x", 0)]).await.is_err(), "{name:?} was stored");
    }
    assert!(store.create_tasks(&[in_queue(&"q".repeat(64), "x", 0)]).await.is_ok());
    assert!(store.create_tasks(&[in_queue("a_b.c-9", "x", 0)]).await.is_ok());
}
