//! PostgreSQL itself fails under a working fleet: restarted `fast` and `immediate`,
//! its backends terminated every few seconds, and down for 10 s. Processes stay up,
//! the API answers 503 without internals meanwhile, claims resume right after, and
//! nothing acknowledged is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::harness::*;

/// Words that would show a client the database's internals.
const INTERNALS: [&str; 8] = [
    "sqlx",
    "postgres",
    "sqlstate",
    "connection refused",
    "pg_",
    "pool",
    "io error",
    "terminating connection",
];

fn leaks_internals(body: &Value) -> bool {
    let text = body.to_string().to_lowercase();
    INTERNALS.iter().any(|word| text.contains(word))
}

/// Time from `since` until the first claim after it.
async fn first_claim_after(url: &str, since: DateTime<Utc>, deadline: Duration) -> Duration {
    let started = wait_for("claims to resume", deadline, || async {
        pg_events(url)
            .await
            .into_iter()
            .find(|e| e.event_type == "task_started" && e.created_at > since)
            .map(|e| e.created_at)
    })
    .await;
    (started - since).to_std().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_terminations_and_an_outage_lose_nothing() {
    let _gate = shared();
    const TEST: &str = "PostgreSQL restarts and outage";
    let scratch = Scratch::new("postgres");
    let pg = Postgres::start();
    let url = pg.database("pgfaults").await;
    let mut server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let mut workers = [
        Proc::start(Spec::new("worker", &url, "w1"), &scratch).await,
        Proc::start(Spec::new("worker", &url, "w2"), &scratch).await,
    ];
    let api = Api::new(server.url(""));

    // A steady producer for the whole run, counting what it is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (created, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let producer = {
        let (api, stop, created, refused) = (api.clone(), stop.clone(), created.clone(), refused.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut bad: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match api.create(&ledger_task(&format!("p{i}"), 50 + i % 200, 5, 10)).await {
                    Ok((201, _)) => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((503, body)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        if leaks_internals(&body) {
                            bad.push(body.to_string());
                        }
                    }
                    Ok((status, body)) => bad.push(format!("{status}: {body}")),
                    Err(error) => bad.push(format!("no answer: {error}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bad
        })
    };
    let progress = |n: u64| {
        let created = created.clone();
        async move {
            let target = created.load(Ordering::Relaxed) + n;
            wait_for("tasks to be created", Duration::from_secs(60), || async {
                (created.load(Ordering::Relaxed) >= target).then_some(())
            })
            .await;
        }
    };
    progress(50).await;

    let rounds = scale(1, 5);
    let mut worst_resume = Duration::ZERO;
    for _ in 0..rounds {
        for mode in ["fast", "immediate"] {
            pg.restart(mode);
            let resumed = first_claim_after(&url, Utc::now(), Duration::from_secs(30)).await;
            worst_resume = worst_resume.max(resumed);
            figure(
                TEST,
                &format!("claims resumed after a {mode} restart"),
                format!("{:.2} s", resumed.as_secs_f64()),
            );
            progress(20).await;
        }
        for _ in 0..3 {
            let terminated = pg.terminate_backends("faults_pgfaults").await;
            println!("{TEST}: terminated {terminated} backends");
            progress(20).await;
        }
    }

    // A 10 s outage: everything stays up, the API answers 503 without internals.
    pg.stop_server("fast");
    let outage = Instant::now();
    let (mut answers, mut slowest) = (0, Duration::ZERO);
    while outage.elapsed() < Duration::from_secs(10) {
        for path in ["/api/stats", "/health", "/api/tasks?limit=1"] {
            let asked = Instant::now();
            let (status, body) = api.get(path).await.expect("the server answers during the outage");
            slowest = slowest.max(asked.elapsed());
            assert_eq!(status, 503, "{path} during the outage answered {status}: {body}");
            assert!(!leaks_internals(&body), "{path} leaked internals: {body}");
            answers += 1;
        }
        for proc in workers.iter_mut().chain(std::iter::once(&mut server)) {
            assert!(proc.exited().is_none(), "{} died during the outage", proc.spec.worker_id);
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // the outage lasts 10 s
    }
    pg.start_server();
    let back = Utc::now();
    let resumed = first_claim_after(&url, back, Duration::from_secs(30)).await;
    figure(
        TEST,
        "503 answers during the 10 s outage",
        format!("{answers} of {answers}, slowest {:.2} s", slowest.as_secs_f64()),
    );
    figure(
        TEST,
        "claims resumed after the outage",
        format!("{:.2} s (poll {} ms)", resumed.as_secs_f64(), POLL.as_millis()),
    );
    worst_resume = worst_resume.max(resumed);
    progress(20).await;

    stop.store(true, Ordering::Relaxed);
    let bad = producer.await.unwrap();
    assert!(bad.is_empty(), "unexpected answers: {bad:?}");
    settle(&url, Duration::from_secs(120)).await;
    figure(
        TEST,
        "tasks acknowledged / refused with 503",
        format!("{} / {}", created.load(Ordering::Relaxed), refused.load(Ordering::Relaxed)),
    );
    figure(TEST, "slowest resumption of claims", format!("{:.2} s", worst_resume.as_secs_f64()));
    assert!(worst_resume <= POLL + Duration::from_secs(3), "claims resumed after {worst_resume:?}");
    for proc in workers.iter_mut().chain(std::iter::once(&mut server)) {
        assert!(proc.exited().is_none(), "{} died", proc.spec.worker_id);
    }
    let report = assert_invariants(TEST, &url, api.acknowledged(), true).await;
    figure(
        TEST,
        "attempts rescued / of them within their lease",
        format!("{} / {}", report.rescued_attempts, report.rescued_within_lease),
    );
    // No worker died: one rescued while its lease held was a live worker declared dead
    // because the database could not hear its heartbeat.
    assert_eq!(report.rescued_within_lease, 0, "live workers' tasks were rescued while their leases held");
}
