//! A schedule every second across three worker processes, whose leader is killed
//! with `kill -9` twice (and replaced at once): the checker proves that no tick got two
//! tasks and that every missing tick fell while no process led; the test measures how
//! long each handover took.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// The leader's id, once `GET /api/schedules` names one other than `not`.
async fn leader(api: &Api, not: Option<&str>) -> String {
    wait_for("a scheduler leader", Duration::from_secs(30), || async {
        let (_, list) = api.get("/api/schedules").await.ok()?;
        let id = list["leader"]["leader_id"].as_str()?.to_owned();
        (Some(id.as_str()) != not).then_some(id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_neither_doubles_nor_drops_a_tick_beyond_its_handover() {
    let _gate = shared();
    const TEST: &str = "kill -9 of the scheduler's leader";
    let (run, kills) = scale((Duration::from_secs(45), 2), (Duration::from_secs(300), 10));
    let scratch = Scratch::new("schedules");
    let pg = Postgres::start();
    let url = pg.database("schedules").await;
    let server = Proc::start(Spec::new("server", &url, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let mut generation = 0;
    let mut fleet: Vec<Proc> = Vec::new();
    for _ in 0..3 {
        generation += 1;
        fleet.push(Proc::start(Spec::new("worker", &url, &format!("w{generation}")), &scratch).await);
    }
    let schedule = json!({ "name": "every-second", "cron": "* * * * * *",
                           "task": { "type": "noop", "name": "tick" } });
    let response = api.client.post(api.url("/api/schedules")).json(&schedule).send().await.unwrap();
    assert_eq!(response.status(), 201);

    let began = Instant::now();
    let mut handovers = Vec::new();
    for kill in 1..=kills {
        tokio::time::sleep(run / (kills + 1) as u32).await;
        let current = leader(&api, None).await;
        let victim = fleet.iter().position(|p| p.spec.worker_id == current).expect("the leader is a worker");
        let mut dead = fleet.swap_remove(victim);
        dead.kill9();
        let killed = Instant::now();
        let next = leader(&api, Some(&current)).await;
        handovers.push(killed.elapsed());
        println!("{TEST}: kill {kill}: {current} → {next} in {:?}", killed.elapsed());
        generation += 1;
        fleet.push(Proc::start(Spec::new("worker", &url, &format!("w{generation}")), &scratch).await);
    }
    tokio::time::sleep(run.saturating_sub(began.elapsed())).await;
    // Stop the fleet first, so the ticks checked are final.
    drop(fleet);

    let report = assert_invariants(TEST, &url, api.acknowledged(), false).await;
    let worst = handovers.iter().max().copied().unwrap_or_default();
    figure(TEST, "run / leader kills", format!("{} s / {kills}", run.as_secs()));
    figure(TEST, "ticks enqueued", report.scheduled_ticks);
    figure(TEST, "ticks missed during handovers (catch_up latest)", report.missed_ticks);
    figure(
        TEST,
        "slowest handover after the kill",
        format!("{:.1} s (lease 5 s + a pass 1 s)", worst.as_secs_f64()),
    );
    assert!(report.scheduled_ticks as u64 >= run.as_secs() / 2, "the schedule ticked: {}", report.summary());
    assert!(report.missed_ticks > 0, "a killed leader's lease had to run out before the next could lead");
    assert!(worst <= Duration::from_secs(9), "a handover took {worst:?}");
    drop(server);
}
