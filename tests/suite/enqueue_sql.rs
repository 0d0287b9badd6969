//! `taskq_enqueue(type, payload, options)`: enqueueing from SQL inside the caller's own
//! transaction, on PostgreSQL.

use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, Row};
use taskq::store::{Backend, TaskStatus, WAKEUP_CHANNEL};
use uuid::Uuid;

use crate::helpers::*;

async fn enqueue(
    conn: &mut PgConnection,
    task_type: &str,
    payload: serde_json::Value,
    options: serde_json::Value,
) -> Result<Uuid, String> {
    sqlx::query_scalar("SELECT taskq_enqueue($1, $2, $3)")
        .bind(task_type)
        .bind(payload)
        .bind(options)
        .fetch_one(conn)
        .await
        .map_err(|e| e.to_string())
}

/// An application row and a task in one transaction: both or neither, and the
/// worker's wake-up only for the commit.
#[actix_rt::test]
async fn a_task_enqueued_in_a_transaction_exists_if_and_only_if_it_commits() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE orders (id int PRIMARY KEY)").execute(&mut conn).await.unwrap();
    let mut listener = PgListener::connect(&db.url).await.unwrap();
    listener.listen(WAKEUP_CHANNEL).await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES (1)").execute(&mut *tx).await.unwrap();
    let rolled_back =
        enqueue(&mut tx, "noop", json!({"order": 1}), json!({"queue": "orders"})).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(store.get_task(rolled_back).await.unwrap().is_none(), "no task");
    assert!(store.history(rolled_back).await.unwrap().is_empty(), "no history");
    let heard = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(heard.is_err(), "no wake-up for a rollback: {heard:?}");

    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES (2)").execute(&mut *tx).await.unwrap();
    let options = json!({"queue": "orders", "name": "confirm order 2", "priority": 5, "max_retries": 1,
                         "max_snoozes": 3, "timeout_seconds": 60, "concurrency_key": "customer-7"});
    let id = enqueue(&mut tx, "NoOp", json!({"order": 2}), options).await.unwrap();
    tx.commit().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await.unwrap().unwrap();
    assert_eq!(heard.payload(), "r:orders", "the commit wakes the queue's workers");

    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(
        (task.task_type.as_str(), task.name.as_str(), task.queue.as_str()),
        ("noop", "confirm order 2", "orders")
    );
    assert_eq!((task.priority, task.max_retries, task.max_snoozes, task.timeout_seconds), (5, 1, 3, 60));
    assert_eq!(task.concurrency_key.as_deref(), Some("customer-7"));
    assert_eq!(event_types(&store.history(id).await.unwrap()), ["task_queued"]);
    assert_eq!(id.get_version_num(), 7, "a time-ordered id, as the API makes");
    let orders: i64 = sqlx::query("SELECT count(*) FROM orders").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(orders, 1);

    // A worker claims and runs it like any other.
    let claimed = store.claim("w", "orders", 10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
    assert_eq!(claimed[0].status, TaskStatus::Running);
}

#[actix_rt::test]
async fn taskq_enqueue_checks_its_input_like_the_api_and_keeps_idempotency_keys() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let first = enqueue(&mut conn, "noop", json!({}), json!({"idempotency_key": "once"})).await.unwrap();
    let again = enqueue(&mut conn, "noop", json!({}), json!({"idempotency_key": "once"})).await.unwrap();
    assert_eq!(first, again, "a repeated key returns the first task");
    let later = enqueue(&mut conn, "noop", json!({}), json!({"delay_seconds": 3600})).await.unwrap();
    let task = store.get_task(later).await.unwrap().unwrap();
    assert!(task.run_at > task.created_at + chrono::Duration::seconds(3590));
    assert!(later > first, "ids are time-ordered");

    for (task_type, payload, options, problem) in [
        ("", json!({}), json!({}), "type must be 1 to 255 characters"),
        ("noop", json!([1]), json!({}), "payload must be a JSON object"),
        (
            "noop",
            json!({}),
            json!({"priority": 5000}),
            "options.priority must be a whole number from -1000 to 1000",
        ),
        ("noop", json!({}), json!({"max_retries": 1.5}), "options.max_retries must be a whole number"),
        ("noop", json!({}), json!({"queue": "Bad Queue"}), "options.queue must be 1 to 64 characters"),
        ("noop", json!({}), json!({"name": "  "}), "options.name must be a string"),
        ("noop", json!({}), json!({"run_at": "soon"}), "options.run_at must be an RFC 3339 time"),
        ("noop", json!({}), json!({"run_at": "2030-01-01T00:00:00Z", "delay_seconds": 1}), "not both"),
        ("noop", json!({}), json!({"colour": "red"}), "unknown option colour"),
    ] {
        let error = enqueue(&mut conn, task_type, payload, options.clone()).await.unwrap_err();
        assert!(error.contains(problem), "{options}: {error}");
    }
    let stored: i64 = sqlx::query("SELECT count(*) FROM tasks").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(stored, 2, "nothing bad was stored");
}
