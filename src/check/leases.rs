//! The checker's view of leases and of what really ran: invariants 6 (no two attempts
//! of a task overlap, unless the earlier one's lease expired), 7 (no outcome after the
//! lease on its attempt expired) and 11 (every ledger run is explained by the history).
//!
//! An attempt's lease runs from its start for the task's `timeout_seconds` plus the
//! lease grace, restarted by each progress report written (the event that ends the
//! attempt records the last, `progress_at`), and only the worker that started the
//! attempt may end it, within that lease. The history says when attempts were claimed; the ledger says when their
//! handlers really ran, so double execution shows there: two runs of one task may
//! overlap only across a lost lease (`worker_lock_expired`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Attempt, Invariant, LedgerRun, Options, TaskCheck, slack};
use crate::store::{EventType, HistoryEvent, ReleaseReason, Task, TaskStatus, WORKER_LOST};

/// How long an attempt of `task` holds its lease from its start: the task's timeout
/// plus the workers' lease grace.
pub(super) fn lease(task: &Task, options: &Options) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(task.timeout_seconds))
        + chrono::Duration::from_std(options.lease_grace).unwrap_or_default()
}

impl TaskCheck<'_> {
    /// A worker's outcome for the attempt that is running (invariants 6, 7).
    pub(super) fn outcome(
        &mut self,
        event: &HistoryEvent,
        previous: Option<TaskStatus>,
        attempt: Option<&mut Attempt>,
    ) {
        let kind = event.event_type;
        let Some(attempt) = attempt.filter(|a| a.end.is_none() && previous == Some(TaskStatus::Running))
        else {
            self.violation(
                Invariant::HistoryShape,
                format!("{kind:?} (event {}) without a running attempt", event.id),
            );
            return;
        };
        attempt.end = Some(kind);
        attempt.ended_at = Some(event.created_at);
        let number = attempt.number;
        let started_by = attempt.worker_id.clone();
        // Each progress report written restarted the lease; the event records the last.
        let from = event.progress_at.map_or(attempt.started_at, |at| at.max(attempt.started_at));
        let lease_end = from + lease(self.task, self.options);
        if started_by != event.worker_id {
            self.violation(
                Invariant::FencedOutcome,
                format!(
                    "{kind:?} of attempt {number} written for {:?}, which started as {started_by:?}",
                    event.worker_id
                ),
            );
        }
        // The fence compares with the same clock that stamped the start (the
        // database's on PostgreSQL, the process's on SQLite): allow a little slack.
        if event.created_at > lease_end + chrono::Duration::milliseconds(50) {
            self.violation(
                Invariant::FencedOutcome,
                format!(
                    "{kind:?} of attempt {number} at {} after its lease ran out at {lease_end}",
                    event.created_at
                ),
            );
        }
    }

    /// A release of the running attempt by a worker shutting down (invariant 7): the
    /// attempt ends, and only its own worker may release it.
    pub(super) fn released(&mut self, event: &HistoryEvent, attempt: Option<&mut Attempt>) {
        let Some(attempt) = attempt.filter(|a| a.end.is_none()) else { return };
        attempt.end = Some(event.event_type);
        attempt.ended_at = Some(event.created_at);
        if attempt.worker_id != event.worker_id {
            let detail = format!(
                "attempt {} was released by {:?}, not by its worker {:?}",
                attempt.number, event.worker_id, attempt.worker_id
            );
            self.violation(Invariant::FencedOutcome, detail);
        }
    }

    /// The end of a running attempt whose task's cancel was requested (invariant 7):
    /// written by its worker (fenced like any outcome; by worker and attempt only when
    /// a release ends it), or by the Rescuer once the worker was lost (like
    /// `worker_lock_expired`, after the lease).
    pub(super) fn cancelled_attempt(&mut self, event: &HistoryEvent, attempt: Option<&mut Attempt>) {
        let note = event.error_message.as_deref().unwrap_or_default();
        let released = [ReleaseReason::Shutdown, ReleaseReason::NotStarted];
        if note.ends_with(WORKER_LOST) {
            if let Some(attempt) = attempt.filter(|a| a.end.is_none()) {
                attempt.end = Some(EventType::WorkerLockExpired);
                attempt.ended_at = Some(event.created_at);
            }
        } else if released.iter().any(|reason| note.ends_with(reason.stopped())) {
            self.released(event, attempt);
        } else {
            self.outcome(event, Some(TaskStatus::Running), attempt);
        }
    }

    /// Invariants 6 and 11 against the ledger of the task's runs.
    pub(super) fn ledger(&mut self, attempts: &[Attempt], runs: &[LedgerRun]) {
        let task = self.task;
        let mut seen: HashMap<i32, usize> = HashMap::new();
        for run in runs {
            *seen.entry(run.attempt).or_default() += 1;
            match attempts.iter().find(|a| a.number == run.attempt) {
                None => self.violation(
                    Invariant::LedgerExplained,
                    format!("a run of attempt {} that the history never started", run.attempt),
                ),
                Some(attempt) if attempt.worker_id.as_deref() != Some(run.worker_id.as_str()) => self
                    .violation(
                        Invariant::LedgerExplained,
                        format!(
                            "attempt {} ran on {} but the history started it on {:?}",
                            run.attempt, run.worker_id, attempt.worker_id
                        ),
                    ),
                Some(attempt) if run.started_at + slack(self.options) < attempt.started_at => self.violation(
                    Invariant::LedgerExplained,
                    format!(
                        "attempt {} ran at {} before it was claimed at {}",
                        run.attempt, run.started_at, attempt.started_at
                    ),
                ),
                Some(_) => {}
            }
        }
        for (attempt, count) in seen.into_iter().filter(|(_, n)| *n > 1) {
            self.violation(Invariant::LedgerExplained, format!("attempt {attempt} ran {count} times"));
        }
        if task.status == TaskStatus::Succeeded && self.options.ledger_types.contains(&task.task_type) {
            let succeeded = attempts.iter().find(|a| a.end == Some(EventType::TaskSucceeded));
            let ran = succeeded
                .is_some_and(|a| runs.iter().any(|r| r.attempt == a.number && r.finished_at.is_some()));
            if !ran {
                self.violation(
                    Invariant::LedgerExplained,
                    format!(
                        "succeeded on attempt {:?} without a finished run in the ledger",
                        succeeded.map(|a| a.number)
                    ),
                );
            }
        }
        // Invariant 6 on real executions: two runs overlap only across a lost lease.
        for (i, earlier) in runs.iter().enumerate() {
            for later in &runs[i + 1..] {
                if later.attempt == earlier.attempt {
                    continue;
                }
                let (first, second) =
                    if earlier.attempt < later.attempt { (earlier, later) } else { (later, earlier) };
                // A run that never recorded its end was stopped at the latest when its
                // attempt ended (aborted at a timeout or a release), if it did.
                let first_end = first
                    .finished_at
                    .or_else(|| attempts.iter().find(|a| a.number == first.attempt).and_then(|a| a.ended_at))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if second.started_at >= first_end {
                    continue;
                }
                let lost_lease = attempts
                    .iter()
                    .filter(|a| a.number >= first.attempt && a.number < second.attempt)
                    .any(|a| a.end == Some(EventType::WorkerLockExpired));
                if !lost_lease {
                    self.violation(
                        Invariant::NoOverlap,
                        format!(
                            "attempts {} ({}) and {} ({}) ran at the same time without a lease expiry between",
                            first.attempt, first.worker_id, second.attempt, second.worker_id
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::Options;
    use crate::check::test_support::{Story, broken};
    use crate::store::{EventType, TaskStatus};

    #[test]
    fn a_rescued_then_successful_task_passes_every_invariant() {
        let mut story = Story::new();
        story.start(10, "a").retry(16_000, EventType::WorkerLockExpired, 1_000);
        story.start(17_500, "b").event(18_000, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        // Worker a was frozen: its run overlaps b's, across the lease expiry.
        let runs = vec![story.run(1, "a", 20, Some(19_000)), story.run(2, "b", 17_600, Some(17_900))];
        let report = story.verify(runs, &Options { settled: true, ..Options::default() });
        assert!(report.passed(), "{:#?}", report.violations);
        assert_eq!((report.rescued_attempts, report.repeated_runs), (1, 1));
    }

    #[test]
    fn an_outcome_after_the_lease_ran_out_is_a_violation() {
        let mut story = Story::new();
        // timeout 5 s + grace 10 s: the lease ends at 15.01 s.
        story.start(10, "a").event(15_500, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let report = story.verify(vec![story.run(1, "a", 11, Some(15_400))], &Options::default());
        assert_eq!(broken(&report), [7], "{:#?}", report.violations);
    }

    #[test]
    fn overlapping_runs_without_a_lease_expiry_are_a_violation() {
        let mut story = Story::new();
        story.start(10, "a").retry(100, EventType::TaskFailed, 1_000);
        story.start(1_200, "b").event(1_300, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        // Attempt 1 reported its failure but its handler kept running into attempt 2.
        let runs = vec![story.run(1, "a", 20, Some(1_250)), story.run(2, "b", 1_210, Some(1_290))];
        assert_eq!(broken(&story.verify(runs, &Options::default())), [6]);
    }

    #[test]
    fn an_unexplained_ledger_run_is_a_violation() {
        let mut story = Story::new();
        story.start(10, "a").event(20, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let runs = vec![
            story.run(1, "a", 11, Some(19)),
            story.run(1, "a", 12, Some(19)),
            story.run(2, "c", 30, None),
        ];
        assert_eq!(broken(&story.verify(runs, &Options::default())), [11]);
    }
}
