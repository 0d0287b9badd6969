//! Long work, on both backends: snoozes, progress reports that restart an attempt's
//! deadline, and cancelling a running task (docs/design.md, "Long work").

use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use serde_json::json;
use taskq::actors::Worker;
use taskq::check::{self, Options};
use taskq::config::WorkerConfig;
use taskq::handlers::{Handler, HandlerError, HandlerResult, Registry, TaskContext};
use taskq::store::{AttemptRef, Backend, EventType, Failure, FailureKind, NewTask, Store, TaskStatus};

use crate::api::json_of;
use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(10);

fn worker_config() -> WorkerConfig {
    let mut config = test_config("unused").worker;
    config.concurrency = 2;
    config
}

fn start(store: &Arc<dyn Store>, registry: Registry) -> Worker {
    Worker::start(store.clone(), Arc::new(registry), worker_config())
}

/// `taskq check` finds nothing wrong with the database.
async fn checker_passes(url: &str) {
    let report = check::check(url, &Options::default()).await.unwrap();
    assert!(report.passed(), "{}: {:#?}", report.summary(), report.violations);
}

/// Snoozes its first `times` attempts for `ms` each, then succeeds.
struct NotYet {
    times: i32,
    ms: u64,
}

#[async_trait::async_trait]
impl Handler for NotYet {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        if task.attempt <= self.times {
            return Err(HandlerError::Snooze(Duration::from_millis(self.ms)));
        }
        Ok(Some(json!({ "attempt": task.attempt })))
    }
}

fn registry_with(name: &str, handler: impl Handler) -> Registry {
    let mut registry = Registry::with_builtins(0.01);
    registry.register(name, handler);
    registry
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_snooze_puts_the_task_back_for_later_without_spending_a_retry(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, registry_with("not_yet", NotYet { times: 2, ms: 300 }));
    let mut task = NewTask::new("not_yet", json!({}));
    task.max_retries = 0;
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;

    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!((done.attempt, done.retry_count, done.snooze_count), (3, 0, 2));
    assert_eq!(done.last_error, None, "a snooze is not an error");
    let history = store.history(id).await.unwrap();
    assert_eq!(
        event_types(&history),
        [
            "task_queued",
            "task_started",
            "task_snoozed",
            "task_started",
            "task_snoozed",
            "task_started",
            "task_succeeded"
        ]
    );
    for (snooze, next_start) in [(2, 3), (4, 5)] {
        let snoozed = &history[snooze];
        assert_eq!((snoozed.status, snoozed.retry_count), (TaskStatus::Queued, 0), "no retry spent");
        assert_eq!(snoozed.error_message.as_deref(), Some("snoozed for 300ms"));
        assert_eq!(snoozed.worker_id.as_deref(), Some(worker.id()));
        let due = snoozed.next_run_at.expect("a snooze says when the task runs again");
        let delay = due - snoozed.created_at;
        assert!((290..=400).contains(&delay.num_milliseconds()), "snoozed for {delay}");
        assert!(history[next_start].created_at >= due, "the next attempt waited for the snooze");
    }
    worker.shutdown().await;
    checker_passes(&db.url).await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_snooze_past_max_snoozes_fails_the_task_for_good(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, registry_with("never", NotYet { times: i32::MAX, ms: 10 }));
    let mut task = NewTask::new("never", json!({}));
    task.max_snoozes = 2;
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;

    let failed = wait_for_status(&*store, id, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(failed.last_error.as_deref(), Some("snoozed 3 times; max_snoozes is 2"));
    assert_eq!((failed.attempt, failed.snooze_count, failed.retry_count), (3, 2, 0), "no retry either");
    let history = store.history(id).await.unwrap();
    assert_eq!(
        &event_types(&history)[4..],
        ["task_snoozed", "task_started", "task_failed", "task_failed_final"]
    );
    worker.shutdown().await;
    checker_passes(&db.url).await;

    // A manual retry gives the task its snoozes back, as it does its retries.
    let taskq::store::Transition::Done(retried) = store.retry(id).await.unwrap() else {
        panic!("a failed task can be retried")
    };
    assert_eq!((retried.snooze_count, retried.retry_count), (0, 0));
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_snooze_write_is_fenced_by_worker_and_attempt(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("snoozed")]).await.unwrap()[0].task.id;
    store.claim("w", "default", 1, GRACE).await.unwrap();
    let snooze = |attempt| Failure {
        attempt: AttemptRef { task_id: id, attempt },
        kind: FailureKind::Snoozed,
        error: "snoozed for 1m".into(),
        retry_in: Some(Duration::from_secs(60)),
    };
    assert!(store.fail("other", &[snooze(1)]).await.unwrap().is_empty(), "another worker");
    assert!(store.fail("w", &[snooze(2)]).await.unwrap().is_empty(), "another attempt");
    assert_eq!(store.fail("w", &[snooze(1)]).await.unwrap(), [id]);

    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.retry_count, task.snooze_count), (TaskStatus::Queued, 0, 1));
    assert!(task.run_at > chrono::Utc::now() + chrono::Duration::seconds(55));
    let history = store.history(id).await.unwrap();
    assert_eq!(event_types(&history), ["task_queued", "task_started", "task_snoozed"]);
    let snoozed = history.last().unwrap();
    assert_eq!((snoozed.event_type, snoozed.next_run_at), (EventType::TaskSnoozed, Some(task.run_at)));
    assert!(store.claim("w", "default", 1, GRACE).await.unwrap().is_empty(), "not before its time");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_sleep_handler_snoozes_its_first_attempt_over_http(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .create(json!({"name": "later", "type": "sleep", "max_snoozes": 3,
                       "payload": {"ms": 10, "snooze_ms": 300}}))
        .await;
    assert_eq!((created["max_snoozes"].as_i64(), created["snooze_count"].as_i64()), (Some(3), Some(0)));
    let id = created["id"].as_str().unwrap();
    let done = app.wait_for_status(id, "succeeded", DEADLINE).await;
    assert_eq!((done["snooze_count"].as_i64(), done["retry_count"].as_i64()), (Some(1), Some(0)));
    assert_eq!(done["result"], json!({"slept_ms": 10}));
    let (_, history) = json_of(app.get(&format!("/api/tasks/{id}/history")).await).await;
    let snoozed = history.as_array().unwrap().iter().find(|e| e["event_type"] == "task_snoozed").unwrap();
    assert_eq!(snoozed["status"], "queued");
    assert!(snoozed["next_run_at"].is_string(), "{snoozed}");

    let default = app.create(json!({"name": "defaults", "type": "noop"})).await;
    assert_eq!(default["max_snoozes"], 25);
    for (body, problem) in [
        (json!({"name": "a", "type": "noop", "max_snoozes": 10_001}), "max_snoozes must be from 0 to 10000"),
        (json!({"name": "a", "type": "noop", "max_snoozes": -1}), "max_snoozes must be from 0 to 10000"),
        (
            json!({"name": "a", "type": "sleep", "payload": {"snooze_ms": "soon"}}),
            "payload.snooze_ms must be",
        ),
    ] {
        let (status, error) = json_of(app.post("/api/tasks", &body).await).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(problem), "{body}: {error}");
    }
    let rendered = taskq::metrics::handle().render();
    assert!(rendered.contains("taskq_task_snoozes_total{type=\"sleep\"}"), "/metrics counts snoozes");
    app.stop().await;
}
