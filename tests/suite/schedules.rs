//! Periodic tasks against a real database: one task per tick carrying its schedule and
//! tick, the API and its 400s, pause and resume, run now, the leadership lease and its
//! fences, catch-up after downtime, and the schedules of `taskq.toml`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use rstest::rstest;
use serde_json::{Value, json};
use taskq::actors::Worker;
use taskq::handlers::Registry;
use taskq::store::{
    Advance, Backend, CatchUp, ListFilter, NewTask, ScheduleSpec, TaskTemplate, Term, TickTask, tick_task_id,
};

use crate::api::json_of;
use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn every_second(name: &str) -> Value {
    json!({ "name": name, "cron": "* * * * * *", "task": { "type": "noop", "name": format!("{name} tick") } })
}

fn time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{e}: {text}")).to_utc()
}

/// The tasks of a schedule, newest first.
async fn tasks_of(app: &TestApp, schedule: &str) -> Vec<Value> {
    let (status, body) = json_of(app.get(&format!("/api/tasks?schedule={schedule}&limit=500")).await).await;
    assert_eq!(status, 200, "{body}");
    body["tasks"].as_array().unwrap().clone()
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_schedule_enqueues_one_task_per_tick_carrying_its_schedule_and_tick(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, created) = json_of(app.post("/api/schedules", &every_second("heartbeat")).await).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["timezone"].as_str(), created["catch_up"].as_str()), (Some("UTC"), Some("latest")));
    assert_eq!(created["task"]["timeout_seconds"], 30, "the template has its defaults applied");

    let tasks = wait_for("three ticks", DEADLINE, || async {
        let tasks = tasks_of(&app, "heartbeat").await;
        (tasks.len() >= 3).then_some(tasks)
    })
    .await;
    let mut ticks: Vec<DateTime<Utc>> = tasks.iter().map(|t| time(&t["tick_at"])).collect();
    ticks.reverse();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "one task per tick, none missed: {ticks:?}"
        );
    }
    assert!(tasks.iter().all(|t| t["schedule"] == "heartbeat" && t["name"] == "heartbeat tick"));
    let first = &tasks[tasks.len() - 1];
    let (_, history) =
        json_of(app.get(&format!("/api/tasks/{}/history", first["id"].as_str().unwrap())).await).await;
    assert_eq!(history[0]["event_type"], "task_queued");
    assert_eq!((&history[0]["schedule"], &history[0]["tick_at"]), (&first["schedule"], &first["tick_at"]));
    let (_, ordinary) = json_of(app.get("/api/tasks?schedule=").await).await;
    let plain = app.create(json!({ "name": "plain", "type": "noop" })).await;
    assert!(plain.get("schedule").is_none() && plain.get("tick_at").is_none(), "{plain}");
    assert!(ordinary["tasks"].is_array(), "an empty filter is no filter");

    let (_, list) = json_of(app.get("/api/schedules").await).await;
    let listed = &list["schedules"][0];
    assert!(listed["last_task_id"].is_string() && listed["last_task_status"].is_string(), "{listed}");
    assert!(time(&listed["next_tick"]) > time(&listed["last_tick"]));
    assert!(list["leader"]["leader_id"].as_str().is_some_and(|id| id.starts_with("test-worker-")), "{list}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("taskq_schedule_ticks_enqueued_total{schedule=\"heartbeat\"}"), "{metrics}");
    assert!(metrics.contains("taskq_scheduler_leader{"), "{metrics}");
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn bad_schedules_are_answered_400_naming_the_field_the_expression_or_the_zone(
    #[case] backend: Backend,
) {
    let app =
        spawn_app_with(backend, Registry::with_builtins(0.01), |c| c.role = taskq::config::Role::Server)
            .await;
    let task = json!({ "type": "noop", "name": "n" });
    for (body, named) in [
        (json!({ "name": "a", "cron": "61 * * * *", "task": task }), "\"61 * * * *\""),
        (json!({ "name": "a", "cron": "@fortnightly", "task": task }), "@fortnightly"),
        (json!({ "name": "a", "cron": "@daily", "timezone": "Mars/Olympus", "task": task }), "Mars/Olympus"),
        (json!({ "name": "a", "cron": "@daily", "catch_up": "some", "task": task }), "catch_up"),
        (json!({ "name": "a", "cron": "@daily" }), "task is required"),
        (json!({ "cron": "@daily", "task": task }), "name is required"),
        (json!({ "name": "Bad Name", "cron": "@daily", "task": task }), "name"),
        (json!({ "name": "a", "cron": "@daily", "task": { "type": "nope", "name": "n" } }), "task.type"),
        (
            json!({ "name": "a", "cron": "@daily", "task": { "type": "noop", "name": "n", "delay_seconds": 5 } }),
            "task.delay_seconds",
        ),
        (
            json!({ "name": "a", "cron": "@daily", "task": { "type": "noop", "name": "n", "priority": 5000 } }),
            "task.priority",
        ),
        (json!({ "name": "a", "cron": "@daily", "task": task, "every": 5 }), "every"),
    ] {
        let (status, answer) = json_of(app.post("/api/schedules", &body).await).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(named), "{body}: {answer}");
    }

    let body = json!({ "name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "task": task });
    assert_eq!(app.post("/api/schedules", &body).await.status(), 201);
    assert_eq!(app.post("/api/schedules", &body).await.status(), 409, "a name is unique");
    let patch = |body: Value| app.client.patch(app.url("/api/schedules/nightly")).json(&body).send();
    let (status, answer) = json_of(patch(json!({ "cron": "0 0 31 2 *" })).await.unwrap()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("never matches"), "{answer}");
    let (status, changed) =
        json_of(patch(json!({ "cron": "30 4 * * *", "catch_up": "all" })).await.unwrap()).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!((changed["cron"].as_str(), changed["catch_up"].as_str()), (Some("30 4 * * *"), Some("all")));
    let next = time(&changed["next_tick"]).with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(next.format("%H:%M").to_string(), "04:30", "ticks restart on the new expression, in its zone");

    assert_eq!(app.get("/api/schedules/unknown").await.status(), 404);
    assert_eq!(app.post("/api/schedules/unknown/pause", &json!({})).await.status(), 404);
    let delete = |name: &str| app.client.delete(app.url(&format!("/api/schedules/{name}"))).send();
    assert_eq!(delete("nightly").await.unwrap().status(), 204);
    assert_eq!(delete("nightly").await.unwrap().status(), 404);
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn a_paused_schedule_enqueues_nothing_and_resuming_follows_catch_up(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.post("/api/schedules", &every_second("pausable")).await.status(), 201);
    wait_for("a first tick", DEADLINE, || async {
        (!tasks_of(&app, "pausable").await.is_empty()).then_some(())
    })
    .await;
    let (status, paused) = json_of(app.post("/api/schedules/pausable/pause", &json!({})).await).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)));
    let answered = app.db.store().await.clock().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let during = tasks_of(&app, "pausable").await;
    assert!(
        during.iter().all(|t| time(&t["created_at"]) <= answered),
        "no task is enqueued once the pause is answered"
    );

    let (status, resumed) = json_of(app.post("/api/schedules/pausable/resume", &json!({})).await).await;
    assert_eq!(status, 200);
    let resumed = time(&resumed["updated_at"]);
    let after = wait_for("ticks after the resume", DEADLINE, || async {
        let tasks = tasks_of(&app, "pausable").await;
        tasks.iter().any(|t| time(&t["tick_at"]) > resumed).then_some(tasks)
    })
    .await;
    let caught_up: Vec<&Value> =
        after.iter().filter(|t| time(&t["created_at"]) > answered && time(&t["tick_at"]) < resumed).collect();
    assert_eq!(caught_up.len(), 1, "catch_up latest: one task for the ticks of the pause: {caught_up:?}");
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn run_now_enqueues_the_task_at_once_with_its_schedule_and_no_tick(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({ "name": "yearly", "cron": "@yearly", "paused": true,
                       "task": { "type": "noop", "name": "report", "payload": { "year": 1 }, "queue": "reports" } });
    assert_eq!(app.post("/api/schedules", &body).await.status(), 201);
    let (status, task) = json_of(app.post("/api/schedules/yearly/trigger", &json!({})).await).await;
    assert_eq!(status, 201, "{task}");
    assert_eq!((task["schedule"].as_str(), task["queue"].as_str()), (Some("yearly"), Some("reports")));
    assert_eq!(task["payload"], json!({ "year": 1 }));
    assert!(task.get("tick_at").is_none(), "a manual run is no tick: {task}");
    let (_, schedule) = json_of(app.get("/api/schedules/yearly").await).await;
    assert_eq!(schedule["last_task_id"], task["id"]);
    assert!(schedule["last_tick"].is_null());
    assert_eq!(app.post("/api/schedules/nope/trigger", &json!({})).await.status(), 404);
    app.stop().await;
}

fn spec(name: &str, cron: &str, catch_up: CatchUp) -> ScheduleSpec {
    let task = TaskTemplate::of(&noop(name));
    ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        timezone: "UTC".into(),
        task,
        catch_up,
        paused: false,
        from_file: false,
    }
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn one_candidate_leads_until_its_lease_runs_out_and_a_replaced_leader_writes_nothing(
    #[case] backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let ttl = Duration::from_millis(600);
    let first = store.scheduler_pass("a", None, ttl, 10).await.unwrap().expect("the first candidate wins");
    assert!(store.scheduler_pass("b", None, ttl, 10).await.unwrap().is_none(), "the lease holds");
    let renewed = store.scheduler_pass("a", Some(first.elected_at), ttl, 10).await.unwrap().unwrap();
    assert_eq!(renewed.elected_at, first.elected_at, "a renewal keeps its term");
    assert!(renewed.expires_at > first.expires_at);

    let now = store.clock().await.unwrap();
    let created =
        store.create_schedule(&spec("s", "* * * * * *", CatchUp::Latest), now).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let won = store.scheduler_pass("b", None, ttl, 10).await.unwrap().expect("b wins an expired lease");
    assert!(won.elected_at > first.elected_at);
    assert_eq!(won.due.len(), 1);

    let tick = |at: DateTime<Utc>| {
        let advance = Advance {
            name: "s".into(),
            revision: created.revision,
            expected: created.next_tick,
            next_tick: at,
            last_tick: Some(at),
            last_task_id: None,
        };
        let run = TickTask { schedule: "s".into(), tick_at: Some(at), task: noop("s") };
        (advance, run)
    };
    let stale = Term { leader_id: "a".into(), elected_at: first.elected_at };
    let (advance, run) = tick(created.next_tick);
    assert!(
        store.enqueue_ticks(Some(&stale), &[advance], &[run]).await.unwrap().is_empty(),
        "a is fenced off"
    );
    let current = Term { leader_id: "b".into(), elected_at: won.elected_at };
    let (advance, run) = tick(created.next_tick);
    assert_eq!(store.enqueue_ticks(Some(&current), &[advance], &[run]).await.unwrap(), [("s".to_owned(), 1)]);
    assert!(
        store.scheduler_pass("a", Some(first.elected_at), ttl, 10).await.unwrap().is_none(),
        "the old term cannot renew the new one"
    );
    store.resign(&current).await.unwrap();
    assert!(store.leader().await.unwrap().is_none(), "a resigned lease is free at once");
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn the_primary_key_refuses_a_second_task_for_one_tick(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = store.clock().await.unwrap();
    let tick = now.duration_trunc(chrono::Duration::seconds(1)).unwrap();
    let schedule =
        store.create_schedule(&spec("s", "* * * * * *", CatchUp::Latest), tick).await.unwrap().unwrap();
    // Advances that leave the schedule where it is, so only the tick's task id stands
    // between the second enqueue and a duplicate.
    let again = || {
        let advance = Advance {
            name: "s".into(),
            revision: schedule.revision,
            expected: tick,
            next_tick: tick,
            last_tick: Some(tick),
            last_task_id: None,
        };
        let task = NewTask { id: tick_task_id("s", tick), ..noop("s") };
        (advance, TickTask { schedule: "s".into(), tick_at: Some(tick), task })
    };
    let (advance, run) = again();
    assert_eq!(store.enqueue_ticks(None, &[advance], &[run]).await.unwrap(), [("s".to_owned(), 1)]);
    let (advance, run) = again();
    assert_eq!(store.enqueue_ticks(None, &[advance], &[run]).await.unwrap(), [("s".to_owned(), 0)]);
    let filter = ListFilter { schedule: Some("s".into()), limit: 10, ..Default::default() };
    assert_eq!(store.list_tasks(&filter).await.unwrap().len(), 1);
}

#[rstest]
#[case::skip(CatchUp::Skip, 0)]
#[case::latest(CatchUp::Latest, 1)]
#[case::all(CatchUp::All, 10)]
#[actix_rt::test]
async fn after_downtime_catch_up_decides_the_missed_ticks(
    #[case] catch_up: CatchUp,
    #[case] expected: usize,
) {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let minute = store.clock().await.unwrap().duration_trunc(chrono::Duration::minutes(1)).unwrap();
    // Nobody led for the last ten minute ticks.
    let missed_from = minute - chrono::Duration::minutes(9);
    store.create_schedule(&spec("minutely", "* * * * *", catch_up), missed_from).await.unwrap().unwrap();
    let worker =
        Worker::start(store.clone(), Arc::new(Registry::with_builtins(0.01)), test_config(&db.url).worker);
    let advanced = wait_for("the leader's first pass", DEADLINE, || async {
        store.schedule("minutely").await.unwrap().filter(|s| s.next_tick > minute)
    })
    .await;
    let filter = ListFilter { schedule: Some("minutely".into()), limit: 100, ..Default::default() };
    let missed: Vec<DateTime<Utc>> = store
        .list_tasks(&filter)
        .await
        .unwrap()
        .iter()
        .filter_map(|t| t.tick_at)
        .filter(|t| *t <= minute)
        .collect();
    assert_eq!(missed.len(), expected, "{catch_up:?}: {missed:?}");
    if expected > 0 {
        assert_eq!(missed.iter().max(), Some(&minute), "the most recent missed tick is kept");
        assert_eq!(advanced.last_tick.map(|t| t >= minute), Some(true));
    }
    worker.shutdown().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn schedules_of_the_file_are_applied_at_start_and_win_over_api_edits(#[case] backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let registry = Registry::with_builtins(0.01);
    let declared = [json!({ "name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                            "task": { "type": "noop", "name": "report" } })];
    taskq::http::schedules::declare(&*store, &registry, 30, &declared).await.unwrap();
    let from_file = store.schedule("nightly").await.unwrap().unwrap();
    assert!(from_file.from_file);

    let mut edited = spec("nightly", "*/5 * * * *", CatchUp::All);
    edited.paused = true;
    store.update_schedule(&edited, from_file.revision, Some(from_file.next_tick)).await.unwrap().unwrap();
    taskq::http::schedules::declare(&*store, &registry, 30, &declared).await.unwrap();
    let again = store.schedule("nightly").await.unwrap().unwrap();
    assert_eq!(
        (again.cron.as_str(), again.timezone.as_str(), again.catch_up),
        ("0 3 * * *", "Europe/Berlin", CatchUp::Latest)
    );
    assert_eq!(again.task.name, "report");
    assert!(again.paused, "a pause is kept unless the file sets paused");

    let bad = [json!({ "name": "broken", "cron": "0 3 * *", "task": { "type": "noop", "name": "n" } })];
    let error = taskq::http::schedules::declare(&*store, &registry, 30, &bad).await.unwrap_err().to_string();
    assert!(error.contains("[[schedules]] \"broken\"") && error.contains("0 3 * *"), "{error}");
}
