//! A flood of `POST /api/tasks` at full speed against a server with a two-connection
//! pool, while the tasks table is locked for a while: overload is answered 503 (or
//! 429), nothing hangs or crashes, and every 201 is a stored task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_answered_503_never_hangs_and_every_201_is_stored() {
    let _gate = exclusive();
    const TEST: &str = "POST flood, pool of 2";
    let (clients, requests) = scale((64, 3_000), (256, 50_000));
    let scratch = Scratch::new("flood");
    let pg = Postgres::start();
    let url = pg.database("flood").await;
    let mut server =
        Proc::start(Spec::new("server", &url, "server").env("DB_MAX_CONNECTIONS", "2"), &scratch).await;
    let api = Api::new(server.url(""));

    // Halfway through, a long transaction locks the table: the pool runs dry.
    let sent = Arc::new(AtomicUsize::new(0));
    let locker = {
        let (url, sent) = (url.clone(), sent.clone());
        tokio::spawn(async move {
            wait_for("the flood to be under way", Duration::from_secs(60), || async {
                (sent.load(Ordering::Relaxed) >= requests / 3).then_some(())
            })
            .await;
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
            let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE tasks IN EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
            tokio::time::sleep(Duration::from_secs(7)).await; // the lock is the fault
            tx.rollback().await.unwrap();
        })
    };

    let began = Instant::now();
    let flood = (0..clients).map(|c| {
        let (api, sent) = (api.clone(), sent.clone());
        tokio::spawn(async move {
            let mut answers: BTreeMap<String, usize> = BTreeMap::new();
            let mut slowest = Duration::ZERO;
            while sent.fetch_add(1, Ordering::Relaxed) < requests {
                let body = json!({"name": format!("flood{c}"), "type": "noop"});
                let asked = Instant::now();
                let answer = match api.create(&body).await {
                    Ok((status, body)) if status >= 400 && body["error"].as_str().is_none() => {
                        format!("{status} without a JSON error")
                    }
                    Ok((status, _)) => status.to_string(),
                    Err(error) if error.is_timeout() => "hung (no answer in 30 s)".into(),
                    Err(error) => format!("no answer: {error}"),
                };
                slowest = slowest.max(asked.elapsed());
                *answers.entry(answer).or_default() += 1;
            }
            (answers, slowest)
        })
    });
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for client in futures_util::future::join_all(flood).await {
        let (theirs, their_slowest) = client.unwrap();
        for (answer, n) in theirs {
            *answers.entry(answer).or_default() += n;
        }
        slowest = slowest.max(their_slowest);
    }
    let took = began.elapsed();
    locker.await.unwrap();

    let total: usize = answers.values().sum();
    figure(TEST, "requests / concurrent clients", format!("{total} / {clients}"));
    figure(TEST, "answers", format!("{answers:?}"));
    figure(TEST, "slowest answer", format!("{:.2} s", slowest.as_secs_f64()));
    figure(
        TEST,
        "rate",
        format!("{:.0} requests/s over {:.1} s", total as f64 / took.as_secs_f64(), took.as_secs_f64()),
    );
    assert!(server.exited().is_none(), "the server crashed");
    let unexpected: Vec<_> =
        answers.keys().filter(|a| !["201", "503", "429"].contains(&a.as_str())).collect();
    assert!(unexpected.is_empty(), "answers other than 201, 503 and 429: {answers:?}");
    assert!(
        answers.get("503").copied().unwrap_or(0) + answers.get("429").copied().unwrap_or(0) > 0,
        "the lock caused no overload: {answers:?}"
    );
    let (status, _) = api.get("/api/stats").await.unwrap();
    assert_eq!(status, 200, "the server serves again after the flood");

    let report = assert_invariants(TEST, &url, api.acknowledged(), false).await;
    assert_eq!(report.tasks, answers.get("201").copied().unwrap_or(0), "a refused request stored nothing");
}
