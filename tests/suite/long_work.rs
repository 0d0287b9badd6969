//! Long work, on both backends: snoozes, progress reports that restart an attempt's
//! deadline, and cancelling a running task (docs/design.md, "Long work").

use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use serde_json::json;
use taskq::actors::Worker;
use taskq::check::{self, Options};
use taskq::config::WorkerConfig;
use taskq::handlers::{Handler, HandlerError, HandlerResult, ProgressError, Registry, TaskContext};
use taskq::store::{
    AttemptRef, Backend, EventType, Failure, FailureKind, NewTask, ProgressUpdate, Store, TaskStatus,
    Transition,
};

use crate::api::{json_of, read_events};
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
    let Transition::Done(retried) = store.retry(id).await.unwrap() else {
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

/// Reports `{"reports": n}` times, every `{"every_ms": ms}`, then hangs if `{"hang":
/// true}`, else succeeds. Records what each report answered.
#[derive(Clone, Default)]
struct Reports {
    answers: Arc<std::sync::Mutex<Vec<Result<(), ProgressError>>>>,
}

impl Reports {
    fn answers(&self) -> Vec<Result<(), ProgressError>> {
        self.answers.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Handler for Reports {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        let reports = task.payload["reports"].as_u64().unwrap_or(u64::MAX);
        let every = Duration::from_millis(task.payload["every_ms"].as_u64().unwrap_or(100));
        for n in 1..=reports {
            tokio::time::sleep(every).await;
            let answer =
                task.progress((n * 100 / reports.max(1)).min(100) as u8, format!("report {n}")).await;
            self.answers.lock().unwrap().push(answer.clone());
            answer?;
        }
        if task.payload["hang"] == true {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(None)
    }
}

fn reports(payload: serde_json::Value, timeout_seconds: i32) -> NewTask {
    let mut task = NewTask::new("reports", payload);
    (task.timeout_seconds, task.max_retries) = (timeout_seconds, 0);
    task
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_handler_that_reports_progress_runs_past_its_timeout(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let handler = Reports::default();
    let worker = start(&store, registry_with("reports", handler.clone()));
    // Five seconds of work under a two-second timeout (and a three-second lease: the
    // test's lease grace is 1 s), reporting every half second.
    let id =
        store.create_tasks(&[reports(json!({"reports": 10, "every_ms": 500}), 2)]).await.unwrap()[0].task.id;

    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!((done.attempt, done.retry_count), (1, 0), "one attempt, never timed out nor rescued");
    assert!(done.completed_at.unwrap() - done.started_at.unwrap() >= chrono::Duration::seconds(5));
    assert!(handler.answers().iter().all(Result::is_ok), "{:?}", handler.answers());
    let progress = done.progress.expect("the last report stays on the task");
    assert_eq!((progress.percent, progress.message.as_str(), progress.attempt), (100, "report 10", 1));
    let history = store.history(id).await.unwrap();
    assert_eq!(event_types(&history), ["task_queued", "task_started", "task_succeeded"]);
    assert_eq!(history[2].progress_at, Some(progress.at), "the success records the last report");
    worker.shutdown().await;
    checker_passes(&db.url).await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_handler_that_stops_reporting_is_stopped_its_timeout_after_its_last_report(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let worker = start(&store, registry_with("reports", Reports::default()));
    let payload = json!({"reports": 5, "every_ms": 300, "hang": true});
    let id = store.create_tasks(&[reports(payload, 2)]).await.unwrap()[0].task.id;

    let failed = wait_for_status(&*store, id, TaskStatus::Failed, DEADLINE).await;
    assert_eq!(failed.last_error.as_deref(), Some("timed out 2s after its last progress report"));
    let last_report = failed.progress.expect("it reported").at;
    let history = store.history(id).await.unwrap();
    assert_eq!(
        event_types(&history),
        ["task_queued", "task_started", "timeout_occurred", "task_failed_final"]
    );
    let timed_out = &history[2];
    assert_eq!(timed_out.progress_at, Some(last_report));
    // Stopped 2 s after its last report; the write that dates it comes up to 500 ms
    // after the report itself (reports are coalesced).
    let quiet = (timed_out.created_at - last_report).num_milliseconds();
    assert!((1400..3000).contains(&quiet), "stopped {quiet} ms after its last report was written");
    let ran = (timed_out.created_at - history[1].created_at).num_milliseconds();
    assert!(ran >= 3400, "ran {ran} ms: the reports moved the deadline past the first 2 s");
    worker.shutdown().await;
    checker_passes(&db.url).await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_report_on_an_attempt_that_is_no_longer_running_tells_the_handler(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let handler = Reports::default();
    let worker = start(&store, registry_with("reports", handler.clone()));
    let id = store.create_tasks(&[reports(json!({"every_ms": 600}), 60)]).await.unwrap()[0].task.id;
    wait_for("a first report", DEADLINE, || async { (!handler.answers().is_empty()).then_some(()) }).await;

    // The attempt ends under the handler (as a rescue would end it).
    let taken = Failure {
        attempt: AttemptRef { task_id: id, attempt: 1 },
        kind: FailureKind::Error,
        error: "taken away".into(),
        retry_in: None,
    };
    assert_eq!(store.fail(worker.id(), &[taken]).await.unwrap(), [id]);
    wait_for("the handler to hear of it", DEADLINE, || async {
        handler.answers().contains(&Err(ProgressError::Lost)).then_some(())
    })
    .await;
    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.last_error.as_deref()), (TaskStatus::Failed, Some("taken away")));
    worker.shutdown().await;
}

/// Counts the writes of `tasks.progress` in the test's database.
async fn count_progress_writes(db: &TestDb) {
    let statements: &[&str] = match db.backend {
        Backend::Postgres => &[
            "CREATE TABLE progress_writes (at timestamptz NOT NULL DEFAULT clock_timestamp())",
            "CREATE FUNCTION count_progress() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO progress_writes DEFAULT VALUES; RETURN NEW; END $$",
            "CREATE TRIGGER count_progress AFTER UPDATE OF progress ON tasks FOR EACH ROW \
             EXECUTE FUNCTION count_progress()",
        ],
        Backend::Sqlite => &[
            "CREATE TABLE progress_writes (n INTEGER)",
            "CREATE TRIGGER count_progress AFTER UPDATE OF progress ON tasks \
             BEGIN INSERT INTO progress_writes VALUES (1); END",
        ],
    };
    for statement in statements {
        match db.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }
}

async fn progress_writes(db: &TestDb) -> i64 {
    const COUNT: &str = "SELECT count(*) FROM progress_writes";
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar(COUNT).fetch_one(&pool).await.unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar(COUNT).fetch_one(&pool).await.unwrap()
        }
    }
}

/// Reports as fast as it can for 1.2 s, then waits for the last report's write.
struct Chatty;

#[async_trait::async_trait]
impl Handler for Chatty {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        let began = std::time::Instant::now();
        let mut n = 0u64;
        while began.elapsed() < Duration::from_millis(1200) {
            n += 1;
            task.progress((n % 101) as u8, format!("report {n}")).await?;
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        Ok(Some(json!({ "reports": n })))
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn reports_in_a_tight_loop_are_coalesced_and_the_latest_wins(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    count_progress_writes(&db).await;
    let worker = start(&store, registry_with("chatty", Chatty));
    let id = store.create_tasks(&[NewTask::new("chatty", json!({}))]).await.unwrap()[0].task.id;

    let done = wait_for_status(&*store, id, TaskStatus::Succeeded, DEADLINE).await;
    let reports = done.result.as_ref().unwrap()["reports"].as_u64().unwrap();
    let writes = progress_writes(&db).await;
    assert!(reports > 100, "only {reports} reports made");
    // One write at once, then at most one per 500 ms: 1.2 s of reports, and the last.
    assert!((2..=5).contains(&writes), "{writes} writes for {reports} reports");
    assert_eq!(done.progress.unwrap().message, format!("report {reports}"), "the latest report won");
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_progress_write_is_fenced_and_restarts_the_lease_without_a_state_change(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("long")]).await.unwrap()[0].task.id;
    let claimed = store.claim("w", "default", 1, GRACE).await.unwrap().remove(0);
    let report = |attempt, percent: u8| ProgressUpdate {
        attempt: AttemptRef { task_id: id, attempt },
        percent,
        message: format!("{percent} %"),
        lease: Duration::from_secs(3600),
    };
    assert!(store.report_progress("other", &[report(1, 10)]).await.unwrap().is_empty(), "another worker");
    assert!(store.report_progress("w", &[report(2, 10)]).await.unwrap().is_empty(), "another attempt");
    assert_eq!(store.report_progress("w", &[report(1, 40), report(1, 50)]).await.unwrap(), [id]);

    let task = store.get_task(id).await.unwrap().unwrap();
    let progress = task.progress.clone().unwrap();
    assert_eq!((progress.percent, progress.message.as_str(), progress.attempt), (50, "50 %", 1));
    assert!(
        task.locked_until.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(3500),
        "the lease restarted"
    );
    assert_eq!(task.updated_at, claimed.updated_at, "no state change");
    assert_eq!(event_types(&store.history(id).await.unwrap()), ["task_queued", "task_started"]);
    let running = store.running_progress().await.unwrap();
    assert_eq!((running[0].task_id, &running[0].progress), (id, &progress));

    let done = taskq::store::Completion { attempt: AttemptRef { task_id: id, attempt: 1 }, result: None };
    store.complete("w", &[done]).await.unwrap();
    assert!(store.running_progress().await.unwrap().is_empty());
    let history = store.history(id).await.unwrap();
    assert_eq!(history.last().unwrap().progress_at, Some(progress.at));
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn progress_shows_in_the_api_and_the_live_stream(#[case] backend: Backend) {
    let _alone = STREAM_TESTS.lock().await;
    let app = spawn_app(backend).await;
    let stream = app.get("/api/tasks/stream").await;
    // Three seconds of sleep under a one-second timeout: the reports carry it through.
    let created = app
        .create(json!({"name": "long", "type": "sleep", "timeout_seconds": 1,
                       "payload": {"ms": 3000, "progress": true}}))
        .await;
    assert_eq!(created["progress"], serde_json::Value::Null, "none before the first report");
    let id = created["id"].as_str().unwrap().to_owned();
    let running = wait_for("a report in the task's JSON", DEADLINE, || async {
        let (_, task) = json_of(app.get(&format!("/api/tasks/{id}")).await).await;
        (task["status"] == "running" && task["progress"].is_object()).then_some(task)
    })
    .await;
    let percent = running["progress"]["percent"].as_u64().unwrap();
    assert!((10..=100).contains(&percent), "{running}");
    let (_, list) = json_of(app.get("/api/tasks?status=running").await).await;
    assert!(list["tasks"][0]["progress"]["message"].as_str().unwrap().starts_with("slept "), "{list}");

    let events = read_events(stream, |events| {
        events.iter().any(|(name, e)| name == "progress" && e["task_id"] == id.as_str())
    })
    .await;
    let (_, report) = events.iter().find(|(name, _)| name == "progress").unwrap();
    assert_eq!(report["progress"]["attempt"], 1);
    assert!(report["progress"]["message"].as_str().unwrap().contains(" of 3000 ms"), "{report}");

    let done = app.wait_for_status(&id, "succeeded", DEADLINE).await;
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["progress"]["percent"], 100);
    assert_eq!(done["progress"]["message"], "slept 3000 of 3000 ms");
    let rendered = taskq::metrics::handle().render();
    assert!(rendered.contains("taskq_progress_writes_total"), "/metrics counts progress writes");
    app.stop().await;
}

/// Works until its task's cancel is requested (or `{"ms": n}` pass), then stops with a
/// retryable error; or, with `{"ignore": true}`, pays no attention and works on.
#[derive(Clone, Default)]
struct Cancellable {
    /// When each run heard of its cancel.
    heard: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

#[async_trait::async_trait]
impl Handler for Cancellable {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        let work = tokio::time::sleep(Duration::from_millis(task.payload["ms"].as_u64().unwrap_or(60_000)));
        if task.payload["ignore"] == true {
            work.await;
            return Ok(Some(json!("done")));
        }
        tokio::select! {
            () = work => Ok(Some(json!("done"))),
            () = task.cancelled() => {
                self.heard.lock().unwrap().push(std::time::Instant::now());
                assert!(task.is_cancelled());
                assert_eq!(task.progress(50, "too late").await, Err(ProgressError::Cancelled));
                Err(HandlerError::Retryable("interrupted".into()))
            }
        }
    }
}

/// A `cancellable` task running on a worker whose handlers get `grace` to stop after a
/// cancel request.
struct Running {
    db: TestDb,
    store: Arc<dyn Store>,
    worker: Worker,
    id: uuid::Uuid,
}

impl Running {
    async fn start(
        backend: Backend,
        handler: Cancellable,
        grace: Duration,
        payload: serde_json::Value,
    ) -> Self {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let mut config = worker_config();
        config.cancel_grace = grace;
        let worker = Worker::start(store.clone(), Arc::new(registry_with("cancellable", handler)), config);
        let mut task = NewTask::new("cancellable", payload);
        task.max_retries = 3;
        let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;
        wait_for_status(&*store, id, TaskStatus::Running, DEADLINE).await;
        Self { db, store, worker, id }
    }

    async fn history(&self) -> Vec<taskq::store::HistoryEvent> {
        self.store.history(self.id).await.unwrap()
    }

    /// Waits a while, proves the cancelled task never ran again, and checks the database.
    async fn stays_cancelled(self) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let task = self.store.get_task(self.id).await.unwrap().unwrap();
        assert_eq!(
            (task.status, task.attempt, task.retry_count),
            (TaskStatus::Cancelled, 1, 0),
            "not retried"
        );
        self.worker.shutdown().await;
        checker_passes(&self.db.url).await;
    }
}

fn last_note(history: &[taskq::store::HistoryEvent]) -> String {
    history.last().and_then(|e| e.error_message.clone()).unwrap_or_default()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_cancelled_running_task_is_stopped_by_its_handler_within_a_second_and_not_retried(
    #[case] backend: Backend,
) {
    let handler = Cancellable::default();
    let run = Running::start(backend, handler.clone(), Duration::from_secs(10), json!({})).await;

    let asked = std::time::Instant::now();
    run.store.cancel(run.id, Some("changed my mind")).await.unwrap();
    let cancelled = wait_for_status(&*run.store, run.id, TaskStatus::Cancelled, DEADLINE).await;
    let heard = handler.heard.lock().unwrap()[0];
    assert!(heard - asked < Duration::from_secs(1), "the handler heard after {:?}", heard - asked);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("changed my mind"));
    let history = run.history().await;
    assert_eq!(event_types(&history), ["task_queued", "task_started", "task_cancelled"]);
    assert_eq!(last_note(&history), "cancelled by the API (reason: changed my mind); stopped by its handler");
    assert_eq!(history[2].worker_id.as_deref(), Some(run.worker.id()));
    run.stays_cancelled().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_handler_that_ignores_a_cancel_is_aborted_after_the_grace(#[case] backend: Backend) {
    let payload = json!({"ignore": true});
    let run = Running::start(backend, Cancellable::default(), Duration::from_millis(500), payload).await;

    let asked = std::time::Instant::now();
    run.store.cancel(run.id, None).await.unwrap();
    wait_for_status(&*run.store, run.id, TaskStatus::Cancelled, DEADLINE).await;
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "cancelled after {took:?}");
    let history = run.history().await;
    assert_eq!(event_types(&history), ["task_queued", "task_started", "task_cancelled"]);
    assert_eq!(last_note(&history), "cancelled by the API; aborted after the 500ms grace");
    run.stays_cancelled().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_handler_that_succeeds_before_it_notices_a_cancel_keeps_its_success(#[case] backend: Backend) {
    let payload = json!({"ignore": true, "ms": 700});
    let run = Running::start(backend, Cancellable::default(), Duration::from_secs(10), payload).await;
    run.store.cancel(run.id, None).await.unwrap();

    let done = wait_for_status(&*run.store, run.id, TaskStatus::Succeeded, DEADLINE).await;
    assert_eq!(done.result, Some(json!("done")));
    assert!(done.cancel_requested_at.is_some(), "the request stays on record");
    run.worker.shutdown().await;
    checker_passes(&run.db.url).await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_cancel_whose_notification_was_lost_is_found_by_the_workers_poll(#[case] backend: Backend) {
    let run = Running::start(backend, Cancellable::default(), Duration::from_secs(10), json!({})).await;

    // The request as the store writes it, without its NOTIFY (or in-process wake-up).
    let mark = "UPDATE tasks SET cancel_requested_at = updated_at WHERE id = $1";
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&run.db.url).await.unwrap();
            sqlx::query(mark).bind(run.id).execute(&pool).await.unwrap();
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&run.db.url).await.unwrap();
            sqlx::query(mark).bind(run.id).execute(&pool).await.unwrap();
        }
    }
    let asked = std::time::Instant::now();
    wait_for_status(&*run.store, run.id, TaskStatus::Cancelled, DEADLINE).await;
    assert!(asked.elapsed() < Duration::from_millis(1500), "found after {:?}", asked.elapsed());
    assert_eq!(last_note(&run.history().await), "cancelled by the API; stopped by its handler");
    run.stays_cancelled().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn every_outcome_of_a_cancel_requested_attempt_ends_its_task_cancelled(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let names = ["retried", "snoozed", "released", "rescued", "succeeded"];
    let created = store.create_tasks(&names.map(noop)).await.unwrap();
    let ids: Vec<uuid::Uuid> = created.iter().map(|c| c.task.id).collect();
    store
        .heartbeat(&taskq::store::WorkerInfo {
            worker_id: "w".into(),
            concurrency: 5,
            running: 5,
            started_at: chrono::Utc::now(),
            last_seen_at: chrono::Utc::now(),
            queues: "default=5".into(),
        })
        .await
        .unwrap();
    store.claim("w", "default", 5, GRACE).await.unwrap();
    for (id, reason) in ids.iter().zip([Some("first"), None, None, None, None]) {
        store.cancel(*id, reason).await.unwrap();
    }
    // A second request keeps the first's time and reason.
    let Transition::Done(again) = store.cancel(ids[0], Some("second")).await.unwrap() else { panic!() };
    assert_eq!(again.cancel_reason.as_deref(), Some("first"));

    let attempt = |id| AttemptRef { task_id: id, attempt: 1 };
    let failure = |id, kind, retry_in| Failure { attempt: attempt(id), kind, error: "boom".into(), retry_in };
    let retry = failure(ids[0], FailureKind::Error, Some(Duration::ZERO));
    let snooze = failure(ids[1], FailureKind::Snoozed, Some(Duration::ZERO));
    assert_eq!(store.fail("w", &[retry, snooze]).await.unwrap().len(), 2);
    store.release("w", &[attempt(ids[2])], taskq::store::ReleaseReason::Shutdown).await.unwrap();
    store.deregister("w").await.unwrap();
    // The Rescuer decides a retry, as it would for any lost attempt.
    assert!(store.rescue(10, &|_| Some(Duration::ZERO)).await.unwrap().contains(&ids[3]));
    let done = taskq::store::Completion { attempt: attempt(ids[4]), result: None };
    assert_eq!(store.complete("w", &[done]).await.unwrap().len(), 0, "the rescue took it too");

    let notes = [
        "cancelled by the API (reason: first); stopped by its handler",
        "cancelled by the API; stopped by its handler",
        "cancelled by the API; its worker shut down",
        "cancelled by the API; its worker was lost",
    ];
    for (id, note) in ids.iter().zip(notes) {
        let task = store.get_task(*id).await.unwrap().unwrap();
        assert_eq!(
            (task.status, task.retry_count, task.snooze_count),
            (TaskStatus::Cancelled, 0, 0),
            "{note}"
        );
        let history = store.history(*id).await.unwrap();
        assert_eq!(event_types(&history), ["task_queued", "task_started", "task_cancelled"], "{note}");
        assert_eq!(last_note(&history), note);
    }
    checker_passes(&db.url).await;

    // A manual retry clears the request: the task runs again as any other.
    let Transition::Done(retried) = store.retry(ids[0]).await.unwrap() else { panic!("retry") };
    assert_eq!(
        (retried.status, retried.cancel_requested_at, retried.cancel_reason),
        (TaskStatus::Queued, None, None)
    );
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn cancel_over_http_stops_a_running_task_with_its_reason(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create(json!({"name": "long", "type": "sleep", "payload": {"ms": 60_000}})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "running", DEADLINE).await;
    let cancel = format!("/api/tasks/{id}/cancel");
    for (body, problem) in [
        (json!({"reason": ""}), "reason must not be empty"),
        (json!({"reason": 5}), "invalid JSON body"),
        (json!({"why": "x"}), "unknown field `why`"),
    ] {
        let (status, error) = json_of(app.post(&cancel, &body).await).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(problem), "{body}: {error}");
    }

    let (status, requested) = json_of(app.post(&cancel, &json!({"reason": "too slow"})).await).await;
    assert_eq!((status, requested["status"].as_str()), (200, Some("running")), "{requested}");
    assert_eq!(requested["cancel_reason"], "too slow");
    assert!(requested["cancel_requested_at"].is_string(), "{requested}");
    let cancelled = app.wait_for_status(&id, "cancelled", DEADLINE).await;
    assert_eq!(cancelled["retry_count"], 0);
    let (_, history) = json_of(app.get(&format!("/api/tasks/{id}/history")).await).await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "task_cancelled");
    assert_eq!(last["error_message"], "cancelled by the API (reason: too slow); stopped by its handler");
    let (status, conflict) = json_of(app.post(&cancel, &json!({})).await).await;
    assert_eq!((status, conflict["status"].as_str()), (409, Some("cancelled")));

    // As TaskQueue-Go's clients do it: no body at all, on a queued task.
    let later = app.create(json!({"name": "later", "type": "noop", "delay_seconds": 3600})).await;
    let bare = app.client.post(app.url(&format!("/api/tasks/{}/cancel", later["id"].as_str().unwrap())));
    let (status, cancelled) = json_of(bare.send().await.unwrap()).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")));
    let rendered = taskq::metrics::handle().render();
    assert!(rendered.contains("taskq_cancelled_attempts_total{stopped=\"handler\"}"), "/metrics counts them");
    app.stop().await;
}
