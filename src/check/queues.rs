//! The checker's view of named queues: invariants 12 (no start while the queue is
//! paused) and 13 (no more than `max_running` overlapping attempts).
//!
//! Both read the queues' settings over time from `queue_history`. The pause check is
//! made task by task; for the limit, the checker keeps one compact record per attempt
//! of each queue that ever had a limit, and sweeps them queue by queue once every page
//! is read (see [`verify`](super::verify) for what counts as an attempt).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Attempt, CheckError, Invariant, Report, Source, Violation, from_micros, micros};
use crate::store::Task;

/// What a change of a queue's settings did, as `queue_history` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEventKind {
    Paused,
    Resumed,
    /// The limit became the event's `max_running` (`None`: no limit).
    LimitChanged,
}

/// One row of `queue_history`: a queue's settings changed at `created_at`, the time
/// the change was acknowledged (every claim that could have read the old settings had
/// committed by then, and every later claim reads the new ones).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEvent {
    pub id: i64,
    pub queue: String,
    pub kind: QueueEventKind,
    pub max_running: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// A `queue_history` row as stored.
#[derive(sqlx::FromRow)]
struct QueueEventRow {
    id: i64,
    queue: String,
    event: String,
    max_running: Option<i32>,
    created_at: DateTime<Utc>,
}

impl QueueEventRow {
    /// `None` for an event this checker does not know (the schema allows none).
    fn into_event(self) -> Option<QueueEvent> {
        let kind = match self.event.as_str() {
            "paused" => QueueEventKind::Paused,
            "resumed" => QueueEventKind::Resumed,
            "limit_changed" => QueueEventKind::LimitChanged,
            _ => return None,
        };
        Some(QueueEvent {
            id: self.id,
            queue: self.queue,
            kind,
            max_running: self.max_running,
            created_at: self.created_at,
        })
    }
}

/// An attempt of a queue that had a limit, as the limit's sweep needs it: times in
/// microseconds since the epoch (`i64::MAX` while it runs), the queue by index.
struct QueueAttempt {
    started_at: i64,
    ended_at: i64,
    task_id: Uuid,
    attempt: i32,
    queue: u32,
}

/// A span a queue was paused: from a pause's acknowledgement to the next resume's
/// (`None`: still paused).
type PausedSpan = (DateTime<Utc>, Option<DateTime<Utc>>);

/// A change of a queue's limit: when (microseconds since the epoch) and to what
/// (`None`: no limit).
type LimitChange = (i64, Option<i32>);

/// Invariants 12 and 13: each queue's pauses and limits over time, from
/// `queue_history`, and the attempts of the queues that ever had a limit.
pub(super) struct QueueCheck {
    /// Per queue, the spans it was paused, in order.
    paused: HashMap<String, Vec<PausedSpan>>,
    /// The queues that ever had a limit, by index: name and limit changes in order.
    limited: Vec<(String, Vec<LimitChange>)>,
    limited_index: HashMap<String, u32>,
    attempts: Vec<QueueAttempt>,
}

impl QueueCheck {
    pub(super) fn new(mut history: Vec<QueueEvent>) -> Self {
        // One queue's changes are serialised by its lock, so ids follow their times.
        history.sort_by(|a, b| (&a.queue, a.id).cmp(&(&b.queue, b.id)));
        let mut paused: HashMap<String, Vec<PausedSpan>> = HashMap::new();
        let mut limits: HashMap<String, Vec<LimitChange>> = HashMap::new();
        for event in history {
            match event.kind {
                QueueEventKind::Paused => {
                    let spans = paused.entry(event.queue).or_default();
                    // A pause of a paused queue changes nothing (none is written).
                    if spans.last().is_none_or(|(_, until)| until.is_some()) {
                        spans.push((event.created_at, None));
                    }
                }
                QueueEventKind::Resumed => {
                    if let Some((_, until @ None)) = paused.get_mut(&event.queue).and_then(|s| s.last_mut()) {
                        *until = Some(event.created_at);
                    }
                }
                QueueEventKind::LimitChanged => {
                    limits
                        .entry(event.queue)
                        .or_default()
                        .push((micros(event.created_at), event.max_running));
                }
            }
        }
        let mut limited: Vec<(String, Vec<LimitChange>)> =
            limits.into_iter().filter(|(_, changes)| changes.iter().any(|(_, l)| l.is_some())).collect();
        limited.sort_by(|a, b| a.0.cmp(&b.0));
        let limited_index =
            limited.iter().enumerate().map(|(i, (name, _))| (name.clone(), i as u32)).collect();
        Self { paused, limited, limited_index, attempts: Vec::new() }
    }

    /// Invariant 12 for one task's attempts; keeps them for invariant 13 if its queue
    /// ever had a limit.
    pub(super) fn attempts(&mut self, task: &Task, attempts: &[Attempt], violations: &mut Vec<Violation>) {
        if let Some(spans) = self.paused.get(&task.queue) {
            for attempt in attempts {
                let started = attempt.started_at;
                let inside =
                    spans.iter().find(|(from, until)| *from < started && until.is_none_or(|u| started < u));
                if let Some((from, until)) = inside {
                    let until = match until {
                        Some(until) => format!("resumed at {until}"),
                        None => "not resumed since".into(),
                    };
                    violations.push(Violation {
                        invariant: Invariant::QueuePaused,
                        task_id: Some(task.id),
                        detail: format!(
                            "attempt {} (worker {:?}) started at {started} while queue {:?} was paused (pause acknowledged at {from}, {until})",
                            attempt.number, attempt.worker_id, task.queue
                        ),
                    });
                }
            }
        }
        if let Some(&queue) = self.limited_index.get(&task.queue) {
            self.attempts.extend(attempts.iter().map(|a| QueueAttempt {
                started_at: micros(a.started_at),
                ended_at: a.ended_at.map_or(i64::MAX, micros),
                task_id: task.id,
                attempt: a.number,
                queue,
            }));
        }
    }

    /// Invariant 13: sweeps each limited queue's attempts in time order and counts, at
    /// each start, the attempts that overlap it.
    pub(super) fn sweep(self, report: &mut Report) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let Self { limited, mut attempts, .. } = self;
        attempts.sort_unstable_by_key(|a| (a.queue, a.started_at, a.task_id, a.attempt));
        for run in attempts.chunk_by(|a, b| a.queue == b.queue) {
            let (name, changes) = &limited[run[0].queue as usize];
            let mut change = 0; // changes[..change] were made before the current start
            let mut limit: Option<i32> = None;
            // The attempts running at the current start, soonest end first.
            let mut running: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
            let mut peak = 0;
            let mut index = 0;
            while index < run.len() {
                let at = run[index].started_at;
                while running.peek().is_some_and(|Reverse((end, _))| *end <= at) {
                    running.pop();
                }
                let first = index;
                while index < run.len() && run[index].started_at == at {
                    if run[index].ended_at > at {
                        running.push(Reverse((run[index].ended_at, index)));
                    }
                    index += 1;
                }
                while change < changes.len() && changes[change].0 < at {
                    limit = changes[change].1;
                    change += 1;
                }
                peak = peak.max(running.len());
                let Some(max_running) = limit.filter(|l| running.len() > (*l).max(0) as usize) else {
                    continue;
                };
                let mut overlapping: Vec<&QueueAttempt> =
                    running.iter().map(|Reverse((_, i))| &run[*i]).collect();
                overlapping.sort_by_key(|a| (a.started_at, a.task_id));
                let shown: Vec<String> = overlapping
                    .iter()
                    .take(8)
                    .map(|a| {
                        let until = if a.ended_at == i64::MAX {
                            "still running".to_owned()
                        } else {
                            format!("until {}", from_micros(a.ended_at))
                        };
                        format!(
                            "task {} attempt {} from {} {until}",
                            a.task_id,
                            a.attempt,
                            from_micros(a.started_at)
                        )
                    })
                    .collect();
                let more = overlapping.len().saturating_sub(shown.len());
                let starter = &run[first];
                report.violations.push(Violation {
                    invariant: Invariant::QueueLimit,
                    task_id: Some(starter.task_id),
                    detail: format!(
                        "{} attempts of queue {name:?} overlapped at {}, when attempt {} of this task started, with max_running {max_running} (set at {}): {}{}",
                        running.len(),
                        from_micros(at),
                        starter.attempt,
                        from_micros(changes[change - 1].0),
                        shown.join("; "),
                        if more > 0 { format!("; and {more} more") } else { String::new() }
                    ),
                });
            }
            report.peak_running.insert(name.clone(), peak);
        }
    }
}

impl Source {
    /// Every queue settings change, or none on a database from before named queues.
    pub(super) async fn queue_history(&mut self) -> Result<Vec<QueueEvent>, CheckError> {
        const SQL: &str =
            "SELECT id, queue, event, max_running, created_at FROM queue_history ORDER BY queue, id";
        if !self.has_table("queue_history").await? {
            return Ok(Vec::new());
        }
        let rows: Vec<QueueEventRow> = match self {
            Self::Postgres(tx) => sqlx::query_as(SQL).fetch_all(&mut **tx).await?,
            Self::Sqlite(tx) => sqlx::query_as(SQL).fetch_all(&mut **tx).await?,
        };
        Ok(rows.into_iter().filter_map(QueueEventRow::into_event).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{Story, at, broken};
    use crate::check::{Options, verify};
    use crate::store::{EventType, TaskStatus};

    /// Verifies several tasks and the queues' settings history together (no ledger).
    fn verify_queues(stories: &[&Story], queue_history: Vec<QueueEvent>) -> Report {
        let tasks: Vec<Task> = stories.iter().map(|s| s.task.clone()).collect();
        let events = stories.iter().flat_map(|s| s.events.clone()).collect();
        let options = Options { ledger_types: vec![], ..Options::default() };
        verify(&tasks, events, vec![], queue_history, vec![], &options, at(600_000))
    }

    fn queue_event(
        id: i64,
        queue: &str,
        kind: QueueEventKind,
        max_running: Option<i32>,
        ms: i64,
    ) -> QueueEvent {
        QueueEvent { id, queue: queue.into(), kind, max_running, created_at: at(ms) }
    }

    fn paused(id: i64, queue: &str, ms: i64) -> QueueEvent {
        queue_event(id, queue, QueueEventKind::Paused, None, ms)
    }

    fn resumed(id: i64, queue: &str, ms: i64) -> QueueEvent {
        queue_event(id, queue, QueueEventKind::Resumed, None, ms)
    }

    fn limit(id: i64, queue: &str, max_running: Option<i32>, ms: i64) -> QueueEvent {
        queue_event(id, queue, QueueEventKind::LimitChanged, max_running, ms)
    }

    /// A task of `queue` whose one attempt runs from `from` to its success at `to`.
    fn ran(queue: &str, worker: &str, from: i64, to: i64) -> Story {
        let mut story = Story::in_queue(queue);
        story.start(from, worker).event(to, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        story
    }

    #[test]
    fn a_start_while_the_queue_was_paused_is_a_violation() {
        let late = ran("q", "a", 200, 300);
        let report = verify_queues(&[&late], vec![paused(1, "q", 100), resumed(2, "q", 500)]);
        assert_eq!(broken(&report), [12], "{:#?}", report.violations);
        assert_eq!(report.violations[0].task_id, Some(late.task.id));
        assert!(report.violations[0].detail.contains("\"q\""), "{}", report.violations[0].detail);

        // Still paused: every start after the acknowledgement is a violation.
        assert_eq!(broken(&verify_queues(&[&late], vec![paused(1, "q", 100)])), [12]);
    }

    #[test]
    fn starts_before_a_pause_at_its_edges_and_in_other_queues_are_legal() {
        // Claimed before the pause was acknowledged, and still running through it.
        let before = ran("q", "a", 90, 400);
        // Claimed by a claim ordered before the pause that took the same time.
        let at_the_pause = ran("q", "a", 100, 150);
        let at_the_resume = ran("q", "b", 500, 600);
        let after = ran("q", "b", 700, 800);
        let other_queue = ran("r", "c", 200, 300);
        let stories = [&before, &at_the_pause, &at_the_resume, &after, &other_queue];
        let report =
            verify_queues(&stories, vec![paused(1, "q", 100), resumed(2, "q", 500), paused(3, "q", 900)]);
        assert!(report.passed(), "{:#?}", report.violations);

        // A released attempt (a prefetched task of a paused queue) ends the attempt;
        // its next start after the resume is legal.
        let mut released = Story::in_queue("q");
        released.start(95, "a");
        released.event(120, EventType::TaskRequeued, TaskStatus::Queued, None);
        released.start(550, "b").event(560, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let report = verify_queues(&[&released], vec![paused(1, "q", 100), resumed(2, "q", 500)]);
        assert!(report.passed(), "{:#?}", report.violations);
    }

    #[test]
    fn more_overlapping_attempts_than_the_limit_is_a_violation() {
        let first = ran("q", "a", 10, 1_000);
        let second = ran("q", "b", 20, 1_000);
        let third = ran("q", "c", 30, 1_000);
        let report = verify_queues(&[&first, &second, &third], vec![limit(1, "q", Some(2), 5)]);
        assert_eq!(broken(&report), [13], "{:#?}", report.violations);
        let violation = &report.violations[0];
        assert_eq!(violation.task_id, Some(third.task.id), "{violation}");
        assert!(violation.detail.contains("3 attempts"), "{violation}");
        assert!(violation.detail.contains(&first.task.id.to_string()), "{violation}");
        assert_eq!(report.peak_running.get("q"), Some(&3));

        // A still running attempt counts as well, and so does a claim of two at once.
        let mut running = Story::in_queue("q");
        running.start(10, "a");
        let pair = [ran("q", "b", 40, 50), ran("q", "b", 40, 60)];
        let report = verify_queues(&[&running, &pair[0], &pair[1]], vec![limit(1, "q", Some(2), 5)]);
        assert_eq!(broken(&report), [13], "{:#?}", report.violations);
        assert_eq!(report.violations.len(), 1);

        // Without a limit, or in another queue, the same overlap is legal.
        assert!(verify_queues(&[&first, &second, &third], vec![]).passed());
        assert!(verify_queues(&[&first, &second, &third], vec![limit(1, "r", Some(1), 5)]).passed());
        let removed = vec![limit(1, "q", Some(2), 5), limit(2, "q", None, 25)];
        assert!(verify_queues(&[&first, &second, &third], removed).passed());
    }

    #[test]
    fn an_attempt_that_ends_when_another_starts_does_not_overlap_it() {
        let first = ran("q", "a", 10, 50);
        let second = ran("q", "b", 50, 90);
        // A rescued attempt frees its slot at the rescue, and its retry takes one.
        let mut rescued = Story::in_queue("q");
        rescued.start(90, "c").retry(2_000, EventType::WorkerLockExpired, 1_000);
        rescued.start(3_500, "a").event(3_600, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let after_rescue = ran("q", "b", 2_000, 3_500);
        let stories = [&first, &second, &rescued, &after_rescue];
        let report = verify_queues(&stories, vec![limit(1, "q", Some(1), 0)]);
        assert!(report.passed(), "{:#?}", report.violations);
        assert_eq!(report.peak_running.get("q"), Some(&1));

        // One millisecond earlier, the second start overlaps the first attempt.
        let early = ran("q", "b", 49, 90);
        let report = verify_queues(&[&first, &early], vec![limit(1, "q", Some(1), 0)]);
        assert_eq!(broken(&report), [13], "{:#?}", report.violations);
    }

    #[test]
    fn a_limit_lowered_while_more_ran_binds_only_the_starts_after_it() {
        let running = [ran("q", "a", 10, 100), ran("q", "b", 11, 110), ran("q", "c", 12, 120)];
        // Lowered to 1 at 50 while three ran: no violation by itself; the next start
        // waits until the others have ended.
        let next = ran("q", "a", 120, 200);
        let history = vec![limit(1, "q", Some(3), 0), limit(2, "q", Some(1), 50)];
        let stories = [&running[0], &running[1], &running[2], &next];
        let report = verify_queues(&stories, history.clone());
        assert!(report.passed(), "{:#?}", report.violations);
        assert_eq!(report.peak_running.get("q"), Some(&3));

        // A start while two of them still ran breaks the lowered limit.
        let too_soon = ran("q", "a", 105, 200);
        let report = verify_queues(&[&running[0], &running[1], &running[2], &too_soon], history.clone());
        assert_eq!(broken(&report), [13], "{:#?}", report.violations);
        assert!(report.violations[0].detail.contains("max_running 1"), "{}", report.violations[0]);

        // The same start before the change was under the old limit of 3.
        let raised = vec![limit(1, "q", Some(3), 0), limit(2, "q", Some(1), 106)];
        assert!(verify_queues(&[&running[0], &running[1], &running[2], &too_soon], raised).passed());
    }
}
