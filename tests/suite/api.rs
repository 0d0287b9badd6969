//! The HTTP API, spawned for real on port 0 with a fresh database of each backend.

use std::time::Duration;

use futures_util::StreamExt;
use rstest::rstest;
use serde_json::{Value, json};
use taskq::handlers::Registry;
use taskq::store::Backend;

use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(20);

pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON ({status}): {body}")))
}

/// `send_email` with a known outcome: delivers at once and says to whom (the demo
/// handler of that name fails a quarter of its runs at random).
struct Deliver;

#[async_trait::async_trait]
impl taskq::handlers::Handler for Deliver {
    async fn run(&self, task: taskq::handlers::TaskContext) -> taskq::handlers::HandlerResult {
        Ok(Some(json!({ "delivered_to": task.payload["to"] })))
    }
}

/// An RFC 3339 time of a JSON answer, or a panic naming the field.
fn time_of(value: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    let text = value[field].as_str().unwrap_or_else(|| panic!("{field} is not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{field}: {e}: {text}")).to_utc()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_original_api_creates_runs_and_reports_a_task(#[case] backend: Backend) {
    let mut registry = Registry::with_builtins(0.01);
    registry.register("send_email", Deliver);
    let app = spawn_app_with(backend, registry, |_| {}).await;
    let created = app
        .create(json!({"name": "Test Email", "type": "send_email", "priority": 5,
                       "payload": {"to": "user@example.com", "subject": "Test", "body": "hi"}}))
        .await;
    let id = created["id"].as_str().expect("id is a string").to_owned();
    uuid::Uuid::parse_str(&id).expect("id is a UUID");
    assert_eq!(created["name"], "Test Email");
    assert_eq!(created["type"], "send_email");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["priority"], 5);
    assert_eq!(created["retry_count"], 0);
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["payload"], json!({"to": "user@example.com", "subject": "Test", "body": "hi"}));
    time_of(&created, "created_at");

    // A second task fails once, waits its one retry out (at least 1 s) and fails for good.
    let failing = app
        .create(json!({"name": "Bounce", "type": "fail", "max_retries": 1, "backoff_seconds": 0,
                       "payload": {"message": "mailbox full"}}))
        .await;
    let failing_id = failing["id"].as_str().unwrap().to_owned();

    let task = app.wait_for_status(&id, "succeeded", DEADLINE).await;
    assert_eq!(task["id"], id.as_str());
    assert_eq!((task["name"].as_str(), task["type"].as_str()), (Some("Test Email"), Some("send_email")));
    assert_eq!(task["payload"], created["payload"]);
    assert_eq!((task["priority"].as_i64(), task["retry_count"].as_i64()), (Some(5), Some(0)));
    assert_eq!((task["max_retries"].as_i64(), task["timeout_seconds"].as_i64()), (Some(3), Some(30)));
    assert_eq!(task["result"], json!({"delivered_to": "user@example.com"}));
    assert_eq!(task["last_error"], Value::Null);
    assert!(task["worker_id"].as_str().is_some_and(|w| w.starts_with("test-worker-")), "{task}");
    let (created_at, started_at) = (time_of(&task, "created_at"), time_of(&task, "started_at"));
    let completed_at = time_of(&task, "completed_at");
    assert!(created_at <= started_at && started_at <= completed_at, "{task}");
    assert!(time_of(&task, "run_at") <= started_at && time_of(&task, "updated_at") >= completed_at);

    let failed = app.wait_for_status(&failing_id, "failed", DEADLINE).await;
    assert_eq!((failed["retry_count"].as_i64(), failed["max_retries"].as_i64()), (Some(1), Some(1)));
    assert_eq!(failed["last_error"], "mailbox full");
    assert_eq!(failed["result"], Value::Null);
    time_of(&failed, "completed_at");

    let (status, history) = json_of(app.get(&format!("/api/tasks/{id}/history")).await).await;
    assert_eq!(status, 200);
    let history = history.as_array().expect("history is an array");
    let steps: Vec<_> = history.iter().map(|e| (e["event_type"].as_str(), e["status"].as_str())).collect();
    assert_eq!(
        steps,
        [
            (Some("task_queued"), Some("queued")),
            (Some("task_started"), Some("running")),
            (Some("task_succeeded"), Some("succeeded"))
        ]
    );
    for event in history {
        assert_eq!(event["task_id"], id.as_str());
        assert_eq!(event["retry_count"], 0);
        assert_eq!((&event["error_message"], &event["next_run_at"]), (&Value::Null, &Value::Null));
        time_of(event, "created_at");
    }
    assert_eq!(history[0]["worker_id"], Value::Null);
    assert_eq!(history[1]["worker_id"], task["worker_id"]);

    let (status, stats) = json_of(app.get("/api/stats").await).await;
    assert_eq!(status, 200);
    let counts = [
        ("total_tasks", 2),
        ("queued_tasks", 0),
        ("running_tasks", 0),
        ("succeeded_tasks", 1),
        ("failed_tasks", 1),
        ("tasks_with_retries", 1),
        ("cancelled_tasks", 0),
        ("scheduled_tasks", 0),
        ("live_workers", 1),
    ];
    for (field, expected) in counts {
        assert_eq!(stats[field].as_i64(), Some(expected), "{field}: {stats}");
    }
    assert_eq!(stats["avg_retry_count"].as_f64(), Some(0.5), "one retry over two tasks: {stats}");
    assert_eq!(stats["oldest_runnable_age_seconds"], Value::Null, "nothing is runnable");
    let minutes = stats["throughput"]["per_minute"].as_array().expect("throughput.per_minute");
    let total = |field: &str| minutes.iter().map(|m| m[field].as_i64().unwrap()).sum::<i64>();
    assert_eq!((total("succeeded"), total("failed")), (1, 1), "{stats}");
    assert_eq!(
        json_of(app.get("/health").await).await,
        (200, json!({"status": "healthy", "database": "connected"}))
    );
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn bad_requests_get_a_json_error_naming_the_problem_and_store_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", "{\"name\": ".into(), 400, "invalid JSON"),
        ("not an object", "[1, 2]".into(), 400, "invalid JSON"),
        ("missing name", json!({"type": "noop"}).to_string(), 400, "name is required"),
        ("empty name", json!({"name": " ", "type": "noop"}).to_string(), 400, "name must not be empty"),
        ("long name", json!({"name": "n".repeat(256), "type": "noop"}).to_string(), 400, "at most 255"),
        ("missing type", json!({"name": "a"}).to_string(), 400, "type is required"),
        (
            "unknown type",
            json!({"name": "a", "type": "teleport"}).to_string(),
            400,
            "not a registered task type",
        ),
        (
            "unknown field",
            json!({"name": "a", "type": "noop", "max_retry": 1}).to_string(),
            400,
            "unknown field `max_retry`",
        ),
        (
            "wrong type",
            json!({"name": "a", "type": "noop", "priority": "high"}).to_string(),
            400,
            "invalid type",
        ),
        (
            "priority range",
            json!({"name": "a", "type": "noop", "priority": 5000}).to_string(),
            400,
            "priority must be from -1000 to 1000",
        ),
        (
            "retries range",
            json!({"name": "a", "type": "noop", "max_retries": -1}).to_string(),
            400,
            "max_retries must be",
        ),
        (
            "timeout range",
            json!({"name": "a", "type": "noop", "timeout_seconds": 0}).to_string(),
            400,
            "timeout_seconds must be",
        ),
        (
            "huge number",
            json!({"name": "a", "type": "noop", "priority": 1e300}).to_string(),
            400,
            "expected a whole number",
        ),
        (
            "payload not object",
            json!({"name": "a", "type": "noop", "payload": [1]}).to_string(),
            400,
            "payload must be a JSON object",
        ),
        ("NUL in name", json!({"name": "a\u{0}b", "type": "noop"}).to_string(), 400, "NUL"),
        (
            "NUL in payload",
            json!({"name": "a", "type": "noop", "payload": {"k": "\u{0}"}}).to_string(),
            400,
            "NUL",
        ),
        (
            "handler validation",
            json!({"name": "a", "type": "send_email", "payload": {"to": "x"}}).to_string(),
            400,
            "payload.subject is required",
        ),
        (
            "both schedules",
            json!({"name": "a", "type": "noop", "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"})
                .to_string(),
            400,
            "cannot both",
        ),
        (
            "bad run_at",
            json!({"name": "a", "type": "noop", "run_at": "tomorrow"}).to_string(),
            400,
            "invalid JSON",
        ),
        (
            "deep nesting",
            format!(
                "{{\"name\":\"a\",\"type\":\"noop\",\"payload\":{}{}}}",
                "{\"a\":".repeat(200),
                "}".repeat(200)
            ),
            400,
            "invalid JSON",
        ),
        (
            "payload over 1 MiB",
            json!({"name": "a", "type": "noop", "payload": {"blob": big}}).to_string(),
            413,
            "the limit is",
        ),
    ];
    for (what, body, expected, needle) in cases {
        let response = app
            .client
            .post(app.url("/api/tasks"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, error) = json_of(response).await;
        assert_eq!(status, expected, "{what}: {error}");
        let message = error["error"].as_str().unwrap_or_else(|| panic!("{what}: no error field: {error}"));
        assert!(message.contains(needle), "{what}: {message:?} does not mention {needle:?}");
        assert!(!message.to_lowercase().contains("sqlx"), "{what}: leaks internals: {message}");
    }
    let (_, unknown) = json_of(app.post("/api/tasks", &json!({"name": "a", "type": "nope"})).await).await;
    assert_eq!(
        unknown["known_types"],
        json!(["fail", "noop", "run_query", "send_email", "sleep", "webhook"])
    );
    let (_, stats) = json_of(app.get("/api/stats").await).await;
    assert_eq!(stats["total_tasks"], 0, "no rejected request stored a task");
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn unknown_and_malformed_ids_are_not_found(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/tasks/{unknown}"),
        format!("/api/tasks/{unknown}/history"),
        "/api/tasks/not-a-uuid".into(),
        "/api/tasks/1%27%20OR%201=1/history".into(),
    ] {
        let (status, body) = json_of(app.get(&path).await).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("task not found")), "{path}");
    }
    for action in ["cancel", "retry"] {
        let (status, _) =
            json_of(app.post(&format!("/api/tasks/{unknown}/{action}"), &json!({})).await).await;
        assert_eq!(status, 404);
    }
    let (status, _) = json_of(app.get("/api/nothing-here").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn tasks_are_listed_newest_first_page_by_page_with_filters(#[case] backend: Backend) {
    let app =
        spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server)
            .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { "noop" } else { "sleep" };
        ids.push(
            app.create(json!({"name": format!("t{i}"), "type": kind, "delay_seconds": 3600})).await["id"]
                .clone(),
        );
    }
    let (_, first) = json_of(app.get("/api/tasks?limit=2").await).await;
    assert_eq!(
        first["tasks"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect::<Vec<_>>(),
        [json!("t4"), json!("t3")]
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = json_of(app.get(&format!("/api/tasks?limit=2&cursor={cursor}")).await).await;
    assert_eq!(second["tasks"][0]["name"], "t2");
    let (_, sleeps) = json_of(app.get("/api/tasks?type=SLEEP&status=queued").await).await;
    assert_eq!(sleeps["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(sleeps["next_cursor"], Value::Null);
    for bad in ["status=done", "limit=0", "limit=501", "cursor=xyz", "colour=red"] {
        let (status, body) = json_of(app.get(&format!("/api/tasks?{bad}")).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn cancel_and_retry_move_tasks_or_answer_409(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let later = app.create(json!({"name": "later", "type": "noop", "delay_seconds": 3600})).await;
    let id = later["id"].as_str().unwrap();
    let (status, cancelled) = json_of(app.post(&format!("/api/tasks/{id}/cancel"), &json!({})).await).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")));
    let (status, conflict) = json_of(app.post(&format!("/api/tasks/{id}/cancel"), &json!({})).await).await;
    assert_eq!((status, conflict["status"].as_str()), (409, Some("cancelled")));

    let failing = app.create(json!({"name": "f", "type": "fail", "payload": {"fatal": true}})).await;
    let fid = failing["id"].as_str().unwrap();
    app.wait_for_status(fid, "failed", DEADLINE).await;
    let (status, retried) = json_of(app.post(&format!("/api/tasks/{fid}/retry"), &json!({})).await).await;
    assert_eq!((status, retried["retry_count"].as_i64()), (200, Some(0)));
    app.wait_for_status(fid, "failed", DEADLINE).await;
    let (_, history) = json_of(app.get(&format!("/api/tasks/{fid}/history")).await).await;
    let events: Vec<_> =
        history.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "task_queued",
            "task_started",
            "task_failed",
            "task_failed_final",
            "task_requeued",
            "task_started",
            "task_failed",
            "task_failed_final"
        ]
    );
    let ok = app.create(json!({"name": "ok", "type": "noop"})).await;
    let oid = ok["id"].as_str().unwrap();
    app.wait_for_status(oid, "succeeded", DEADLINE).await;
    let (status, _) = json_of(app.post(&format!("/api/tasks/{oid}/retry"), &json!({})).await).await;
    assert_eq!(status, 409, "a succeeded task is not retried");
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn concurrent_repeats_of_an_idempotency_key_create_one_task(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"name": "charge", "type": "noop", "idempotency_key": "charge-7", "delay_seconds": 60});
    let answers = futures_util::future::join_all((0..20).map(|_| app.post("/api/tasks", &body))).await;
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        let (status, task) = json_of(answer).await;
        assert!(status == 201 || status == 200, "{status}: {task}");
        created += usize::from(status == 201);
        ids.insert(task["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((created, ids.len()), (1, 1));
    let (_, stats) = json_of(app.get("/api/stats").await).await;
    assert_eq!(stats["total_tasks"], 1);
    app.stop().await;
}

/// Runs SQL on a test app's database, whichever its backend.
async fn execute_sql(db: &TestDb, sql: &str) {
    match db.backend {
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// A count from the test app's database.
async fn count_sql(db: &TestDb, sql: &str) -> i64 {
    match db.backend {
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_batch_is_created_all_or_nothing(#[case] backend: Backend) {
    // No worker: the history holds exactly the `task_queued` events of what was created.
    let app =
        spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server)
            .await;
    let batch = |prefix: &str| -> Vec<Value> {
        (0..1000).map(|i| json!({"name": format!("{prefix}{i}"), "type": "noop"})).collect()
    };
    let (status, created) = json_of(app.post("/api/tasks/batch", &json!({"tasks": batch("b")})).await).await;
    assert_eq!(status, 201);
    assert_eq!(created["tasks"].as_array().unwrap().len(), 1000);

    // Validation refuses a batch before the database sees it...
    let mut invalid = batch("v");
    invalid[500] = json!({"name": "v500", "type": "noop", "priority": 99999});
    let (status, error) = json_of(app.post("/api/tasks/batch", &json!({"tasks": invalid})).await).await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("tasks[500].priority"), "{error}");
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"name": format!("x{i}"), "type": "noop"})).collect();
    let (status, _) = json_of(app.post("/api/tasks/batch", &json!({"tasks": too_many})).await).await;
    assert_eq!(status, 400);

    // ...and the database refuses one row of a valid batch, after the 500 rows before
    // it were written in the same transaction: none of them, nor their history, remains.
    execute_sql(
        &app.db,
        match backend {
            Backend::Postgres => {
                "CREATE FUNCTION refuse_r500() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
                 CREATE TRIGGER refuse_r500 BEFORE INSERT ON tasks FOR EACH ROW \
                 WHEN (NEW.name = 'r500') EXECUTE FUNCTION refuse_r500();"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_r500 BEFORE INSERT ON tasks WHEN NEW.name = 'r500' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
            }
        },
    )
    .await;
    let (status, error) = json_of(app.post("/api/tasks/batch", &json!({"tasks": batch("r")})).await).await;
    assert_eq!(status, 500, "{error}");
    assert_eq!(error["error"], "internal error", "the database's message stays in the log");

    assert_eq!(count_sql(&app.db, "SELECT count(*) FROM tasks WHERE name LIKE 'r%'").await, 0);
    assert_eq!(count_sql(&app.db, "SELECT count(*) FROM tasks").await, 1000, "only the first batch");
    assert_eq!(
        count_sql(&app.db, "SELECT count(*) FROM task_history").await,
        1000,
        "only the first batch's task_queued events"
    );
    assert_eq!(
        count_sql(&app.db, "SELECT count(*) FROM task_history WHERE task_id NOT IN (SELECT id FROM tasks)")
            .await,
        0,
        "no history of a task that does not exist"
    );
    let (_, stats) = json_of(app.get("/api/stats").await).await;
    assert_eq!(stats["total_tasks"], 1000, "the counters saw nothing of the refused batches");
    app.stop().await;
}

#[actix_rt::test]
async fn with_api_token_set_every_api_route_needs_a_valid_bearer_token() {
    let app = spawn_app_with(Backend::Sqlite, Registry::with_builtins(0.01), |c| {
        c.api_tokens = vec!["current".into(), "previous".into()];
    })
    .await;
    for path in ["/api/stats", "/api/tasks", "/api/task-types", "/api/tasks/stream"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let wrong = app.client.get(app.url(path)).bearer_auth("guess").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    for token in ["current", "previous"] {
        let ok = app.client.get(app.url("/api/stats")).bearer_auth(token).send().await.unwrap();
        assert_eq!(ok.status(), 200, "token {token}");
    }
    for open in ["/livez", "/health", "/metrics", "/"] {
        assert_eq!(app.get(open).await.status(), 200, "{open} stays open for probes and the page itself");
    }
    let response = app
        .client
        .get(app.url("/api/stats"))
        .header("Origin", "https://evil.example")
        .bearer_auth("current")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "no CORS unless configured");
    app.stop().await;
}

/// A live stream's frames as `(event name, data)`, read as far as a test needs.
struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
    events: Vec<(String, Value)>,
}

impl Events {
    fn of(response: reqwest::Response) -> Self {
        let stream = response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec())).boxed();
        Self { stream, buffer: String::new(), events: Vec::new() }
    }

    /// Reads on until `enough` says stop (within the deadline); returns every event so far.
    async fn until(&mut self, mut enough: impl FnMut(&[(String, Value)]) -> bool) -> &[(String, Value)] {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !enough(&self.events) {
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("events in time")
                .unwrap()
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let name =
                    frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("message").to_owned();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    self.events.push((name, serde_json::from_str(data).unwrap()));
                }
            }
        }
        &self.events
    }
}

/// Reads SSE frames from a response until `enough` says stop.
pub async fn read_events(
    response: reqwest::Response,
    enough: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    Events::of(response).until(enough).await.to_vec()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_stream_sends_stats_and_task_events(#[case] backend: Backend) {
    let _alone = STREAM_TESTS.lock().await;
    let app = spawn_app(backend).await;
    let response = app.get("/api/tasks/stream").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first = read_events(response, |events| !events.is_empty()).await;
    assert_eq!(first[0].0, "stats");
    let stream = app.get("/api/tasks/stream").await;
    let created = app.create(json!({"name": "streamed", "type": "noop"})).await;
    let events = read_events(stream, |events| {
        events.iter().any(|(name, e)| name == "task" && e["event_type"] == "task_succeeded")
    })
    .await;
    let task_events: Vec<_> = events.iter().filter(|(name, _)| name == "task").map(|(_, e)| e).collect();
    assert!(
        task_events
            .iter()
            .all(|e| e["task_id"] == created["id"] && e["name"] == "streamed" && e["type"] == "noop")
    );
    assert!(events.iter().any(|(name, s)| name == "stats" && s["total_tasks"] == 1));
    app.stop().await;
}

#[actix_rt::test]
async fn the_stream_sends_an_event_that_commits_after_a_later_one() {
    let _alone = STREAM_TESTS.lock().await;
    let app = spawn_app_with(Backend::Postgres, Registry::with_builtins(0.01), |c| {
        c.role = taskq::config::Role::Server;
    })
    .await;
    let early = app.create(json!({"name": "early", "type": "noop"})).await;
    let mut stream = Events::of(app.get("/api/tasks/stream").await);
    // A new client gets the latest snapshot at once; a second one proves a tick since
    // it subscribed, so the stream's position is set: what follows happens after it.
    stream.until(|events| events.iter().filter(|(name, _)| name == "stats").count() >= 2).await;

    // A transaction takes a history id and stays open while a later event commits.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url).await.unwrap();
    let mut open = sqlx::Connection::begin(&mut conn).await.unwrap();
    let late_id: i64 = sqlx::query_scalar(
        "INSERT INTO task_history (task_id, event_type, status, retry_count, error_message) \
         VALUES ($1::text::uuid, 'task_requeued', 'queued', 0, 'committed late') RETURNING id",
    )
    .bind(early["id"].as_str().unwrap())
    .fetch_one(&mut *open)
    .await
    .unwrap();
    let later = app.create(json!({"name": "later", "type": "noop"})).await;
    // The stream sends the later event past the open transaction's id, which it
    // keeps waiting for...
    stream.until(|events| events.iter().any(|(name, e)| name == "task" && e["task_id"] == later["id"])).await;
    open.commit().await.unwrap();

    // ...and sends when it commits.
    let events = stream.until(|events| events.iter().any(|(_, e)| e["id"] == late_id)).await.to_vec();
    let task_events: Vec<_> = events.iter().filter(|(name, _)| name == "task").map(|(_, e)| e).collect();
    let position = |id: i64| task_events.iter().position(|e| e["id"] == id);
    let later_queued = task_events.iter().find(|e| e["task_id"] == later["id"]).expect("the later event");
    assert!(position(later_queued["id"].as_i64().unwrap()) < position(late_id), "sent as it committed");
    assert_eq!(task_events.iter().filter(|e| e["id"] == late_id).count(), 1, "sent once");
    app.stop().await;
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_rt::test]
async fn a_thousand_stream_clients_cost_one_stats_query_per_tick() {
    let _alone = STREAM_TESTS.lock().await;
    let app = spawn_app_with(Backend::Postgres, Registry::with_builtins(0.01), |c| {
        c.role = taskq::config::Role::Server;
        c.stats_interval = Duration::from_millis(250);
        c.db_max_connections = 5;
    })
    .await;
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(0).timeout(REQUEST_TIMEOUT).build().unwrap();
    let streams =
        futures_util::future::join_all((0..1000).map(|_| client.get(app.url("/api/tasks/stream")).send()))
            .await;
    let streams: Vec<_> = streams.into_iter().map(|r| r.unwrap()).collect();
    assert!(streams.iter().all(|s| s.status() == 200));
    let metrics = |app: &TestApp| {
        let app_client = app.client.clone();
        let url = app.url("/metrics");
        async move { app_client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    wait_for("all clients registered", DEADLINE, || async {
        (counter(&metrics(&app).await, "taskq_stream_clients") >= 1000.0).then_some(())
    })
    .await;
    let before = counter(&metrics(&app).await, "taskq_stats_queries_total");
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await; // the measured window itself, not a wait for a condition
    let after = counter(&metrics(&app).await, "taskq_stats_queries_total");
    // Each /metrics scrape computes one snapshot too (counted apart: it is not a stats query).
    let ticks = window.as_secs_f64() / 0.25;
    let queries = after - before;
    assert!(queries <= ticks + 2.0, "{queries} stats queries in {ticks} ticks with 1000 clients");
    assert!(queries >= 1.0, "the broadcaster ticked");
    drop(streams);
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn probes_metrics_types_and_the_dashboard_answer(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(json_of(app.get("/livez").await).await.0, 200);
    assert_eq!(json_of(app.get("/readyz").await).await.0, 200);
    let (_, types) = json_of(app.get("/api/task-types").await).await;
    assert_eq!(types["types"], json!(["fail", "noop", "run_query", "send_email", "sleep", "webhook"]));
    let id = app.create(json!({"name": "m", "type": "noop"})).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded", DEADLINE).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for name in [
        "taskq_tasks_created_total",
        "taskq_task_attempts_total",
        "taskq_task_duration_seconds_bucket",
        "taskq_queue_depth",
        "taskq_oldest_runnable_task_age_seconds",
        "taskq_executor_utilization",
        "taskq_http_requests_total",
        "taskq_http_request_duration_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    // The queue's figures carry its name.
    let series = |name: &str| metrics.lines().filter(|l| l.starts_with(name)).collect::<Vec<_>>().join("\n");
    for name in [
        "taskq_queue_depth{",
        "taskq_oldest_runnable_task_age_seconds{",
        "taskq_task_attempts_total{",
        "taskq_task_duration_seconds_bucket{",
    ] {
        assert!(series(name).contains("queue=\"default\""), "{name} has no queue label: {}", series(name));
    }
    let page = app.get("/").await;
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("<html"));
    let docs = app.get("/docs").await.text().await.unwrap();
    assert!(docs.contains("/api/openapi.json"), "the API reference page renders the served document");
    app.stop().await;
}

#[actix_rt::test]
async fn the_committed_openapi_document_matches_the_code() {
    // The committed copy is the document of a server with API_TOKEN set, the fuller one.
    let app = spawn_app_with(Backend::Sqlite, Registry::with_builtins(0.01), |c| {
        c.api_tokens = vec!["token".into()];
    })
    .await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200, "the document stays open with API_TOKEN set");
    let served = response.text().await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == served,
        "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test the_committed_openapi_document` and commit it"
    );
    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["security"], json!([{"bearer": []}]));
    let operations: Vec<&Value> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .collect();
    assert_eq!(operations.len(), 26);
    for operation in &operations {
        assert!(operation["responses"].get("401").is_some(), "401 documented: {operation}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn without_api_token_the_openapi_document_declares_no_authentication() {
    let mut registry = Registry::with_builtins(0.01);
    registry.register("resize", Deliver);
    let app = spawn_app_with(Backend::Sqlite, registry, |_| {}).await;
    let document: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert_eq!(document.get("security"), None);
    assert_eq!(document["components"].get("securitySchemes"), None);
    assert!(!document.to_string().contains("\"401\""), "no 401 is ever answered");
    assert_eq!(
        document["components"]["schemas"]["CreateTask"]["properties"]["type"]["enum"],
        json!(["fail", "noop", "resize", "run_query", "send_email", "sleep", "webhook"]),
        "the types this server's registry has"
    );
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn what_the_openapi_document_calls_valid_is_accepted(#[case] backend: Backend) {
    let app =
        spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server)
            .await;
    // JSON Schema's integers include 5.0 and 1e0.
    let (status, task) = json_of(
        app.post("/api/tasks", &json!({"name": "n", "type": "noop", "priority": 5.0, "max_retries": 1e0}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{task}");
    assert_eq!((task["priority"].as_i64(), task["max_retries"].as_i64()), (Some(5), Some(1)));
    for (body, needle) in [
        (json!({"name": "n", "type": "noop", "priority": 5.5}), "expected a whole number"),
        (json!({"name": "n", "type": "noop", "priority": 1e300}), "expected a whole number"),
        (json!({"name": "\u{2003}\t", "type": "noop"}), "must not be empty"),
    ] {
        let (status, error) = json_of(app.post("/api/tasks", &body).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
    }
    let (status, settings) = json_of(
        app.client.patch(app.url("/api/queues/q")).json(&json!({"max_running": 3.0})).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, settings["max_running"].as_i64()), (200, Some(3)));
    // A cursor is what `next_cursor` answers: a hyphenated UUID, nothing looser.
    let simple = uuid::Uuid::now_v7().simple().to_string();
    let (status, _) = json_of(app.get(&format!("/api/tasks?cursor={simple}")).await).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn payload_numbers_at_the_ends_of_the_f64_range_are_kept_and_read_back(#[case] backend: Backend) {
    let app =
        spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server)
            .await;
    // PostgreSQL's jsonb writes the largest as 309 digits; parsed back without exact
    // rounding they overflowed, so its task could not be read, nor any list holding it.
    let payload = json!({"huge": 1.7976931348623155e308, "tiny": 8.345367399168785e-294, "n": -1});
    let task = app.create(json!({"name": "n", "type": "noop", "payload": payload})).await;
    assert_eq!(task["payload"], payload);
    let id = task["id"].as_str().unwrap();
    let (status, read) = json_of(app.get(&format!("/api/tasks/{id}")).await).await;
    assert_eq!((status, &read["payload"]), (200, &payload));
    let (status, list) = json_of(app.get("/api/tasks").await).await;
    assert_eq!((status, &list["tasks"][0]["payload"]), (200, &payload));
    app.stop().await;
}

#[actix_rt::test]
async fn a_method_a_resource_does_not_serve_is_answered_405_with_allow() {
    let app = spawn_app(Backend::Sqlite).await;
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/tasks", "GET, POST"),
        (reqwest::Method::PUT, "/api/tasks/batch", "POST"),
        (reqwest::Method::POST, "/api/stats", "GET"),
        (reqwest::Method::DELETE, "/api/queues/default", "GET, PATCH"),
        (reqwest::Method::GET, "/api/tasks/00000000-0000-0000-0000-000000000000/cancel", "POST"),
    ] {
        let response = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
    assert_eq!(app.get("/api/nothing-here").await.status(), 404, "an unknown path is still 404");
    app.stop().await;
}

#[actix_rt::test]
async fn configured_cors_origins_are_allowed_and_others_are_not() {
    let app = spawn_app_with(Backend::Sqlite, Registry::with_builtins(0.01), |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/tasks"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}
