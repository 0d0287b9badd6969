//! The checker's view of a task's life: invariants 2 (at rest nothing runs and nothing
//! runnable waits), 3 (the history follows the state machine and ends where the task
//! is), 5 (exactly one success), 8 (only a manual retry leaves a terminal status) and
//! 10 (every change has its event from the same transaction).
//!
//! `TaskCheck::history` walks each history through the state machine once, in order.
//! It is the spine of the per-task checks: it hands starts, outcomes, releases and
//! retries to `leases` and `retries` as it meets them, and returns the attempts it saw
//! for the ledger and the queue checks.

use chrono::{DateTime, Utc};

use super::retries::is_manual_retry;
use super::{Attempt, Invariant, TaskCheck, slack};
use crate::store::{EventType, HistoryEvent, TaskStatus};

/// The status a task has right after an event of this type (failure events carry the
/// status the retry decision gave the task, checked with their partner event).
fn status_after(event: EventType) -> Option<TaskStatus> {
    match event {
        EventType::TaskQueued
        | EventType::RetryScheduled
        | EventType::TaskRequeued
        | EventType::TaskSnoozed => Some(TaskStatus::Queued),
        EventType::TaskStarted => Some(TaskStatus::Running),
        EventType::TaskSucceeded => Some(TaskStatus::Succeeded),
        EventType::TaskFailedFinal => Some(TaskStatus::Failed),
        EventType::TaskCancelled => Some(TaskStatus::Cancelled),
        EventType::TaskFailed | EventType::TimeoutOccurred | EventType::WorkerLockExpired => None,
    }
}

/// Whether an event reports a failed attempt (its retry decision follows it).
pub(super) fn is_failure(event: EventType) -> bool {
    matches!(event, EventType::TaskFailed | EventType::TimeoutOccurred | EventType::WorkerLockExpired)
}

impl TaskCheck<'_> {
    /// Walks the history through the state machine; returns the attempts it saw.
    pub(super) fn history(&mut self, history: &[HistoryEvent]) -> Vec<Attempt> {
        let task = self.task;
        let mut attempts: Vec<Attempt> = Vec::new();
        let Some(first) = history.first() else {
            self.violation(Invariant::HistoryShape, "the task has no history".into());
            return attempts;
        };
        if first.event_type != EventType::TaskQueued {
            self.violation(Invariant::HistoryShape, format!("history starts with {:?}", first.event_type));
        }

        let mut state: Option<TaskStatus> = None;
        let mut retries = 0;
        let mut successes = 0;
        // A failure event waiting for its decision (retry_scheduled / task_failed_final).
        let mut pending_failure: Option<&HistoryEvent> = None;
        // When the next attempt may start at the earliest (the last retry's due time).
        let mut due: Option<DateTime<Utc>> = None;

        for (index, event) in history.iter().enumerate() {
            let kind = event.event_type;
            let previous = state;
            if let Some(failure) = pending_failure.take() {
                match kind {
                    EventType::RetryScheduled | EventType::TaskFailedFinal => {
                        if failure.status != event.status || failure.retry_count != event.retry_count {
                            self.violation(
                                Invariant::SameTransaction,
                                format!(
                                    "event {} ({kind:?}) and its failure {} disagree on status or retry count",
                                    event.id, failure.id
                                ),
                            );
                        }
                    }
                    other => self.violation(
                        Invariant::HistoryShape,
                        format!(
                            "failure event {} is followed by {other:?}, not by its retry decision",
                            failure.id
                        ),
                    ),
                }
            }
            if let Some(expected) = status_after(kind)
                && event.status != expected
            {
                self.violation(
                    Invariant::HistoryShape,
                    format!("event {} ({kind:?}) records status {:?}", event.id, event.status),
                );
            }

            // Invariant 8: after a terminal state only a manual retry; invariant 20 for
            // the case that matters most to whoever cancelled: the task ran again.
            if let Some(terminal) = previous.filter(|s| s.is_terminal()) {
                let manual = is_manual_retry(event) && terminal != TaskStatus::Succeeded;
                if terminal == TaskStatus::Cancelled && kind == EventType::TaskStarted {
                    self.violation(
                        Invariant::CancelledRanAgain,
                        format!(
                            "attempt {} started (event {}) after the task was cancelled",
                            attempts.len() + 1,
                            event.id
                        ),
                    );
                } else if !manual {
                    self.violation(
                        Invariant::TerminalIsFinal,
                        format!("{kind:?} (event {}) follows the terminal status {terminal:?}", event.id),
                    );
                }
            }

            match kind {
                EventType::TaskQueued => {
                    if index != 0 {
                        self.violation(
                            Invariant::HistoryShape,
                            format!("a second task_queued (event {})", event.id),
                        );
                    }
                    state = Some(TaskStatus::Queued);
                }
                EventType::TaskStarted => {
                    if previous == Some(TaskStatus::Running) {
                        self.violation(
                            Invariant::NoOverlap,
                            format!(
                                "attempt {} started while attempt {} was running",
                                attempts.len() + 1,
                                attempts.len()
                            ),
                        );
                    } else if !matches!(previous, Some(TaskStatus::Queued | TaskStatus::Cancelled)) {
                        // (A start after a cancel is invariant 20's, above.)
                        self.violation(
                            Invariant::HistoryShape,
                            format!("task_started (event {}) from status {previous:?}", event.id),
                        );
                    }
                    self.started_when_due(event, due.take(), attempts.len() + 1);
                    if let Some(open) = attempts.last_mut().filter(|a| a.end.is_none()) {
                        open.end = Some(EventType::TaskStarted);
                        open.ended_at = Some(event.created_at);
                    }
                    attempts.push(Attempt {
                        number: attempts.len() as i32 + 1,
                        worker_id: event.worker_id.clone(),
                        started_at: event.created_at,
                        end: None,
                        ended_at: None,
                    });
                    state = Some(TaskStatus::Running);
                }
                EventType::TaskSucceeded | EventType::TaskFailed | EventType::TimeoutOccurred => {
                    self.outcome(event, previous, attempts.last_mut());
                    if kind == EventType::TaskSucceeded {
                        successes += 1;
                        state = Some(TaskStatus::Succeeded);
                    } else {
                        // The state changes with the decision event that follows.
                        pending_failure = Some(event);
                    }
                }
                EventType::WorkerLockExpired => {
                    if previous != Some(TaskStatus::Running) {
                        self.violation(
                            Invariant::HistoryShape,
                            format!("worker_lock_expired (event {}) from status {previous:?}", event.id),
                        );
                    }
                    if let Some(attempt) = attempts.last_mut().filter(|a| a.end.is_none()) {
                        attempt.end = Some(kind);
                        attempt.ended_at = Some(event.created_at);
                    }
                    pending_failure = Some(event);
                }
                EventType::RetryScheduled => {
                    if !history.get(index.wrapping_sub(1)).is_some_and(|e| is_failure(e.event_type)) {
                        self.violation(
                            Invariant::HistoryShape,
                            format!(
                                "retry_scheduled (event {}) without a failed attempt before it",
                                event.id
                            ),
                        );
                    }
                    retries += 1;
                    self.retry_scheduled(event, retries);
                    due = event.next_run_at;
                    state = Some(TaskStatus::Queued);
                }
                EventType::TaskFailedFinal => {
                    let cause = history.get(index.wrapping_sub(1)).filter(|e| is_failure(e.event_type));
                    match cause {
                        None => self.violation(
                            Invariant::HistoryShape,
                            format!(
                                "task_failed_final (event {}) without a failed attempt before it",
                                event.id
                            ),
                        ),
                        Some(cause) => self.failed_for_good(event, cause),
                    }
                    state = Some(TaskStatus::Failed);
                }
                EventType::TaskCancelled => {
                    match previous {
                        Some(TaskStatus::Queued) => {}
                        // A running task whose cancel was requested: its attempt ends here.
                        Some(TaskStatus::Running) => self.cancelled_attempt(event, attempts.last_mut()),
                        other => self.violation(
                            Invariant::HistoryShape,
                            format!("task_cancelled (event {}) from status {other:?}", event.id),
                        ),
                    }
                    state = Some(TaskStatus::Cancelled);
                }
                // A snooze ends its attempt like a worker's outcome (fenced the same way)
                // and puts the task back until `next_run_at`, spending no retry.
                EventType::TaskSnoozed => {
                    self.outcome(event, previous, attempts.last_mut());
                    self.snoozed(event, retries);
                    due = event.next_run_at;
                    state = Some(TaskStatus::Queued);
                }
                EventType::TaskRequeued => {
                    match previous {
                        // Released by a worker shutting down: the attempt ends, no retry spent.
                        Some(TaskStatus::Running) => self.released(event, attempts.last_mut()),
                        // A manual retry restores the retries.
                        Some(TaskStatus::Failed | TaskStatus::Cancelled) => {
                            retries = 0;
                            due = None;
                        }
                        other => self.violation(
                            Invariant::HistoryShape,
                            format!("task_requeued (event {}) from status {other:?}", event.id),
                        ),
                    }
                    state = Some(TaskStatus::Queued);
                }
            }
            self.recorded_retries(event, retries);
        }
        if let Some(failure) = pending_failure {
            self.violation(
                Invariant::HistoryShape,
                format!("failure event {} is the last event: its retry decision is missing", failure.id),
            );
        }

        // Invariant 5.
        if successes > 1 {
            self.violation(Invariant::SingleSuccess, format!("{successes} task_succeeded events"));
        }
        if task.status == TaskStatus::Succeeded && successes != 1 {
            self.violation(
                Invariant::SingleSuccess,
                format!("succeeded with {successes} task_succeeded events"),
            );
        }
        self.retry_count(retries);
        // Invariant 3: the last event agrees with the task.
        if state != Some(task.status) {
            self.violation(
                Invariant::HistoryShape,
                format!("the task is {:?} but its history ends in {state:?}", task.status),
            );
        }
        self.same_transaction(history, &attempts);
        self.settled();
        attempts
    }

    /// Invariant 10: the task row carries the marks of its last event's transaction.
    fn same_transaction(&mut self, history: &[HistoryEvent], attempts: &[Attempt]) {
        let task = self.task;
        let Some(last) = history.last() else { return };
        let apart = (task.updated_at - last.created_at).abs();
        if apart > chrono::Duration::milliseconds(1) {
            self.violation(
                Invariant::SameTransaction,
                format!(
                    "updated at {} but the last event ({:?}) is from {}: a change without its event",
                    task.updated_at, last.event_type, last.created_at
                ),
            );
        }
        if task.attempt != attempts.len() as i32 {
            self.violation(
                Invariant::SameTransaction,
                format!("attempt is {} but the history started {} attempts", task.attempt, attempts.len()),
            );
        }
        if let Some(latest) = attempts.last() {
            if task.worker_id != latest.worker_id {
                self.violation(
                    Invariant::SameTransaction,
                    format!(
                        "worker_id is {:?} but the last attempt started on {:?}",
                        task.worker_id, latest.worker_id
                    ),
                );
            }
            if task
                .started_at
                .is_none_or(|at| (at - latest.started_at).abs() > chrono::Duration::milliseconds(1))
            {
                self.violation(
                    Invariant::SameTransaction,
                    format!(
                        "started_at is {:?} but the last attempt started at {}",
                        task.started_at, latest.started_at
                    ),
                );
            }
        }
        if task.status == TaskStatus::Running && attempts.last().is_none_or(|a| a.end.is_some()) {
            self.violation(
                Invariant::SameTransaction,
                "running without a running attempt in the history".into(),
            );
        }
    }

    /// Invariant 2, at rest only.
    fn settled(&mut self) {
        if !self.options.settled {
            return;
        }
        let task = self.task;
        match task.status {
            TaskStatus::Running => self.violation(
                Invariant::Settled,
                format!(
                    "still running at rest (worker {:?}, lease until {:?})",
                    task.worker_id, task.locked_until
                ),
            ),
            TaskStatus::Queued if task.run_at + slack(self.options) < self.now => self.violation(
                Invariant::Settled,
                format!("runnable since {} but still queued at rest", task.run_at),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::Options;
    use crate::check::test_support::{Story, at, broken};
    use crate::store::{EventType, TaskStatus};

    #[test]
    fn a_second_success_is_a_violation() {
        let mut story = Story::new();
        story.start(10, "a").event(20, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        story.event(30, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let report = story.verify(vec![story.run(1, "a", 11, Some(19))], &Options::default());
        assert!(broken(&report).contains(&5), "{:#?}", report.violations);
        assert!(broken(&report).contains(&8), "{:#?}", report.violations);
    }

    #[test]
    fn a_change_without_its_event_is_a_violation() {
        let mut story = Story::new();
        story.start(10, "a");
        // The row says queued (a release), but no event was written for it.
        story.task.status = TaskStatus::Queued;
        story.task.updated_at = at(50);
        let numbers = broken(&story.verify(vec![], &Options::default()));
        assert!(numbers.contains(&3) && numbers.contains(&10), "{numbers:?}");
    }

    #[test]
    fn at_rest_nothing_runs_and_nothing_runnable_waits() {
        let mut story = Story::new();
        story.start(10, "a");
        let settled = Options { settled: true, ..Options::default() };
        assert_eq!(broken(&story.verify(vec![], &settled)), [2]);
        assert!(story.verify(vec![], &Options::default()).passed());
        assert_eq!(broken(&Story::new().verify(vec![], &settled)), [2]);
    }

    #[test]
    fn a_cancelled_task_that_runs_again_is_a_violation_unless_retried_by_hand() {
        let mut story = Story::new();
        story.start(10, "a");
        story.task.completed_at = Some(at(20));
        story.event(20, EventType::TaskCancelled, TaskStatus::Cancelled, None);
        story.events.last_mut().unwrap().error_message =
            Some("cancelled by the API; stopped by its handler".into());
        assert!(story.verify(vec![], &Options::default()).passed(), "a running task may end cancelled");

        let mut again = story.clone();
        again.task.completed_at = None;
        again.start(30, "b");
        assert_eq!(broken(&again.verify(vec![], &Options::default())), [20]);

        let mut retried = story.clone();
        retried.task.completed_at = None;
        retried.event(30, EventType::TaskRequeued, TaskStatus::Queued, None);
        retried.events.last_mut().unwrap().error_message = Some("manual retry".into());
        retried.start(40, "b");
        assert!(retried.verify(vec![], &Options::default()).passed());
    }

    #[test]
    fn the_rescuers_cancel_of_a_lost_worker_comes_after_the_lease() {
        let mut story = Story::new();
        story.start(10, "a");
        story.task.completed_at = Some(at(60_000));
        story.event(60_000, EventType::TaskCancelled, TaskStatus::Cancelled, None);
        let note = |how: &str| Some(format!("cancelled by the API; {how}"));
        story.events.last_mut().unwrap().error_message = note(crate::store::WORKER_LOST);
        assert!(story.verify(vec![], &Options::default()).passed());
        // Written as the worker's own stop, it came after the lease (5 s + 10 s): invariant 7.
        story.events.last_mut().unwrap().error_message = note("stopped by its handler");
        assert_eq!(broken(&story.verify(vec![], &Options::default())), [7]);
    }
}
