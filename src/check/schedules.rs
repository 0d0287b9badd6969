//! The checker's view of schedules: invariants 14 to 16.
//!
//! | # | invariant |
//! |---|---|
//! | 14 | no two tasks for one tick of one schedule |
//! | 15 | between two enqueued ticks of a schedule, every tick its cron names and no task has fell while no process led (between a term's last renewal and the election of the next) or while the schedule was paused |
//! | 16 | no tick's task is created while its schedule is paused (after the pause was acknowledged) |
//!
//! Ticks are held against the schedule's current definition, so only ticks after its
//! last change (`created` or `updated` in `schedule_history`) are compared; manual
//! runs (no `tick_at`) are not ticks. A gap is only seen between two enqueued ticks:
//! ticks missed after the last one (a fleet stopped for good) are nobody's to enqueue.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{CheckError, Invariant, Options, Report, Source, Violation};
use crate::schedule::Cadence;
use crate::store::Task;

/// The most ticks enumerated in one gap between two enqueued ticks.
const GAP_MAX: usize = 100_000;

/// What the database says about schedules, besides their tasks.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Each schedule's current expression and zone, by name.
    pub schedules: Vec<(String, String, String)>,
    /// Each schedule's history, oldest first: (schedule, event, when).
    pub history: Vec<(String, String, DateTime<Utc>)>,
    /// Each leadership term: (the previous term's last renewal, its election).
    pub terms: Vec<(Option<DateTime<Utc>>, DateTime<Utc>)>,
}

/// One tick's task.
#[derive(Debug, Clone, Copy)]
struct Tick {
    at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    task: uuid::Uuid,
}

/// Collects the ticks page by page, then checks them.
pub struct ScheduleCheck {
    facts: Facts,
    ticks: HashMap<String, Vec<Tick>>,
}

impl ScheduleCheck {
    pub fn new(facts: Facts) -> Self {
        Self { facts, ticks: HashMap::new() }
    }

    pub fn observe(&mut self, tasks: &[Task]) {
        for task in tasks {
            if let (Some(schedule), Some(at)) = (&task.schedule, task.tick_at) {
                let tick = Tick { at, created_at: task.created_at, task: task.id };
                self.ticks.entry(schedule.clone()).or_default().push(tick);
            }
        }
    }

    pub fn sweep(mut self, options: &Options, now: DateTime<Utc>, report: &mut Report) {
        let slack = super::slack(options) + chrono::Duration::seconds(1);
        let definitions: BTreeMap<&str, (&str, &str)> =
            self.facts.schedules.iter().map(|(n, c, z)| (n.as_str(), (c.as_str(), z.as_str()))).collect();
        for (schedule, mut ticks) in std::mem::take(&mut self.ticks) {
            ticks.sort_by_key(|t| t.at);
            report.scheduled_ticks += ticks.len();
            for pair in ticks.windows(2).filter(|pair| pair[0].at == pair[1].at) {
                report.violations.push(Violation {
                    invariant: Invariant::ScheduleTickOnce,
                    task_id: Some(pair[1].task),
                    detail: format!("schedule {schedule:?} has two tasks for its tick {}", pair[1].at),
                });
            }
            let pauses = self.pauses(&schedule, now);
            for tick in ticks.iter().filter(|t| {
                pauses.iter().any(|(from, to)| t.created_at > *from + slack && t.created_at < *to)
            }) {
                report.violations.push(Violation {
                    invariant: Invariant::SchedulePaused,
                    task_id: Some(tick.task),
                    detail: format!("schedule {schedule:?} enqueued its tick {} while paused", tick.at),
                });
            }
            let Some((cron, zone)) = definitions.get(schedule.as_str()) else { continue };
            let Ok(cadence) = Cadence::parse(cron, zone) else { continue };
            let changed = self.last_change(&schedule);
            let current: Vec<DateTime<Utc>> =
                ticks.iter().map(|t| t.at).filter(|at| changed.is_none_or(|c| *at > c)).collect();
            // (from, to); the first term has no predecessor and explains all before it.
            let windows: Vec<(Option<DateTime<Utc>>, DateTime<Utc>)> = pauses
                .iter()
                .map(|(from, to)| (Some(*from), *to))
                .chain(self.facts.terms.iter().copied())
                .collect();
            for pair in current.windows(2) {
                let gap = cadence.between(
                    pair[0] + chrono::Duration::nanoseconds(1),
                    pair[1] - chrono::Duration::nanoseconds(1),
                    GAP_MAX,
                );
                let (explained, unexplained): (Vec<_>, Vec<_>) = gap.into_iter().partition(|t| {
                    windows.iter().any(|(from, to)| from.is_none_or(|f| *t >= f - slack) && *t <= *to + slack)
                });
                report.missed_ticks += explained.len();
                if let (Some(first), Some(last)) = (unexplained.first(), unexplained.last()) {
                    report.violations.push(Violation {
                        invariant: Invariant::ScheduleGap,
                        task_id: None,
                        detail: format!(
                            "schedule {schedule:?} has no task for {} tick(s) from {first} to {last}, \
                             while a process led and the schedule ran",
                            unexplained.len()
                        ),
                    });
                }
            }
        }
    }

    /// The schedule's pauses: from each `paused` to the next `resumed` (or `now`).
    fn pauses(&self, schedule: &str, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut pauses = Vec::new();
        let mut since = None;
        for (_, event, at) in self.facts.history.iter().filter(|(s, _, _)| s == schedule) {
            match event.as_str() {
                "paused" => since = since.or(Some(*at)),
                "resumed" | "deleted" => pauses.extend(since.take().map(|from| (from, *at))),
                _ => {}
            }
        }
        pauses.extend(since.map(|from| (from, now)));
        pauses
    }

    /// When the schedule's definition last changed.
    fn last_change(&self, schedule: &str) -> Option<DateTime<Utc>> {
        self.facts
            .history
            .iter()
            .filter(|(s, event, _)| s == schedule && matches!(event.as_str(), "created" | "updated"))
            .map(|(_, _, at)| *at)
            .max()
    }
}

impl Source {
    /// Schedules, their history and the leadership terms; nothing on a database from
    /// before schedules.
    pub(super) async fn schedule_facts(&mut self) -> Result<Facts, CheckError> {
        const SCHEDULES: &str = "SELECT name, cron, timezone FROM schedules";
        const HISTORY: &str = "SELECT schedule, event, created_at FROM schedule_history ORDER BY id";
        const TERMS: &str = "SELECT previous_renewed_at, elected_at FROM leader_terms ORDER BY id";
        if !self.has_table("schedules").await? {
            return Ok(Facts::default());
        }
        let facts = match self {
            Self::Postgres(tx) => Facts {
                schedules: sqlx::query_as(SCHEDULES).fetch_all(&mut **tx).await?,
                history: sqlx::query_as(HISTORY).fetch_all(&mut **tx).await?,
                terms: sqlx::query_as(TERMS).fetch_all(&mut **tx).await?,
            },
            Self::Sqlite(tx) => Facts {
                schedules: sqlx::query_as(SCHEDULES).fetch_all(&mut **tx).await?,
                history: sqlx::query_as(HISTORY).fetch_all(&mut **tx).await?,
                terms: sqlx::query_as(TERMS).fetch_all(&mut **tx).await?,
            },
        };
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).expect("a valid time")
    }

    /// The task of tick `tick`, created at `created`.
    fn task(schedule: &str, tick: i64, created: i64) -> Task {
        let mut task: Task = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(), "name": "t", "type": "noop", "payload": {}, "status": "queued",
            "priority": 0, "retry_count": 0, "max_retries": 0, "backoff_seconds": 1, "timeout_seconds": 1,
            "attempt": 0, "run_at": at(created), "created_at": at(created), "updated_at": at(created),
            "queue": "default",
        }))
        .expect("a task");
        (task.schedule, task.tick_at) = (Some(schedule.into()), Some(at(tick)));
        task
    }

    fn facts(history: &[(&str, i64)], terms: &[(i64, i64)]) -> Facts {
        Facts {
            schedules: vec![("s".into(), "* * * * * *".into(), "UTC".into())],
            history: history.iter().map(|(e, t)| ("s".to_owned(), (*e).to_owned(), at(*t))).collect(),
            terms: terms.iter().map(|(renewed, elected)| (Some(at(*renewed)), at(*elected))).collect(),
        }
    }

    /// Checks ticks each created as it came, and `late` ones: (tick, created).
    fn check(facts: Facts, ticks: &[i64], late: &[(i64, i64)]) -> Report {
        let mut check = ScheduleCheck::new(facts);
        let on_time = ticks.iter().map(|t| (*t, *t));
        check.observe(&on_time.chain(late.iter().copied()).map(|(t, c)| task("s", t, c)).collect::<Vec<_>>());
        let mut report = Report::default();
        check.sweep(&Options::default(), at(1_000), &mut report);
        report
    }

    fn invariants(report: &Report) -> Vec<Invariant> {
        report.violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_gap_while_a_process_led_and_a_second_task_for_one_tick_are_violations() {
        let report = check(facts(&[("created", 0)], &[]), &[1, 2, 3, 10, 11, 11], &[]);
        assert_eq!(invariants(&report), [Invariant::ScheduleTickOnce, Invariant::ScheduleGap], "{report:?}");
        assert!(report.violations[1].detail.contains("6 tick(s)"), "{:?}", report.violations[1]);
    }

    #[test]
    fn a_gap_during_a_leadership_change_or_a_pause_is_explained() {
        // Leader renewed last at 3, the next elected at 9; paused from 20 to 30.
        // The latest tick of the pause is enqueued at the resume (catch_up latest).
        let ticks: Vec<i64> = [1, 2, 3].into_iter().chain(9..=19).chain([31]).collect();
        let history = [("created", 0), ("paused", 20), ("resumed", 30)];
        let report = check(facts(&history, &[(3, 9)]), &ticks, &[(29, 30)]);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert_eq!(report.missed_ticks, 5 + 9 + 1);
    }

    #[test]
    fn a_tick_enqueued_well_into_a_pause_is_a_violation() {
        let report = check(facts(&[("created", 0), ("paused", 20)], &[]), &[1, 2, 30], &[]);
        assert!(invariants(&report).contains(&Invariant::SchedulePaused), "{report:?}");
    }
}
