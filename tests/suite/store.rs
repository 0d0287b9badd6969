//! The store's operations, against a real database of each backend.

use std::time::Duration;

use chrono::Utc;
use rstest::rstest;
use serde_json::json;
use taskq::store::{
    AttemptRef, Backend, Completion, Failure, FailureKind, ListFilter, NewTask, QueueShape, ReleaseReason,
    TaskStatus, Transition, WorkerInfo,
};

use crate::helpers::*;

const GRACE: Duration = Duration::from_secs(10);

fn heartbeat_of(worker: &str) -> WorkerInfo {
    WorkerInfo {
        worker_id: worker.into(),
        concurrency: 5,
        running: 0,
        started_at: Utc::now(),
        last_seen_at: Utc::now(),
        queues: "default=5".into(),
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn claim_takes_priority_first_then_fifo_and_never_more_than_asked(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut tasks = Vec::new();
    for (name, priority) in [("low-1", 0), ("high-1", 5), ("low-2", 0), ("mid-1", 3), ("high-2", 5)] {
        let mut task = noop(name);
        task.priority = priority;
        tasks.push(task);
        // Distinct run_at even on a coarse clock.
        store.create_tasks(std::slice::from_ref(tasks.last().unwrap())).await.unwrap();
    }
    let first = store.claim("w", "default", 2, GRACE).await.unwrap();
    let rest = store.claim("w", "default", 10, GRACE).await.unwrap();
    let names: Vec<_> = first.iter().chain(&rest).map(|t| t.name.as_str()).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(names, ["high-1", "high-2", "mid-1", "low-1", "low-2"]);
    assert!(store.claim("w", "default", 10, GRACE).await.unwrap().is_empty());
    for task in first.iter().chain(&rest) {
        assert_eq!(task.status, TaskStatus::Running);
        assert_eq!(task.attempt, 1);
        assert_eq!(task.worker_id.as_deref(), Some("w"));
        assert!(task.locked_until.unwrap() > task.started_at.unwrap() + chrono::Duration::seconds(39));
    }
}

/// A queue's shape counts its scheduled tasks and finds its oldest runnable one across
/// every priority in use (PostgreSQL reads the claim index one priority at a time).
#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_queues_shape_spans_every_priority(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let task = |priority: i32, run_in_secs: i64, queue: &str| {
        let mut task = noop("shaped");
        task.priority = priority;
        task.run_at = Some(Utc::now() + chrono::Duration::seconds(run_in_secs));
        task.queue = queue.into();
        task
    };
    store
        .create_tasks(&[
            task(5, -10, "default"),
            task(5, 600, "default"),
            task(0, -120, "default"),
            task(-3, 900, "default"),
            task(-3, -60, "default"),
            task(1, 300, "other"),
        ])
        .await
        .unwrap();
    store.change_queue("idle", taskq::store::QueueChange::default()).await.unwrap();
    let shapes = store.queue_shape().await.unwrap();
    let shape =
        |name: &str| shapes.iter().find(|(queue, _)| queue == name).map(|(_, shape)| shape.clone()).unwrap();
    let default = shape("default");
    assert_eq!(default.scheduled, 2);
    let oldest = default.oldest_runnable_age_seconds.unwrap();
    assert!((119.0..130.0).contains(&oldest), "the priority-0 task waited 120 s, not {oldest}");
    assert_eq!(shape("other"), QueueShape { scheduled: 1, oldest_runnable_age_seconds: None });
    assert_eq!(shape("idle"), QueueShape { scheduled: 0, oldest_runnable_age_seconds: None });
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn scheduled_tasks_are_not_claimed_before_run_at(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut later = noop("later");
    later.run_at = Some(Utc::now() + chrono::Duration::milliseconds(600));
    store.create_tasks(&[later]).await.unwrap();
    assert!(store.claim("w", "default", 5, GRACE).await.unwrap().is_empty());
    let shapes = store.queue_shape().await.unwrap();
    let default = shapes.iter().find(|(queue, _)| queue == "default").map(|(_, shape)| shape.clone());
    assert_eq!(default, Some(QueueShape { scheduled: 1, oldest_runnable_age_seconds: None }));
    let claimed = wait_for("the scheduled task to become claimable", Duration::from_secs(5), || {
        let store = store.clone();
        async move { Some(store.claim("w", "default", 5, GRACE).await.unwrap()).filter(|c| !c.is_empty()) }
    })
    .await;
    assert_eq!(claimed[0].name, "later");
    assert!(Utc::now() >= claimed[0].run_at);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn every_state_change_writes_its_history_event(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = store.create_tasks(&[noop("a"), noop("b"), noop("c")]).await.unwrap();
    let [a, b, c] = [0, 1, 2].map(|i| created[i].task.id);
    let claimed = store.claim("w", "default", 3, GRACE).await.unwrap();
    let attempt = |id| AttemptRef { task_id: id, attempt: 1 };
    assert_eq!(claimed.len(), 3);
    store.complete("w", &[Completion { attempt: attempt(a), result: Some(json!({"n": 1})) }]).await.unwrap();
    let retry = Failure {
        attempt: attempt(b),
        kind: FailureKind::TimedOut,
        error: "slow".into(),
        retry_in: Some(Duration::from_secs(30)),
    };
    let fatal =
        Failure { attempt: attempt(c), kind: FailureKind::Error, error: "bad".into(), retry_in: None };
    assert_eq!(store.fail("w", &[retry, fatal]).await.unwrap().len(), 2);

    let expect = [
        (a, vec!["task_queued", "task_started", "task_succeeded"], TaskStatus::Succeeded),
        (b, vec!["task_queued", "task_started", "timeout_occurred", "retry_scheduled"], TaskStatus::Queued),
        (c, vec!["task_queued", "task_started", "task_failed", "task_failed_final"], TaskStatus::Failed),
    ];
    for (id, events, status) in expect {
        let task = store.get_task(id).await.unwrap().unwrap();
        let history = store.history(id).await.unwrap();
        assert_eq!(event_types(&history), events, "history of {}", task.name);
        assert_eq!(task.status, status);
        assert_eq!(history.last().unwrap().status, status, "the last event agrees with the task");
    }
    let b_task = store.get_task(b).await.unwrap().unwrap();
    assert_eq!((b_task.retry_count, b_task.last_error.as_deref()), (1, Some("slow")));
    let scheduled = store.history(b).await.unwrap().pop().unwrap();
    assert_eq!(scheduled.next_run_at, Some(b_task.run_at));
    assert!(b_task.run_at > Utc::now() + chrono::Duration::seconds(25));
    assert_eq!(store.get_task(a).await.unwrap().unwrap().result, Some(json!({"n": 1})));
}

/// On PostgreSQL a run's start and success are held by the task row and shown by the
/// view `task_events` (docs/design.md, "History"). Reverting the migration that made it
/// so writes every event as a row of its own: the history read before and the rows
/// after must be the same events, ids, times and retry counts, for every way an
/// attempt ends and for an attempt that still runs.
#[actix_rt::test]
async fn history_reads_the_same_events_as_rows() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let created =
        store.create_tasks(&[noop("ok"), noop("retried"), noop("fatal"), noop("released")]).await.unwrap();
    let [ok, retried, fatal, released] = [0, 1, 2, 3].map(|i| created[i].task.id);
    store.claim("w", "default", 4, GRACE).await.unwrap();
    let attempt = |id, attempt| AttemptRef { task_id: id, attempt };
    let failure = |id, retry_in| Failure {
        attempt: attempt(id, 1),
        kind: FailureKind::Error,
        error: "boom".into(),
        retry_in,
    };
    store.complete("w", &[Completion { attempt: attempt(ok, 1), result: None }]).await.unwrap();
    store.fail("w", &[failure(retried, Some(Duration::ZERO)), failure(fatal, None)]).await.unwrap();
    store.release("w", &[attempt(released, 1)], ReleaseReason::Shutdown).await.unwrap();
    assert!(matches!(store.retry(fatal).await.unwrap(), Transition::Done(_)));
    // Second attempts: `retried` succeeds on its retry, `fatal` and `released` still run.
    let again = store.claim("w2", "default", 3, GRACE).await.unwrap();
    assert_eq!(again.len(), 3);
    store.complete("w2", &[Completion { attempt: attempt(retried, 2), result: None }]).await.unwrap();

    let ids = [ok, retried, fatal, released];
    let mut viewed = Vec::new();
    for id in ids {
        viewed.push(store.history(id).await.unwrap());
    }
    assert_eq!(
        event_types(&viewed[1]),
        ["task_queued", "task_started", "task_failed", "retry_scheduled", "task_started", "task_succeeded"]
    );
    assert_eq!(viewed[1][1].retry_count, 0, "the first start was before the retry");
    assert_eq!(viewed[1][4].retry_count, 1);
    let streamed = store.events_since(0, 1000).await.unwrap();
    let mut all: Vec<_> = viewed.iter().flatten().cloned().collect();
    all.sort_by_key(|event| event.id);
    assert_eq!(streamed.into_iter().map(|e| e.event).collect::<Vec<_>>(), all, "the stream reads the same");
    assert_eq!(store.last_event_id().await.unwrap(), all.last().unwrap().id);

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    // Reverts the migrations down to, and including, the one that made it so.
    const LEAN_RUNS: i64 = 20261202000001;
    loop {
        let newest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if newest < LEAN_RUNS {
            break;
        }
        store.migrate_down().await.unwrap();
    }
    for (id, viewed) in ids.into_iter().zip(viewed) {
        let rows: Vec<taskq::store::HistoryEvent> = sqlx::query_as(
            "SELECT h.*, t.queue FROM task_history AS h JOIN tasks AS t ON t.id = h.task_id \
             WHERE h.task_id = $1 ORDER BY h.id",
        )
        .bind(id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows, viewed);
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn outcome_writes_are_fenced_by_worker_and_attempt(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("fenced")]).await.unwrap()[0].task.id;
    store.claim("w1", "default", 1, GRACE).await.unwrap();
    let stale = Completion { attempt: AttemptRef { task_id: id, attempt: 1 }, result: None };
    assert!(store.complete("w2", std::slice::from_ref(&stale)).await.unwrap().is_empty(), "another worker");
    let wrong_attempt = Completion { attempt: AttemptRef { task_id: id, attempt: 2 }, result: None };
    assert!(store.complete("w1", &[wrong_attempt]).await.unwrap().is_empty(), "another attempt");
    assert_eq!(store.get_task(id).await.unwrap().unwrap().status, TaskStatus::Running);
    assert_eq!(store.complete("w1", std::slice::from_ref(&stale)).await.unwrap(), [id]);
    assert!(store.complete("w1", &[stale]).await.unwrap().is_empty(), "a second ack changes nothing");
    assert_eq!(
        event_types(&store.history(id).await.unwrap()),
        ["task_queued", "task_started", "task_succeeded"]
    );
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn expired_lease_is_rescued_exactly_once_by_concurrent_rescuers(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut task = noop("orphan");
    task.timeout_seconds = 1;
    let id = store.create_tasks(&[task]).await.unwrap()[0].task.id;
    store.heartbeat(&heartbeat_of("w1")).await.unwrap();
    store.claim("w1", "default", 1, Duration::ZERO).await.unwrap();
    let retry_soon = |_: &taskq::store::Task| Some(Duration::from_secs(60));
    assert!(store.rescue(10, &retry_soon).await.unwrap().is_empty(), "the lease still holds");

    // What the rescuers race for is time itself: the 1 s lease (no grace) running out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (one, two) = tokio::join!(store.rescue(10, &retry_soon), store.rescue(10, &retry_soon));
    assert_eq!(one.unwrap().len() + two.unwrap().len(), 1);
    let late = Completion { attempt: AttemptRef { task_id: id, attempt: 1 }, result: None };
    assert!(store.complete("w1", &[late]).await.unwrap().is_empty(), "the late outcome is ignored");
    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.retry_count), (TaskStatus::Queued, 1));
    let history = store.history(id).await.unwrap();
    assert_eq!(
        event_types(&history),
        ["task_queued", "task_started", "worker_lock_expired", "retry_scheduled"]
    );
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn tasks_of_a_worker_that_stopped_heartbeating_are_rescued_before_their_lease_ends(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("orphan")]).await.unwrap()[0].task.id;
    store.claim("never-heartbeat", "default", 1, GRACE).await.unwrap();
    let rescued = store.rescue(10, &|_| None).await.unwrap();
    assert_eq!(rescued, [id]);
    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed, "no retries decided: final failure");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn release_requeues_without_spending_a_retry(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("released")]).await.unwrap()[0].task.id;
    store.claim("w", "default", 1, GRACE).await.unwrap();
    assert_eq!(
        store.release("w", &[AttemptRef { task_id: id, attempt: 1 }], ReleaseReason::Shutdown).await.unwrap(),
        [id]
    );
    let task = store.get_task(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.retry_count, task.locked_until), (TaskStatus::Queued, 0, None));
    let again = store.claim("w2", "default", 1, GRACE).await.unwrap();
    assert_eq!((again[0].id, again[0].attempt), (id, 2));
    assert_eq!(
        event_types(&store.history(id).await.unwrap()),
        ["task_queued", "task_started", "task_requeued", "task_started"]
    );
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn cancel_and_manual_retry_follow_the_state_machine(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = store.create_tasks(&[noop("queued"), noop("running")]).await.unwrap();
    let (queued, running) = (created[0].task.id, created[1].task.id);
    assert!(
        matches!(store.cancel(queued, None).await.unwrap(), Transition::Done(t) if t.status == TaskStatus::Cancelled)
    );
    store.claim("w", "default", 1, GRACE).await.unwrap();
    // A running task's cancel is requested; it stays running until its worker stops it.
    let Transition::Done(requested) = store.cancel(running, Some("no longer needed")).await.unwrap() else {
        panic!("a running task's cancel can be requested")
    };
    assert_eq!(requested.status, TaskStatus::Running);
    assert!(requested.cancel_requested_at.is_some());
    assert_eq!(requested.cancel_reason.as_deref(), Some("no longer needed"));
    assert_eq!(store.cancel(queued, None).await.unwrap(), Transition::Conflict(TaskStatus::Cancelled));
    assert_eq!(store.retry(running).await.unwrap(), Transition::Conflict(TaskStatus::Running));
    assert_eq!(store.cancel(uuid::Uuid::now_v7(), None).await.unwrap(), Transition::NotFound);

    let Transition::Done(retried) = store.retry(queued).await.unwrap() else {
        panic!("retry of a cancelled task")
    };
    assert_eq!((retried.status, retried.retry_count, retried.completed_at), (TaskStatus::Queued, 0, None));
    assert_eq!(
        event_types(&store.history(queued).await.unwrap()),
        ["task_queued", "task_cancelled", "task_requeued"]
    );
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn an_idempotency_key_yields_one_task_even_under_concurrent_repeats(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let with_key = || {
        let mut task = noop("once");
        task.idempotency_key = Some("order-42".into());
        task
    };
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let task = with_key();
        async move { store.create_tasks(&[task]).await.unwrap().remove(0) }
    });
    let results = futures_util::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.inserted).count(), 1);
    assert!(results.iter().all(|r| r.task.id == results[0].task.id || r.inserted));
    let ids: std::collections::HashSet<_> = results.iter().map(|r| r.task.id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.list_tasks(&ListFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn stats_follow_every_transition(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut later = noop("later");
    later.run_at = Some(Utc::now() + chrono::Duration::hours(1));
    let created = store.create_tasks(&[noop("a"), noop("b"), noop("c"), noop("d"), later]).await.unwrap();
    store.cancel(created[3].task.id, None).await.unwrap();
    let claimed = store.claim("w", "default", 2, GRACE).await.unwrap();
    let attempt = |i: usize| AttemptRef { task_id: claimed[i].id, attempt: 1 };
    store.complete("w", &[Completion { attempt: attempt(0), result: None }]).await.unwrap();
    let failure =
        Failure { attempt: attempt(1), kind: FailureKind::Error, error: "x".into(), retry_in: None };
    store.fail("w", &[failure]).await.unwrap();
    store.compact_counters().await.unwrap();

    let stats = taskq::store::stats(&*store).await.unwrap();
    assert_eq!(stats.total_tasks, 5);
    assert_eq!(
        (
            stats.queued_tasks,
            stats.running_tasks,
            stats.succeeded_tasks,
            stats.failed_tasks,
            stats.cancelled_tasks
        ),
        (2, 0, 1, 1, 1)
    );
    assert_eq!(stats.scheduled_tasks, 1);
    assert!(stats.oldest_runnable_age_seconds.is_some());
    let finished: i64 = stats.throughput.per_minute.iter().map(|m| m.succeeded + m.failed).sum();
    assert_eq!(finished, 2);

    // A retry moves counts between statuses and into the retry figures.
    let c = store.claim("w", "default", 1, GRACE).await.unwrap().remove(0);
    let retry = Failure {
        attempt: AttemptRef { task_id: c.id, attempt: c.attempt },
        kind: FailureKind::Error,
        error: "again".into(),
        retry_in: Some(Duration::from_secs(60)),
    };
    store.fail("w", &[retry]).await.unwrap();
    let stats = taskq::store::stats(&*store).await.unwrap();
    assert_eq!((stats.tasks_with_retries, stats.queued_tasks, stats.scheduled_tasks), (1, 2, 2));
    assert!((stats.avg_retry_count - 0.2).abs() < 1e-9);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn list_pages_newest_first_with_filters(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tasks: Vec<NewTask> = (0..7).map(|i| noop(&format!("t{i}"))).collect();
    store.create_tasks(&tasks).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_tasks(&ListFilter { limit: 3, before, ..Default::default() }).await.unwrap();
        seen.extend(page.iter().map(|t| t.name.clone()));
        if page.len() < 3 {
            break;
        }
        before = page.last().map(|t| t.id);
    }
    assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
    store.cancel(tasks[2].id, None).await.unwrap();
    let cancelled = ListFilter { status: Some(TaskStatus::Cancelled), limit: 10, ..Default::default() };
    assert_eq!(store.list_tasks(&cancelled).await.unwrap()[0].name, "t2");
    let by_type = ListFilter { task_type: Some("sleep".into()), limit: 10, ..Default::default() };
    assert!(store.list_tasks(&by_type).await.unwrap().is_empty());
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn prune_deletes_old_terminal_tasks_with_their_history(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = store.create_tasks(&[noop("done"), noop("cancelled"), noop("waiting")]).await.unwrap();
    let done = store.claim("w", "default", 1, GRACE).await.unwrap().remove(0);
    store
        .complete("w", &[Completion { attempt: AttemptRef { task_id: done.id, attempt: 1 }, result: None }])
        .await
        .unwrap();
    store.cancel(created[1].task.id, None).await.unwrap();
    let week = Duration::from_secs(7 * 86_400);
    assert_eq!(store.prune(week, week, 100).await.unwrap(), 0, "nothing is old enough");
    // A retention of zero prunes what completed before now: let the clock move past it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.prune(Duration::ZERO, Duration::ZERO, 100).await.unwrap(), 2);
    assert!(store.get_task(done.id).await.unwrap().is_none());
    for pruned in [done.id, created[1].task.id] {
        assert!(store.history(pruned).await.unwrap().is_empty(), "history goes with its task");
    }
    assert!(store.get_task(created[2].task.id).await.unwrap().is_some(), "queued tasks stay");
    store.compact_counters().await.unwrap();
    assert_eq!(taskq::store::stats(&*store).await.unwrap().total_tasks, 1);
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn migrations_revert_and_apply_again(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.create_tasks(&[noop("before"), noop("snoozed")]).await.unwrap();
    // An event of every kind the migrations brought, for the reverts to carry over.
    let claimed = store.claim("w", "default", 1, GRACE).await.unwrap().remove(0);
    let snooze = Failure {
        attempt: AttemptRef { task_id: claimed.id, attempt: 1 },
        kind: FailureKind::Snoozed,
        error: "snoozed for 1s".into(),
        retry_in: Some(Duration::from_secs(1)),
    };
    assert_eq!(store.fail("w", &[snooze]).await.unwrap().len(), 1);
    // Each `migrate down` reverts the newest migration, as many times as there are.
    let dir = match backend {
        Backend::Postgres => "migrations/postgres",
        Backend::Sqlite => "migrations/sqlite",
    };
    let migrations = std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".up.sql"))
        .count();
    for step in 0..migrations {
        assert!(store.get_task(uuid::Uuid::now_v7()).await.is_ok(), "the tables stand before step {step}");
        store.migrate_down().await.unwrap();
    }
    assert!(store.get_task(uuid::Uuid::now_v7()).await.is_err(), "the tables are gone");
    store.migrate().await.unwrap();
    assert_eq!(store.create_tasks(&[noop("after")]).await.unwrap().len(), 1);
}

#[actix_rt::test]
async fn closing_a_store_wakes_workers_only_if_it_changed_the_queue() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen(taskq::store::WAKEUP_CHANNEL).await.unwrap();

    // As `taskq migrate` and `taskq check` use it: open, read, close.
    let quiet = db.store().await;
    quiet.last_event_id().await.unwrap();
    quiet.close().await;
    assert!(!woken(&mut listener).await, "a store that changed nothing woke the workers");

    let busy = db.store().await;
    busy.create_tasks(&[noop("wakes")]).await.unwrap();
    busy.close().await;
    assert!(woken(&mut listener).await, "an insert wakes the workers");
}

#[actix_rt::test]
async fn a_rescue_wakes_workers_only_if_it_requeued_a_task() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen(taskq::store::WAKEUP_CHANNEL).await.unwrap();
    let mut rescue = async |decide: &taskq::store::RetryDecision| {
        store.create_tasks(&[noop("orphan")]).await.unwrap();
        assert!(woken(&mut listener).await, "the insert wakes the workers");
        store.claim("never-heartbeat", "default", 1, GRACE).await.unwrap();
        assert_eq!(store.rescue(10, decide).await.unwrap().len(), 1);
        woken(&mut listener).await
    };
    assert!(!rescue(&|_| None).await, "a rescue that failed its task for good woke the workers");
    assert!(rescue(&|_| Some(Duration::ZERO)).await, "a rescue that requeued its task wakes the workers");
    store.close().await;
}

#[actix_rt::test]
async fn a_connection_the_server_closed_while_it_sat_idle_is_replaced_not_failed() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let id = store.create_tasks(&[noop("kept")]).await.unwrap()[0].task.id;
    // Idle past the ping threshold (1 s), then every connection of the pool is cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    // With a timeout, pg_terminate_backend returns once the backend has exited.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "the store held a connection");
    assert!(cut.iter().all(|&exited| exited), "the cut backends did not exit");
    let task = store.get_task(id).await.expect("a fresh connection answers");
    assert_eq!(task.map(|t| t.id), Some(id));
    store.close().await;
}

/// Whether a wake-up arrives within half a second (one is sent within milliseconds).
async fn woken(listener: &mut sqlx::postgres::PgListener) -> bool {
    tokio::time::timeout(Duration::from_millis(500), listener.recv()).await.is_ok()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_manual_retry_wakes_workers_only_if_it_requeued_the_task(#[case] backend: Backend) {
    use futures_util::StreamExt;
    use taskq::store::Hint;
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut wakeups = store.wakeups().await.unwrap();
    let mut next_hint = async || {
        tokio::time::timeout(Duration::from_secs(20), wakeups.next())
            .await
            .expect("a wake-up in time")
            .unwrap()
            .unwrap()
    };
    let runnable_in = |queue: &str| Hint::Runnable(Some(vec![queue.to_owned()]));
    // Each queue's wake-ups are told apart by name: a refused retry would wake `refused`.
    let mut queued = noop("stays queued");
    queued.queue = "refused".into();
    let queued = store.create_tasks(&[queued]).await.unwrap()[0].task.id;
    assert_eq!(next_hint().await, runnable_in("refused"), "the insert's own wake-up");
    let mut cancelled = noop("cancelled, then retried");
    cancelled.queue = "done".into();
    let cancelled = store.create_tasks(&[cancelled]).await.unwrap()[0].task.id;
    assert_eq!(next_hint().await, runnable_in("done"), "the insert's own wake-up");
    assert!(matches!(store.cancel(cancelled, None).await.unwrap(), Transition::Done(_)));

    assert_eq!(store.retry(queued).await.unwrap(), Transition::Conflict(TaskStatus::Queued));
    assert_eq!(store.retry(uuid::Uuid::now_v7()).await.unwrap(), Transition::NotFound);
    assert!(matches!(store.retry(cancelled).await.unwrap(), Transition::Done(_)));
    // Wake-ups arrive in the order they were sent, so a refused retry that woke the
    // workers would show here, before the one the done retry sent.
    assert_eq!(next_hint().await, runnable_in("done"), "only the retry that requeued its task woke anyone");
    store.close().await;
}
