//! The checker's view of flow control: invariants 17 (no two starts under a rate limit
//! closer than `per / max`) and 18 (no more overlapping attempts of a queue with one
//! concurrency key than its key limit).
//!
//! Both read the flow settings over time from `flow_history`: a queue's or a type's
//! settings at a time are the ones its latest change before then recorded (none before
//! the first). The checker keeps the start of every attempt under a rate limit, and
//! every attempt of a task with a key, and judges them once every page is read.
//!
//! Spacing starts `per / max` apart is what the claim promises (a GCRA without burst,
//! `store::flow`), and it implies the user's promise: no window of length `per` holds
//! more than `max` starts. A change of a rate limit starts a fresh bucket, and a claim
//! made under the old limit may hold slots up to `LOOKAHEAD` ahead, so a pair of
//! starts with a change between them (or within `LOOKAHEAD` before the first) is not
//! held to either limit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Attempt, CheckError, Invariant, Report, Source, Violation, from_micros, micros};
use crate::store::Task;
use crate::store::flow::{LOOKAHEAD, RateLimit};

/// One row of `flow_history`: the flow settings of a queue (`scope` "queue") or a task
/// type ("type") after a change acknowledged at `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEvent {
    pub scope: FlowScope,
    pub name: String,
    pub rate_limit: Option<RateLimit>,
    pub max_per_key: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// What a flow setting belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowScope {
    Queue,
    Type,
}

#[derive(sqlx::FromRow)]
struct FlowEventRow {
    scope: String,
    name: String,
    rate_max: Option<i32>,
    rate_per_ms: Option<i64>,
    max_per_key: Option<i32>,
    created_at: DateTime<Utc>,
}

/// Settings after a change: when (microseconds since the epoch), the rate limit and
/// the key limit.
type Change = (i64, Option<RateLimit>, Option<i32>);

/// A start under a rate limit: when (microseconds), the task and its attempt.
type Start = (i64, Uuid, i32);

/// An attempt of a keyed task: its start and end (`i64::MAX` while it runs), in
/// microseconds, with the task, attempt and type.
struct KeyedAttempt {
    started_at: i64,
    ended_at: i64,
    task_id: Uuid,
    attempt: i32,
    task_type: String,
}

/// The settings a list of changes gives at `at`: the latest change before then.
fn at_time(changes: &[Change], at: i64) -> Option<&Change> {
    changes.iter().rev().find(|(changed, _, _)| *changed < at)
}

pub(super) struct FlowCheck {
    changes: HashMap<(FlowScope, String), Vec<Change>>,
    /// Starts of tasks whose queue or type ever had a rate limit, by that scope.
    starts: HashMap<(FlowScope, String), Vec<Start>>,
    /// Attempts of tasks with a key, by queue and key.
    keyed: HashMap<(String, String), Vec<KeyedAttempt>>,
}

impl FlowCheck {
    pub(super) fn new(history: Vec<FlowEvent>) -> Self {
        let mut changes: HashMap<(FlowScope, String), Vec<Change>> = HashMap::new();
        for event in history {
            changes.entry((event.scope, event.name)).or_default().push((
                micros(event.created_at),
                event.rate_limit,
                event.max_per_key,
            ));
        }
        changes.values_mut().for_each(|list| list.sort_by_key(|(at, _, _)| *at));
        Self { changes, starts: HashMap::new(), keyed: HashMap::new() }
    }

    /// Keeps what invariants 17 and 18 need of one task's attempts.
    pub(super) fn attempts(&mut self, task: &Task, attempts: &[Attempt]) {
        for scope in [(FlowScope::Queue, &task.queue), (FlowScope::Type, &task.task_type)] {
            let key = (scope.0, scope.1.clone());
            let rate_limited =
                self.changes.get(&key).is_some_and(|c| c.iter().any(|(_, rate, _)| rate.is_some()));
            if rate_limited {
                let starts = self.starts.entry(key).or_default();
                starts.extend(attempts.iter().map(|a| (micros(a.started_at), task.id, a.number)));
            }
        }
        if let Some(key) = &task.concurrency_key {
            let keyed = self.keyed.entry((task.queue.clone(), key.clone())).or_default();
            keyed.extend(attempts.iter().map(|a| KeyedAttempt {
                started_at: micros(a.started_at),
                ended_at: a.ended_at.map_or(i64::MAX, micros),
                task_id: task.id,
                attempt: a.number,
                task_type: task.task_type.clone(),
            }));
        }
    }

    pub(super) fn sweep(mut self, report: &mut Report) {
        let lookahead = LOOKAHEAD.as_micros() as i64;
        for (scope, mut starts) in std::mem::take(&mut self.starts) {
            let changes = &self.changes[&scope];
            starts.sort_unstable();
            for pair in starts.windows(2) {
                let ((before, ..), (at, task_id, attempt)) = (pair[0], pair[1]);
                let Some((_, Some(limit), _)) = at_time(changes, at) else { continue };
                if changes.iter().any(|(changed, _, _)| (before - lookahead..=at).contains(changed)) {
                    continue;
                }
                let step = limit.step().num_microseconds().unwrap_or(i64::MAX);
                if at - before < step {
                    report.violations.push(Violation {
                        invariant: Invariant::RateLimit,
                        task_id: Some(task_id),
                        detail: format!(
                            "attempt {attempt} started at {}, {} µs after the previous start under the rate limit of {} {:?} ({} per {} ms: starts at least {step} µs apart)",
                            from_micros(at),
                            at - before,
                            if scope.0 == FlowScope::Queue { "queue" } else { "type" },
                            scope.1,
                            limit.max,
                            limit.per_ms
                        ),
                    });
                }
            }
        }
        for ((queue, key), attempts) in std::mem::take(&mut self.keyed) {
            self.sweep_key(&queue, &key, attempts, report);
        }
    }

    /// Invariant 18 for one queue and key: at each start, the attempts that overlap it
    /// (itself and those starting at the same time included) are at most the starting
    /// task's key limit then. A sweep in start order with the running ends in a heap.
    fn sweep_key(&self, queue: &str, key: &str, mut attempts: Vec<KeyedAttempt>, report: &mut Report) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        attempts.sort_unstable_by_key(|a| (a.started_at, a.task_id, a.attempt));
        let mut running: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
        let mut peak = 0;
        let mut index = 0;
        while index < attempts.len() {
            let at = attempts[index].started_at;
            while running.peek().is_some_and(|Reverse((end, _))| *end <= at) {
                running.pop();
            }
            let first = index;
            while index < attempts.len() && attempts[index].started_at == at {
                running.push(Reverse((attempts[index].ended_at.max(at + 1), index)));
                index += 1;
            }
            peak = peak.max(running.len());
            for attempt in &attempts[first..index] {
                let limit = self.key_limit(queue, &attempt.task_type, at);
                if running.len() <= limit.max(0) as usize {
                    continue;
                }
                let shown: Vec<String> = running
                    .iter()
                    .take(8)
                    .map(|Reverse((_, i))| {
                        format!("task {} attempt {}", attempts[*i].task_id, attempts[*i].attempt)
                    })
                    .collect();
                report.violations.push(Violation {
                    invariant: Invariant::KeyLimit,
                    task_id: Some(attempt.task_id),
                    detail: format!(
                        "{} attempts of queue {queue:?} with key {key:?} overlapped at {}, when attempt {} started, with a key limit of {limit}: {}",
                        running.len(),
                        from_micros(at),
                        attempt.attempt,
                        shown.join("; ")
                    ),
                });
            }
        }
        let queue_peak = report.peak_per_key.entry(queue.to_owned()).or_default();
        *queue_peak = (*queue_peak).max(peak);
    }

    /// A task's key limit at `at`: its type's `max_per_key`, else its queue's, else 1.
    fn key_limit(&self, queue: &str, task_type: &str, at: i64) -> i32 {
        let of = |scope: FlowScope, name: &str| {
            self.changes
                .get(&(scope, name.to_owned()))
                .and_then(|changes| at_time(changes, at))
                .and_then(|c| c.2)
        };
        of(FlowScope::Type, task_type).or_else(|| of(FlowScope::Queue, queue)).unwrap_or(1)
    }
}

impl Source {
    /// Every change of flow settings, or none on a database from before flow control.
    pub(super) async fn flow_history(&mut self) -> Result<Vec<FlowEvent>, CheckError> {
        const SQL: &str = "SELECT scope, name, rate_max, rate_per_ms, max_per_key, created_at FROM flow_history ORDER BY id";
        if !self.has_table("flow_history").await? {
            return Ok(Vec::new());
        }
        let rows: Vec<FlowEventRow> = match self {
            Self::Postgres(tx) => sqlx::query_as(SQL).fetch_all(&mut **tx).await?,
            Self::Sqlite(tx) => sqlx::query_as(SQL).fetch_all(&mut **tx).await?,
        };
        Ok(rows
            .into_iter()
            .map(|row| FlowEvent {
                scope: if row.scope == "type" { FlowScope::Type } else { FlowScope::Queue },
                name: row.name,
                rate_limit: RateLimit::from_columns(row.rate_max, row.rate_per_ms),
                max_per_key: row.max_per_key,
                created_at: row.created_at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{Story, at, broken};
    use crate::check::{Options, verify};
    use crate::store::{EventType, TaskStatus};

    fn verify_flow(stories: &[&Story], flow_history: Vec<FlowEvent>) -> Report {
        let tasks: Vec<Task> = stories.iter().map(|s| s.task.clone()).collect();
        let events = stories.iter().flat_map(|s| s.events.clone()).collect();
        let options = Options { ledger_types: vec![], ..Options::default() };
        verify(&tasks, events, vec![], vec![], flow_history, &options, at(600_000))
    }

    fn rate(queue: &str, max: i32, per_ms: i64, ms: i64) -> FlowEvent {
        FlowEvent {
            scope: FlowScope::Queue,
            name: queue.into(),
            rate_limit: Some(RateLimit { max, per_ms }),
            max_per_key: None,
            created_at: at(ms),
        }
    }

    /// A task of `queue` (with `key`) that ran once from `from` to `to` ms.
    fn ran(queue: &str, key: Option<&str>, from: i64, to: i64) -> Story {
        let mut story = Story::in_queue(queue);
        story.task.concurrency_key = key.map(str::to_owned);
        story.start(from, "w").event(to, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        story
    }

    #[test]
    fn starts_closer_than_the_rate_allows_are_a_violation() {
        let (a, b, c) = (
            ran("emails", None, 1000, 1001),
            ran("emails", None, 1100, 1101),
            ran("emails", None, 1150, 1151),
        );
        let history = vec![rate("emails", 10, 1000, 0)];
        assert!(verify_flow(&[&a, &b], history.clone()).passed(), "100 ms apart is the limit");
        assert_eq!(broken(&verify_flow(&[&a, &b, &c], history)), [17]);
        assert!(verify_flow(&[&a, &b, &c], vec![]).passed(), "no limit, no constraint");
    }

    #[test]
    fn a_rate_change_between_two_starts_binds_neither() {
        let (a, b) = (ran("emails", None, 1000, 1001), ran("emails", None, 1010, 1011));
        let history = vec![rate("emails", 1, 1000, 0), rate("emails", 100, 1000, 1005)];
        assert!(verify_flow(&[&a, &b], history).passed());
    }

    #[test]
    fn more_overlapping_attempts_of_a_key_than_its_limit_is_a_violation() {
        let a = ran("imports", Some("t1"), 1000, 2000);
        let b = ran("imports", Some("t1"), 1500, 2500);
        let other_key = ran("imports", Some("t2"), 1500, 2500);
        let after = ran("imports", Some("t1"), 2000, 2100);
        assert!(verify_flow(&[&a, &other_key, &after], vec![]).passed(), "one at a time per key");
        assert_eq!(broken(&verify_flow(&[&a, &b], vec![])), [18]);
        let two = FlowEvent { rate_limit: None, max_per_key: Some(2), ..rate("imports", 1, 1, 0) };
        assert!(verify_flow(&[&a, &b], vec![two]).passed(), "the queue's max_per_key of 2");
    }
}
