//! The task search of `GET /api/tasks` and the bulk actions of `POST /api/tasks/bulk`,
//! on both backends.

use std::time::Duration;

use rstest::rstest;
use serde_json::{Value, json};
use taskq::handlers::Registry;
use taskq::store::{Backend, BulkAction, TaskStatus};

use crate::api::json_of;
use crate::helpers::*;

/// An API server without a worker: tasks stay where the test puts them.
async fn server(backend: Backend) -> TestApp {
    spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server).await
}

/// The names `GET /api/tasks?{query}` lists, newest first.
async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let (status, body) = json_of(app.get(&format!("/api/tasks?{query}")).await).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn bulk(app: &TestApp, body: Value) -> (u16, Value) {
    json_of(app.post("/api/tasks/bulk", &body).await).await
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn every_search_key_narrows_the_list_and_they_combine(#[case] backend: Backend) {
    let app = server(backend).await;
    let later = json!(3600);
    let a = app
        .create(json!({"name": "Welcome email", "type": "noop", "delay_seconds": later,
        "payload": {"customer_id": 42, "plan": "pro"}}))
        .await;
    app.create(json!({"name": "welcome sms", "type": "sleep", "queue": "sms", "delay_seconds": later,
        "payload": {"customer_id": "42", "ms": 1}}))
        .await;
    let c = app
        .create(json!({"name": "invoice", "type": "noop", "delay_seconds": later,
        "payload": {"customer_id": 7}}))
        .await;
    let cancelled = app.post(&format!("/api/tasks/{}/cancel", c["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!(cancelled.status(), 200);

    assert_eq!(names(&app, "name=WELCOME").await, ["welcome sms", "Welcome email"]);
    assert_eq!(names(&app, "name=welcome&queue=sms").await, ["welcome sms"]);
    assert_eq!(names(&app, "name=welcome&type=noop").await, ["Welcome email"]);
    assert_eq!(names(&app, "payload=customer_id%3D42").await, ["welcome sms", "Welcome email"]);
    assert_eq!(names(&app, "payload=customer_id%3D42&type=sleep").await, ["welcome sms"]);
    assert_eq!(names(&app, "payload=plan%3Dpro").await, ["Welcome email"]);
    assert!(names(&app, "payload=plan%3Dfree").await.is_empty());

    let id = a["id"].as_str().unwrap();
    assert_eq!(names(&app, &format!("id={id}")).await, ["Welcome email"]);
    let prefix = &id.replace('-', "")[..20];
    assert_eq!(names(&app, &format!("id={prefix}")).await, ["Welcome email"]);
    assert_eq!(names(&app, "id=0000").await, Vec::<String>::new());

    let created = a["created_at"].as_str().unwrap();
    let after = |t: &str| urlencoding(t);
    assert_eq!(names(&app, &format!("created_before={}", after(created))).await, Vec::<String>::new());
    assert_eq!(names(&app, &format!("created_after={}&name=welcome", after(created))).await.len(), 2);
    assert_eq!(
        names(&app, "created_after=2000-01-01T00:00:00Z&created_before=2001-01-01T00:00:00Z").await.len(),
        0
    );

    let finished =
        app.get(&format!("/api/tasks/{}", c["id"].as_str().unwrap())).await.json::<Value>().await.unwrap();
    let done_at = finished["completed_at"].as_str().unwrap();
    assert_eq!(names(&app, &format!("finished_after={}", after(done_at))).await, ["invoice"]);
    assert_eq!(names(&app, &format!("finished_before={}", after(done_at))).await, Vec::<String>::new());
    assert_eq!(names(&app, "status=cancelled&name=voice").await, ["invoice"]);

    // Pages by keyset as without a search.
    let (_, first) = json_of(app.get("/api/tasks?payload=customer_id%3D42&limit=1").await).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(
        names(&app, &format!("payload=customer_id%3D42&limit=1&cursor={cursor}")).await,
        ["Welcome email"]
    );
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_bad_search_is_a_400_naming_its_key(#[case] backend: Backend) {
    let app = server(backend).await;
    for (query, key) in [
        ("id=xyz", "id"),
        ("id=0123456789abcdef0123456789abcdef0", "id"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01", "created_before"),
        ("finished_after=1", "finished_after"),
        ("finished_before=x", "finished_before"),
        ("payload=customer_id", "payload"),
        ("payload=a%20b%3D1", "payload"),
        ("payload=k%3Dv&created_after=2000-01-01T00:00:00Z", "created_after"),
        ("status=done", "status"),
        ("queue=Bad%20Queue", "queue"),
    ] {
        let (status, body) = json_of(app.get(&format!("/api/tasks?{query}")).await).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(key), "{query}: {body}");
    }
    let (status, body) = bulk(&app, json!({"filter": {"created_after": "soon"}, "action": "retry"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("created_after"), "{body}");
    let (status, body) = bulk(&app, json!({"filter": {}, "action": "explode"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("action")
            || body["error"].as_str().unwrap().contains("explode"),
        "{body}"
    );
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn bulk_actions_act_on_every_match_skip_the_others_and_write_history(#[case] backend: Backend) {
    let app = server(backend).await;
    let tasks: Vec<Value> = (0..7)
        .map(|i| {
            json!({"name": format!("bulk {i}"), "type": "noop", "delay_seconds": 3600,
            "payload": {"batch": if i < 5 { "a" } else { "b" }}})
        })
        .collect();
    let (status, created) = json_of(app.post("/api/tasks/batch", &json!({ "tasks": tasks })).await).await;
    assert_eq!(status, 201, "{created}");
    let ids: Vec<String> =
        created["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();

    // A dry run counts and changes nothing.
    let a = json!({"payload": "batch=a"});
    let (_, counted) = bulk(&app, json!({"filter": a, "action": "cancel", "dry_run": true})).await;
    assert_eq!((counted["matched"].as_u64(), counted["done"].as_u64()), (Some(5), Some(0)));
    assert_eq!(names(&app, "status=queued").await.len(), 7);

    // Cancel in pages of two, as the dashboard goes with its progress bar.
    let mut done = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut filter = json!({"payload": "batch=a", "limit": 2});
        if let Some(c) = &cursor {
            filter["cursor"] = json!(c);
        }
        let (status, page) = bulk(&app, json!({"filter": filter, "action": "cancel"})).await;
        assert_eq!(status, 200, "{page}");
        done += page["done"].as_u64().unwrap();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(done, 5);
    assert_eq!(names(&app, "status=cancelled").await.len(), 5);
    let history: Vec<HistoryEventJson> =
        app.get(&format!("/api/tasks/{}/history", ids[0])).await.json().await.unwrap();
    assert_eq!(history.last().unwrap().event_type, "task_cancelled");

    // Retry everything: the cancelled are queued again, the queued ones skipped.
    let (_, retried) = bulk(&app, json!({"filter": {"name": "bulk"}, "action": "retry"})).await;
    assert_eq!(retried, json!({"matched": 7, "done": 5, "skipped": 2, "next_cursor": null}));
    let history: Vec<HistoryEventJson> =
        app.get(&format!("/api/tasks/{}/history", ids[0])).await.json().await.unwrap();
    assert_eq!(history.last().unwrap().event_type, "task_requeued");
    assert_eq!(names(&app, "status=queued").await.len(), 7);

    // Delete takes terminal tasks only, with their history; the stats follow.
    let (_, cancelled) = bulk(&app, json!({"filter": {"payload": "batch=b"}, "action": "cancel"})).await;
    assert_eq!(cancelled["done"], 2);
    let (_, deleted) = bulk(&app, json!({"filter": {}, "action": "delete"})).await;
    assert_eq!(
        (deleted["matched"].as_u64(), deleted["done"].as_u64(), deleted["skipped"].as_u64()),
        (Some(7), Some(2), Some(5))
    );
    assert_eq!(app.get(&format!("/api/tasks/{}", ids[6])).await.status(), 404);
    assert_eq!(app.get(&format!("/api/tasks/{}/history", ids[6])).await.status(), 404);
    let stats: Value = app.get("/api/stats").await.json().await.unwrap();
    assert_eq!((stats["total_tasks"].as_i64(), stats["cancelled_tasks"].as_i64()), (Some(5), Some(0)));
    app.stop().await;
}

/// A history event as the API answers it, as far as these tests read it.
#[derive(serde::Deserialize)]
struct HistoryEventJson {
    event_type: String,
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_bulk_write_skips_a_task_whose_status_changed_since_the_search(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = store.create_tasks(&[noop("a"), noop("b"), noop("c")]).await.unwrap();
    let ids: Vec<uuid::Uuid> = created.iter().map(|c| c.task.id).collect();
    // Between the search that found them queued and the write, one starts.
    let claimed = store.claim("w", "default", 1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let cancelled = store.bulk(&ids, BulkAction::Cancel).await.unwrap();
    assert_eq!(cancelled.len(), 2);
    assert!(!cancelled.contains(&claimed[0].id));
    let running = store.get_task(claimed[0].id).await.unwrap().unwrap();
    assert_eq!(running.status, TaskStatus::Running);
    assert_eq!(event_types(&store.history(claimed[0].id).await.unwrap()), ["task_queued", "task_started"]);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_checker_passes_after_a_bulk_retry_while_workers_run(#[case] backend: Backend) {
    use taskq::check::{self, Options};
    // Ten thousand on PostgreSQL; SQLite, one writer at a time on a shared machine, runs
    // two thousand so that the suite's other SQLite tests keep their write lock in time.
    let tasks = match backend {
        Backend::Postgres => 10_000,
        Backend::Sqlite => 2_000,
    };
    let app = spawn_app(backend).await;
    for batch in 0..tasks / 1000 {
        let tasks: Vec<Value> = (0..1000)
            .map(|i| {
                let name = format!("doomed {batch}-{i}");
                json!({"name": name, "type": "fail", "payload": {"message": "no", "fatal": true}})
            })
            .collect();
        let (status, _) = json_of(app.post("/api/tasks/batch", &json!({ "tasks": tasks })).await).await;
        assert_eq!(status, 201);
    }
    let failed_count = || async {
        let stats: Value = app.get("/api/stats").await.json().await.ok()?;
        (stats["failed_tasks"] == tasks).then_some(())
    };
    wait_for("every task failed", Duration::from_secs(120), failed_count).await;

    // Retried while the worker runs them again (and fails them, fatally, again).
    let (status, outcome) = bulk(&app, json!({"filter": {"status": "failed"}, "action": "retry"})).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["matched"], tasks);
    assert_eq!(outcome["done"].as_u64().unwrap() + outcome["skipped"].as_u64().unwrap(), tasks as u64);
    wait_for("every task failed again", Duration::from_secs(120), failed_count).await;

    let report = check::check(&app.db.url, &Options { settled: true, ..Options::default() }).await.unwrap();
    assert!(report.passed(), "{}: {:#?}", report.summary(), report.violations);
    app.stop().await;
}

/// A query string value: RFC 3339 times carry `+` and `:`.
fn urlencoding(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}
