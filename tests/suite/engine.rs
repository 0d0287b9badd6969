//! The worker's actors against a real database: lifecycle, ordering, retries,
//! timeouts, panics, rescue, many workers, and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rstest::rstest;
use serde_json::{Value, json};
use taskq::actors::Worker;
use taskq::backoff::RetryPolicy;
use taskq::config::WorkerConfig;
use taskq::handlers::{Handler, HandlerResult, Registry, TaskContext};
use taskq::store::{Backend, EventType, NewTask, ReleaseReason, Store, TaskStatus};

use crate::helpers::*;

fn worker_config(concurrency: usize) -> WorkerConfig {
    let mut config = test_config("unused").worker;
    config.concurrency = concurrency;
    config
}

fn start(store: &Arc<dyn Store>, registry: Registry, config: WorkerConfig) -> Worker {
    Worker::start(store.clone(), Arc::new(registry), config)
}

const DEADLINE: Duration = Duration::from_secs(20);

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_task_runs_once_and_its_history_tells_the_whole_story(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(5));
    let mut task = NewTask::new("sleep", json!({"ms": 10}));
    task.name = "lifecycle".into();
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;

    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!(done.result, Some(json!({"slept_ms": 10})));
    assert_eq!((done.retry_count, done.attempt, done.locked_until), (0, 1, None));
    assert!(done.completed_at.unwrap() >= done.started_at.unwrap());
    let history = store.history(id).await.unwrap();
    assert_eq!(event_types(&history), ["task_queued", "task_started", "task_succeeded"]);
    assert_eq!(history[1].worker_id.as_deref(), Some(worker.id()));
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn one_executor_runs_tasks_by_priority_then_in_arrival_order(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let recorder = Recorder::default();
    for (name, priority) in [("p0-a", 0), ("p9-a", 9), ("p0-b", 0), ("p5-a", 5), ("p9-b", 9), ("p0-c", 0)] {
        let mut task = record(name, json!({}));
        task.priority = priority;
        store.create_tasks(&[task]).await.unwrap();
    }
    let worker = start(&store, recorder.registry(), worker_config(1));
    wait_for("all six runs", DEADLINE, || async { (recorder.runs().len() == 6).then_some(()) }).await;
    let order: Vec<_> = recorder.runs().into_iter().map(|r| r.name).collect();
    assert_eq!(order, ["p9-a", "p9-b", "p5-a", "p0-a", "p0-b", "p0-c"]);
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_scheduled_task_does_not_run_before_its_time(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(2));
    let run_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let mut task = noop("later");
    task.run_at = Some(run_at);
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;
    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    assert!(done.started_at.unwrap() >= run_at, "started {:?} before {run_at:?}", done.started_at);
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn retries_wait_within_the_backoff_bounds_then_fail_for_good(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(2));
    let mut task = NewTask::new("fail", json!({"message": "nope"}));
    task.max_retries = 2;
    task.backoff_seconds = 1;
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;

    let failed = wait_for_status(&*store, id, TaskStatus::Failed, DEADLINE).await;
    assert_eq!((failed.retry_count, failed.attempt, failed.last_error.as_deref()), (2, 3, Some("nope")));
    let history = store.history(id).await.unwrap();
    assert_eq!(
        event_types(&history),
        [
            "task_queued",
            "task_started",
            "task_failed",
            "retry_scheduled",
            "task_started",
            "task_failed",
            "retry_scheduled",
            "task_started",
            "task_failed",
            "task_failed_final"
        ]
    );
    let policy = RetryPolicy::default();
    let scheduled: Vec<_> = history.iter().filter(|e| e.next_run_at.is_some()).collect();
    for (n, event) in scheduled.iter().enumerate() {
        let delay = (event.next_run_at.unwrap() - event.created_at).to_std().unwrap();
        let (low, high) = policy.bounds(1, n as i32 + 1);
        let slack = Duration::from_millis(50);
        assert!(delay + slack >= low && delay <= high + slack, "retry {} waited {delay:?}", n + 1);
    }
    // And no attempt started before its retry was due.
    let starts: Vec<_> = history.iter().filter(|e| e.status == TaskStatus::Running).skip(1).collect();
    for (start, due) in starts.iter().zip(&scheduled) {
        assert!(start.created_at + chrono::Duration::milliseconds(5) >= due.next_run_at.unwrap());
    }
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_fatal_error_is_not_retried(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(2));
    let id = store.create_tasks(&[NewTask::new("fail", json!({"fatal": true}))]).await.unwrap()[0].task.id;
    let failed = wait_for_status(&*store, id, TaskStatus::Failed, DEADLINE).await;
    assert_eq!((failed.retry_count, failed.attempt), (0, 1));
    assert_eq!(
        event_types(&store.history(id).await.unwrap()),
        ["task_queued", "task_started", "task_failed", "task_failed_final"]
    );
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_task_past_its_timeout_is_stopped_and_retried(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(2));
    let mut task = NewTask::new("sleep", json!({"ms": 60_000}));
    task.timeout_seconds = 1;
    task.max_retries = 1;
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;
    let failed = wait_for_status(&*store, id, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(failed.last_error.as_deref(), Some("timed out after 1s"));
    assert_eq!(
        event_types(&store.history(id).await.unwrap()),
        [
            "task_queued",
            "task_started",
            "timeout_occurred",
            "retry_scheduled",
            "task_started",
            "timeout_occurred",
            "task_failed_final"
        ]
    );
    worker.shutdown().await;
}

struct Panics;

#[async_trait::async_trait]
impl Handler for Panics {
    async fn run(&self, _: TaskContext) -> HandlerResult {
        panic!("kaboom")
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_panicking_handler_is_a_failed_attempt_and_the_worker_keeps_going(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut registry = Registry::with_builtins(0.01);
    registry.register("panics", Panics);
    let worker = start(&store, registry, worker_config(1));
    let mut poison = NewTask::new("panics", json!({}));
    poison.max_retries = 1;
    let poison = store.create_tasks(&[poison]).await.unwrap()[0].task.id;
    let failed = wait_for_status(&*store, poison, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(failed.last_error.as_deref(), Some("handler panicked: kaboom"));
    assert_eq!(failed.retry_count, 1);
    let healthy = store.create_tasks(&[noop("after the panic")]).await.unwrap()[0].task.id;
    wait_for_status(&*store, healthy, TaskStatus::Succeeded, DEADLINE).await;
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_task_whose_worker_died_is_rescued_and_run_again(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let recorder = Recorder::default();
    let id = store.create_tasks(&[record("orphan", json!({}))]).await.unwrap()[0].task.id;
    // A "worker" that claims and then vanishes: it never heartbeats, never acks.
    store.claim("crashed-worker", "default", 1, Duration::from_secs(600)).await.unwrap();
    let worker = start(&store, recorder.registry(), worker_config(2));

    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!((done.attempt, done.retry_count), (2, 1));
    assert_eq!(done.worker_id.as_deref(), Some(worker.id()));
    assert_eq!(
        event_types(&store.history(id).await.unwrap()),
        [
            "task_queued",
            "task_started",
            "worker_lock_expired",
            "retry_scheduled",
            "task_started",
            "task_succeeded"
        ]
    );
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn three_workers_run_two_thousand_tasks_exactly_once(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let recorder = Recorder::default();
    let workers: Vec<_> = futures_util::future::join_all((0..3).map(|_| db.store()))
        .await
        .into_iter()
        .map(|store| start(&store, recorder.registry(), worker_config(4)))
        .collect();
    let store = db.store().await;
    // 5 ms each: long enough that no worker's prefetch can take the whole backlog
    // before the others find it, so the test shows sharing as well as exactly-once.
    let tasks: Vec<NewTask> = (0..2000).map(|i| record(&format!("t{i}"), json!({"ms": 5}))).collect();
    for chunk in tasks.chunks(500) {
        store.create_tasks(chunk).await.unwrap();
    }
    wait_for("2000 successes", Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            let stats = taskq::store::stats(&*store).await.unwrap();
            (stats.succeeded_tasks == 2000).then_some(())
        }
    })
    .await;

    let mut per_task: HashMap<uuid::Uuid, usize> = HashMap::new();
    for run in recorder.runs() {
        *per_task.entry(run.task_id).or_default() += 1;
    }
    assert_eq!(per_task.len(), 2000);
    assert!(per_task.values().all(|&runs| runs == 1), "a task ran twice");
    let peaks = recorder.max_running.lock().unwrap().clone();
    assert!(peaks.values().all(|&peak| peak <= 4), "more tasks ran at once than executors: {peaks:?}");
    let busy_workers = peaks.len();
    for worker in workers {
        worker.shutdown().await;
    }
    assert!(busy_workers >= 2, "work was shared: {peaks:?}");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn five_hundred_executors_run_side_by_side(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let recorder = Recorder::default();
    let tasks: Vec<NewTask> = (0..1000).map(|i| record(&format!("t{i}"), json!({"ms": 300}))).collect();
    store.create_tasks(&tasks).await.unwrap();
    let worker = start(&store, recorder.registry(), worker_config(500));
    wait_for("1000 successes", Duration::from_secs(60), || {
        let store = store.clone();
        async move { (taskq::store::stats(&*store).await.unwrap().succeeded_tasks == 1000).then_some(()) }
    })
    .await;
    let peak = *recorder.max_running.lock().unwrap().get(worker.id()).unwrap();
    assert!((100..=500).contains(&peak), "peak concurrency {peak}");
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn shutdown_finishes_short_tasks_and_releases_long_ones(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut config = worker_config(4);
    config.shutdown_grace = Duration::from_millis(1500);
    let worker = start(&store, Registry::with_builtins(0.01), config);
    let short = store.create_tasks(&[NewTask::new("sleep", json!({"ms": 500}))]).await.unwrap()[0].task.id;
    let long = store.create_tasks(&[NewTask::new("sleep", json!({"ms": 60_000}))]).await.unwrap()[0].task.id;
    wait_for("both tasks to start", DEADLINE, || {
        let store = store.clone();
        async move { (taskq::store::stats(&*store).await.unwrap().running_tasks == 2).then_some(()) }
    })
    .await;

    let began = std::time::Instant::now();
    worker.shutdown().await;
    assert!(began.elapsed() < Duration::from_secs(5), "shutdown took {:?}", began.elapsed());
    let short = store.get_task(short).await.unwrap().unwrap();
    assert_eq!(short.status, TaskStatus::Succeeded);
    let long = store.get_task(long).await.unwrap().unwrap();
    assert_eq!((long.status, long.retry_count), (TaskStatus::Queued, 0), "released without spending a retry");
    assert_eq!(
        event_types(&store.history(long.id).await.unwrap()),
        ["task_queued", "task_started", "task_requeued"]
    );
    let late = store.create_tasks(&[noop("after shutdown")]).await.unwrap()[0].task.id;
    // Proving a negative: a Dispatcher still running would claim the task at once on
    // the insert's wake-up, or else at its next poll (every 100 ms here); three poll
    // intervals leave it every chance to.
    tokio::time::sleep(3 * worker_config(1).poll_interval).await;
    assert_eq!(
        store.get_task(late).await.unwrap().unwrap().status,
        TaskStatus::Queued,
        "nothing claimed after"
    );
}

/// A local endpoint for the webhook handler: `/ok` answers 200 with JSON, `/bad` 400,
/// `/down` 503; every request's body and headers are recorded.
async fn webhook_target() -> (String, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
    let recorded = seen.clone();
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                let token =
                    req.headers().get("x-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                recorded.lock().unwrap().push((format!("{} {token}", req.path()), body.into_inner()));
                match req.path() {
                    "/ok" => HttpResponse::Ok().json(json!({"received": true})),
                    "/bad" => HttpResponse::BadRequest().body("no such order"),
                    _ => HttpResponse::ServiceUnavailable().body("try later"),
                }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (address, seen)
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn webhooks_succeed_on_2xx_fail_on_4xx_and_retry_on_5xx(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (target, seen) = webhook_target().await;
    let worker = start(&store, Registry::with_builtins(0.01), worker_config(3));
    let hook = |path: &str| {
        let mut task = NewTask::new(
            "webhook",
            json!({"url": format!("{target}{path}"), "body": {"order": 7}, "headers": {"X-Token": "s3cret"}}),
        );
        task.max_retries = 1;
        task
    };
    let created = store.create_tasks(&[hook("/ok"), hook("/bad"), hook("/down")]).await.unwrap();
    let [ok, bad, down] = [0, 1, 2].map(|i| created[i].task.id);

    let ok = wait_for_status(&*store, ok, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!(ok.result, Some(json!({"received": true})));
    let bad = wait_for_status(&*store, bad, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(bad.retry_count, 0, "a 4xx is fatal");
    assert!(bad.last_error.unwrap().contains("400 Bad Request: no such order"));
    let down = wait_for_status(&*store, down, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(down.retry_count, 1, "a 5xx is retried");
    assert!(down.last_error.unwrap().contains("503"));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&("/ok s3cret".to_owned(), json!({"order": 7}))), "{seen:?}");
    assert_eq!(seen.iter().filter(|(path, _)| path.starts_with("/down")).count(), 2);
    worker.shutdown().await;
}

/// Starts a one-executor worker with a short lease grace and runs 200 instant tasks
/// through it, so that its averages say tasks are quick and it prefetches deeply.
async fn quick_trained_worker(store: &Arc<dyn Store>, recorder: &Recorder, grace: Duration) -> Worker {
    let mut config = worker_config(1);
    config.lease_grace = Duration::from_secs(1);
    config.shutdown_grace = grace;
    let worker = start(store, recorder.registry(), config);
    let quick: Vec<NewTask> = (0..200).map(|i| record(&format!("quick{i}"), json!({}))).collect();
    store.create_tasks(&quick).await.unwrap();
    wait_for("200 quick successes", DEADLINE, || {
        let store = store.clone();
        async move { (taskq::store::stats(&*store).await.unwrap().succeeded_tasks == 200).then_some(()) }
    })
    .await;
    worker
}

fn requeue_notes(history: &[taskq::store::HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e.event_type == EventType::TaskRequeued)
        .filter_map(|e| e.error_message.clone())
        .collect()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn prefetched_tasks_that_cannot_start_in_time_go_back_unstarted(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let metrics = taskq::metrics::handle();
    let recorder = Recorder::default();
    let worker = quick_trained_worker(&store, &recorder, Duration::from_secs(5)).await;
    // Ten slow tasks, claimed together: one executor needs 3 s for them, but a
    // prefetched task may wait only half the 1 s lease grace.
    let slow: Vec<NewTask> = (0..10).map(|i| record(&format!("slow{i}"), json!({"ms": 300}))).collect();
    let ids: Vec<_> = store.create_tasks(&slow).await.unwrap().into_iter().map(|c| c.task.id).collect();
    for id in &ids {
        wait_for_status(&*store, *id, TaskStatus::Succeeded, DEADLINE).await;
    }
    worker.shutdown().await;

    let runs = recorder.runs();
    for id in &ids {
        assert_eq!(runs.iter().filter(|run| run.task_id == *id).count(), 1, "task {id} ran once");
        assert_eq!(store.get_task(*id).await.unwrap().unwrap().retry_count, 0, "no retry was spent");
    }
    let mut released = 0;
    for id in &ids {
        let notes = requeue_notes(&store.history(*id).await.unwrap());
        assert!(notes.iter().all(|note| note.starts_with("released unstarted")), "{notes:?}");
        released += usize::from(!notes.is_empty());
    }
    assert!(released >= 3, "only {released} of 10 slow tasks went back to the queue unstarted");
    let rendered = metrics.render();
    for line in ["taskq_tasks_released_total{reason=\"not_started\"}", "taskq_tasks_prefetched{worker_id="] {
        assert!(rendered.contains(line), "/metrics lacks {line}");
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn shutdown_releases_prefetched_tasks_at_once(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let recorder = Recorder::default();
    let worker = quick_trained_worker(&store, &recorder, Duration::from_millis(200)).await;
    let slow: Vec<NewTask> = (0..10).map(|i| record(&format!("slow{i}"), json!({"ms": 5000}))).collect();
    let ids: Vec<_> = store.create_tasks(&slow).await.unwrap().into_iter().map(|c| c.task.id).collect();
    wait_for("the slow tasks to be claimed", DEADLINE, || {
        let store = store.clone();
        async move { (taskq::store::stats(&*store).await.unwrap().running_tasks >= 5).then_some(()) }
    })
    .await;

    let began = std::time::Instant::now();
    worker.shutdown().await;
    assert!(began.elapsed() < Duration::from_secs(3), "shutdown took {:?}", began.elapsed());
    for id in &ids {
        let task = store.get_task(*id).await.unwrap().unwrap();
        assert_eq!((task.status, task.retry_count), (TaskStatus::Queued, 0), "task {id} released");
        let notes = requeue_notes(&store.history(*id).await.unwrap());
        assert_eq!(notes.last().map(String::as_str), Some(ReleaseReason::Shutdown.note()));
    }
}

#[actix_rt::test]
async fn a_task_committed_while_a_claim_missed_it_is_claimed_without_waiting_for_the_poll() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    // Every claimed row takes a second, after the claim took its snapshot: a task
    // committed meanwhile is invisible to that claim, which comes back short.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        r#"
        CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
        CREATE TRIGGER slow_claim BEFORE UPDATE ON tasks FOR EACH ROW
            WHEN (OLD.status = 'queued' AND NEW.status = 'running') EXECUTE FUNCTION slow_claim();
        "#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut config = worker_config(5);
    // Only a wake-up can start a claim within the test's deadline.
    config.poll_interval = Duration::from_secs(600);
    let worker = start(&store, Registry::with_builtins(0.01), config);
    taskq::bench::wait_listening(&mut conn, 1).await.unwrap();

    let first = store.create_tasks(&[noop("first")]).await.unwrap()[0].task.id;
    // The claim that found `first` has taken its snapshot once its trigger sleeps.
    let watcher = sqlx::PgPool::connect(&db.url).await.unwrap();
    wait_for("the claim of the first task to be in flight", DEADLINE, || {
        let watcher = watcher.clone();
        async move {
            let sleeping: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            (sleeping > 0).then_some(())
        }
    })
    .await;
    let second = store.create_tasks(&[noop("second")]).await.unwrap()[0].task.id;

    wait_for_status(&*store, first, TaskStatus::Succeeded, DEADLINE).await;
    wait_for_status(&*store, second, TaskStatus::Succeeded, DEADLINE).await;
    worker.shutdown().await;
}
