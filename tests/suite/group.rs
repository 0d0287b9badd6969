//! Group commit of single-task inserts (`CreateBatcher`): concurrent callers share
//! transactions, yet each gets its own answer, and none waits unboundedly.

use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use taskq::store::{Backend, ConnectOptions, CreateBatcher, StoreError};

use crate::helpers::*;

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_row_the_database_refuses_fails_alone(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let batcher = CreateBatcher::new(store.clone(), 1, Duration::from_secs(5));
    // The schema refuses a priority outside ±1000 (the API would have said 400).
    let mut bad = noop("bad");
    bad.priority = 5000;
    let mut requests: Vec<_> = (0..30).map(|i| noop(&format!("good{i}"))).collect();
    requests.insert(15, bad);

    let answers =
        futures_util::future::join_all(requests.iter().map(|task| batcher.create(task.clone()))).await;
    for (task, answer) in requests.iter().zip(&answers) {
        match answer {
            Ok(created) => {
                assert!(task.name.starts_with("good"), "{} was stored", task.name);
                assert!(created.inserted);
                assert_eq!(created.task.id, task.id);
            }
            Err(error) => {
                assert_eq!(task.name, "bad", "{} failed: {error}", task.name);
                assert!(matches!(error, StoreError::Database(_)), "{error}");
            }
        }
    }
    assert!(answers[15].is_err(), "the bad row was refused");
    assert_eq!(taskq::store::stats(&*store).await.unwrap().total_tasks, 30);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn concurrent_requests_with_one_idempotency_key_store_one_task(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let batcher = CreateBatcher::new(store.clone(), 2, Duration::from_secs(5));
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let mut task = noop(&format!("charge{i}"));
            task.idempotency_key = Some(format!("key-{}", i % 4));
            task
        })
        .collect();

    let answers =
        futures_util::future::join_all(requests.iter().map(|task| batcher.create(task.clone()))).await;
    let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers.iter().filter(|created| created.inserted).count(), 4, "one task per key");
    for (task, created) in requests.iter().zip(&answers) {
        assert_eq!(created.task.idempotency_key, task.idempotency_key);
    }
    assert_eq!(taskq::store::stats(&*store).await.unwrap().total_tasks, 4);
}

#[actix_rt::test]
async fn a_request_that_waits_too_long_for_a_writer_is_refused_and_not_stored() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let max_wait = Duration::from_millis(300);
    let batcher = CreateBatcher::new(store.clone(), 1, max_wait);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let mut lock = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query("LOCK TABLE tasks IN EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();

    // The first request takes the only writer, whose insert waits for the lock.
    let (first, second) = (noop("first"), noop("second"));
    let stalled = tokio::spawn({
        let (batcher, first) = (batcher.clone(), first.clone());
        async move { batcher.create(first).await }
    });
    let watcher = sqlx::PgPool::connect(&db.url).await.unwrap();
    wait_for("the first insert to wait for the lock", Duration::from_secs(20), || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&watcher)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        }
    })
    .await;
    // The second waits for that writer. What makes it too old is time alone, so the lock
    // is held for exactly its `max_wait`, counted from when it was queued (the first
    // poll of `create`, which `join!` makes before the sleep starts).
    let (refused, ()) = tokio::join!(batcher.create(second.clone()), async move {
        tokio::time::sleep(max_wait).await;
        lock.rollback().await.unwrap();
    });
    let refused = refused.unwrap_err();
    assert!(refused.is_unavailable(), "{refused}");

    assert!(stalled.await.unwrap().unwrap().inserted, "the insert that waited for the lock went through");
    assert!(store.get_task(first.id).await.unwrap().is_some());
    assert!(store.get_task(second.id).await.unwrap().is_none(), "a refused request stored nothing");
}

#[actix_rt::test]
async fn an_outage_answers_the_whole_group_from_one_attempt() {
    // A listener that accepts connections and never answers: every connection attempt
    // waits until the pool's acquire timeout, and each shows here when it begins.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (accepted, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = accepted.send(());
        }
    });
    let options = ConnectOptions {
        acquire_timeout: Duration::from_millis(500),
        ..ConnectOptions::new(format!("postgres://postgres@127.0.0.1:{port}/taskq"))
    };
    let store = taskq::store::connect(&options).await.unwrap();
    let batcher = CreateBatcher::new(store, 1, Duration::from_secs(30));

    // The first request holds the only writer (its insert is connecting) while the
    // others queue behind it, so they form one group.
    let first = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.create(noop("first")).await }
    });
    tokio::time::timeout(Duration::from_secs(20), attempts.recv()).await.expect("the first insert connects");
    let answers =
        futures_util::future::join_all((0..20).map(|i| batcher.create(noop(&format!("queued{i}"))))).await;

    let first = match first.await.unwrap() {
        Err(StoreError::Unavailable(cause)) => cause,
        other => panic!("expected unavailable, got {other:?}"),
    };
    let causes: Vec<_> = answers
        .into_iter()
        .map(|answer| match answer {
            Err(StoreError::Unavailable(cause)) => cause,
            other => panic!("expected unavailable, got {other:?}"),
        })
        .collect();
    assert!(
        causes.iter().all(|cause| Arc::ptr_eq(cause, &causes[0])),
        "every queued request was answered from the group's one attempt, not retried alone"
    );
    assert!(!Arc::ptr_eq(&first, &causes[0]), "the first request was written alone, before the group");
    listener.abort();
}
