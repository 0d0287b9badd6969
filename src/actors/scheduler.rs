//! The Scheduler: every worker runs one; the one that holds the scheduler's
//! leadership enqueues the schedules' ticks.
//!
//! Each pass is one store call that wins or renews the lease and, for the leader,
//! reads what is due (on PostgreSQL, one statement). A follower tries again every
//! [`PASS_INTERVAL`]; a lease that is not renewed runs out after [`LEADER_TTL`], so a
//! leader killed with `kill -9` is replaced within `LEADER_TTL + PASS_INTERVAL`. The
//! leader passes at the earliest next tick, and at least every [`PASS_INTERVAL`] to
//! renew its lease; with nothing due, that pass is the only statement it sends.
//!
//! For each due schedule, `schedule::plan` decides the ticks to enqueue from the
//! database's time of the pass, never this process's clock. The enqueue is fenced on
//! the term, and on each schedule's revision and next tick, so a process that lost its
//! lease, or a definition changed meanwhile, writes nothing; and a tick's task id is
//! derived from (schedule, tick), so the primary key refuses a second one.
//!
//! At shutdown the leader resigns, so another process takes over at its next pass
//! instead of waiting for the lease to run out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::messages::Stop;
use crate::metrics;
use crate::schedule::{Cadence, plan};
use crate::store::{Advance, NewTask, Pass, Store, StoreError, Term, TickTask, tick_task_id};

/// How long the leadership lease lasts unless renewed: how long schedules wait for a
/// new leader after one died without resigning.
pub const LEADER_TTL: Duration = Duration::from_secs(5);

/// The most time between two passes: how often the leader renews its lease, and how
/// often followers try to win it.
pub const PASS_INTERVAL: Duration = Duration::from_secs(1);

/// How long [`stop`] waits for the Scheduler to resign its leadership; past it, the
/// lease runs out on its own.
const RESIGN_PATIENCE: Duration = Duration::from_secs(2);

/// The most due schedules one pass handles; a full pass is followed by another at once.
const DUE_BATCH: u32 = 100;

/// Takes part in the scheduler's election and, while it leads, enqueues ticks.
pub struct Scheduler {
    store: Arc<dyn Store>,
    /// This process's name in the election (its worker id).
    candidate: Arc<str>,
    /// The term this process holds, as of its last pass.
    term: Option<Term>,
    /// The database time from which this leader has watched the schedules without a
    /// break: ticks at or after it are on time, earlier ones were missed.
    since: Option<DateTime<Utc>>,
    /// When the database last confirmed the term; past [`LEADER_TTL`] without a
    /// confirmation this process no longer counts itself the leader.
    confirmed: Option<Instant>,
    /// A pass is in flight.
    running: bool,
    stopping: bool,
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, candidate: Arc<str>) -> Self {
        Self { store, candidate, term: None, since: None, confirmed: None, running: false, stopping: false }
    }

    fn pass(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.stopping {
            return;
        }
        self.running = true;
        let (store, candidate) = (Arc::clone(&self.store), Arc::clone(&self.candidate));
        let (term, since) = (self.term.clone(), self.since);
        let work = async move { run_pass(&*store, &candidate, term, since).await };
        ctx.spawn(super::io(work).into_actor(self).map(|outcome, scheduler, ctx| {
            scheduler.running = false;
            let wait = match outcome {
                Ok(outcome) => {
                    scheduler.settle(outcome.term, outcome.since);
                    outcome.wait
                }
                Err(error) => {
                    tracing::warn!(error = %error, "scheduler pass failed; trying again");
                    if scheduler.confirmed.is_none_or(|at| at.elapsed() >= LEADER_TTL) {
                        scheduler.settle(None, None);
                    }
                    PASS_INTERVAL
                }
            };
            if scheduler.stopping {
                scheduler.resign(ctx);
            } else {
                ctx.run_later(wait, |scheduler, ctx| scheduler.pass(ctx));
            }
        }));
    }

    /// Records the outcome of a pass: the term held (if any) and the watch's start.
    fn settle(&mut self, term: Option<Term>, since: Option<DateTime<Utc>>) {
        match (&self.term, &term) {
            (None, Some(won)) => {
                tracing::info!(elected_at = %won.elected_at, "this process now leads the scheduler")
            }
            (Some(_), None) => tracing::info!("this process no longer leads the scheduler"),
            _ => {}
        }
        self.confirmed = term.as_ref().map(|_| Instant::now());
        metrics::scheduler_leader(&self.candidate, term.is_some());
        self.term = term;
        self.since = since;
    }

    /// Gives the leadership up (if held) and stops.
    fn resign(&mut self, ctx: &mut Context<Self>) {
        let Some(term) = self.term.take() else {
            ctx.stop();
            return;
        };
        let store = Arc::clone(&self.store);
        let resign = async move {
            if let Err(error) = store.resign(&term).await {
                tracing::warn!(error = %error, "could not resign the scheduler's leadership; it runs out with its lease");
            }
        };
        metrics::scheduler_leader(&self.candidate, false);
        ctx.wait(super::io(resign).into_actor(self).map(|(), _, ctx| ctx.stop()));
    }
}

/// What a pass leaves behind: the term held, the watch's start, and how long to wait
/// before the next pass.
struct Outcome {
    term: Option<Term>,
    since: Option<DateTime<Utc>>,
    wait: Duration,
}

async fn run_pass(
    store: &dyn Store,
    candidate: &str,
    held: Option<Term>,
    since: Option<DateTime<Utc>>,
) -> Result<Outcome, StoreError> {
    let pass =
        store.scheduler_pass(candidate, held.as_ref().map(|t| t.elected_at), LEADER_TTL, DUE_BATCH).await;
    metrics::scheduler_statements(1);
    let Some(pass) = pass? else {
        return Ok(Outcome { term: None, since: None, wait: PASS_INTERVAL });
    };
    let term = Term { leader_id: candidate.to_owned(), elected_at: pass.elected_at };
    // A new term watches from its election: what fell due before was missed.
    let since = match (held, since) {
        (Some(held), Some(since)) if held == term => since,
        _ => pass.elected_at,
    };
    let Planned { advances, ticks, skipped, next_due } = plan_pass(&pass, since);
    if !advances.is_empty() {
        let enqueued = store.enqueue_ticks(Some(&term), &advances, &ticks).await;
        metrics::scheduler_statements(1);
        for (name, count) in enqueued? {
            metrics::ticks_enqueued(&name, count as u64);
            let dropped = skipped.iter().find(|(s, _)| *s == name).map_or(0, |(_, n)| *n);
            if dropped > 0 {
                metrics::ticks_skipped(&name, dropped as u64);
                tracing::info!(schedule = %name, ticks = dropped, "skipped missed ticks (catch_up)");
            }
        }
    }
    if pass.due.len() == DUE_BATCH as usize {
        // More is due: keep the watch's start and go on at once.
        return Ok(Outcome { term: Some(term), since: Some(since), wait: Duration::ZERO });
    }
    let wait = next_due
        .map_or(PASS_INTERVAL, |due| (due - pass.now).to_std().unwrap_or_default().min(PASS_INTERVAL));
    Ok(Outcome { term: Some(term), since: Some(pass.now), wait })
}

/// What one pass writes: the advances and tasks, the ticks each schedule skips, and
/// the earliest next tick after it.
#[derive(Default)]
struct Planned {
    advances: Vec<Advance>,
    ticks: Vec<TickTask>,
    skipped: Vec<(String, usize)>,
    next_due: Option<DateTime<Utc>>,
}

fn plan_pass(pass: &Pass, since: DateTime<Utc>) -> Planned {
    let Planned { mut advances, mut ticks, mut skipped, mut next_due } =
        Planned { next_due: pass.next_due, ..Planned::default() };
    for schedule in &pass.due {
        let cadence = match Cadence::parse(&schedule.cron, &schedule.timezone) {
            Ok(cadence) => cadence,
            Err(error) => {
                tracing::error!(schedule = %schedule.name, error = %error, "schedule cannot tick");
                continue;
            }
        };
        // Ticks before its resumption fell in its pause.
        let since = schedule.resumed_at.map_or(since, |resumed| resumed.max(since));
        let planned = plan(&cadence, schedule.catch_up, schedule.next_tick, since, pass.now);
        let Some(next_tick) = planned.next_tick else {
            tracing::error!(schedule = %schedule.name, "schedule has no tick after now");
            continue;
        };
        next_due = Some(next_due.map_or(next_tick, |due| due.min(next_tick)));
        let first = ticks.len();
        ticks.extend(planned.ticks.iter().map(|tick| TickTask {
            schedule: schedule.name.clone(),
            tick_at: Some(*tick),
            task: NewTask { id: tick_task_id(&schedule.name, *tick), ..schedule.task.instantiate() },
        }));
        advances.push(Advance {
            name: schedule.name.clone(),
            revision: schedule.revision,
            expected: schedule.next_tick,
            next_tick,
            last_tick: planned.ticks.last().copied(),
            last_task_id: ticks[first..].last().map(|tick| tick.task.id),
        });
        skipped.push((schedule.name.clone(), planned.skipped));
    }
    Planned { advances, ticks, skipped, next_due }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::scheduler_leader(&self.candidate, false);
        self.pass(ctx);
    }
}

impl Handler<Stop> for Scheduler {
    type Result = ();

    /// Resigns now, or as soon as the pass in flight returns (it may have renewed).
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.stopping = true;
        if !self.running {
            self.resign(ctx);
        }
    }
}

/// Stops a Scheduler and waits (a little) until it has resigned.
pub async fn stop(scheduler: &Addr<Scheduler>) {
    let _ = scheduler.send(Stop).await;
    let resigned = async {
        while scheduler.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(RESIGN_PATIENCE, resigned).await.is_err() {
        tracing::warn!("the scheduler did not stop in time; its lease runs out on its own");
    }
}
