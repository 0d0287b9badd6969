//! The checker's view of retries: invariants 4 (`retry_count` equals the retries
//! scheduled and never exceeds `max_retries`; a `failed` task used its retries or hit a
//! fatal error), 9 (every retry delay lies within the backoff bounds, and no retry, nor
//! snooze, starts early) and 19 (no snooze spent a retry).
//!
//! The history walk counts the retries it sees scheduled and hands each event to these
//! checks. A manual retry, the one way out of `failed` or `cancelled`, gives the task
//! its retries back; it is told from any other `task_requeued` by the note the store
//! writes on it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::lifecycle::is_failure;
use super::{Invariant, TaskCheck, slack};
use crate::store::{EventType, HistoryEvent, TaskStatus};

/// The note `Store::retry` writes on a manual retry's `task_requeued`.
const MANUAL_RETRY: &str = "manual retry";

/// Whether `event` is a manual retry.
pub(super) fn is_manual_retry(event: &HistoryEvent) -> bool {
    event.event_type == EventType::TaskRequeued && event.error_message.as_deref() == Some(MANUAL_RETRY)
}

impl TaskCheck<'_> {
    /// Invariant 9: an attempt starts no earlier than the retry before it was due.
    pub(super) fn started_when_due(
        &mut self,
        start: &HistoryEvent,
        due: Option<DateTime<Utc>>,
        attempt: usize,
    ) {
        if let Some(due) = due
            && start.created_at + slack(self.options) < due
        {
            self.violation(
                Invariant::BackoffBounds,
                format!(
                    "attempt {attempt} started at {} before its retry (or snooze) was due at {due}",
                    start.created_at
                ),
            );
        }
    }

    /// A `retry_scheduled`: it is the history's retry number `retries` (invariant 4),
    /// and its delay lies within the bounds (invariant 9).
    pub(super) fn retry_scheduled(&mut self, event: &HistoryEvent, retries: i32) {
        if event.retry_count != retries {
            self.violation(
                Invariant::Retries,
                format!(
                    "retry_scheduled (event {}) says retry {}, but it is retry {retries}",
                    event.id, event.retry_count
                ),
            );
        }
        self.backoff(event);
    }

    /// Invariant 9: the delay lies within the policy's bounds.
    fn backoff(&mut self, event: &HistoryEvent) {
        let Some(next_run_at) = event.next_run_at else {
            self.violation(
                Invariant::BackoffBounds,
                format!("retry_scheduled (event {}) has no next_run_at", event.id),
            );
            return;
        };
        let (low, high) = self.options.policy.bounds(self.task.backoff_seconds, event.retry_count);
        let delay = (next_run_at - event.created_at).to_std().unwrap_or_default();
        let tolerance = Duration::from_millis(100);
        if delay + tolerance < low || delay > high + tolerance {
            self.violation(
                Invariant::BackoffBounds,
                format!(
                    "retry {} waits {delay:?}, outside {low:?}..{high:?} (backoff_seconds {})",
                    event.retry_count, self.task.backoff_seconds
                ),
            );
        }
    }

    /// Invariant 19: a `task_snoozed` spends no retry (it records the retries scheduled
    /// so far) and says when the task runs again (its start is then held to that, as a
    /// retry's is, by invariant 9).
    pub(super) fn snoozed(&mut self, event: &HistoryEvent, retries: i32) {
        if event.retry_count != retries {
            self.violation(
                Invariant::SnoozeSpentNoRetry,
                format!(
                    "task_snoozed (event {}) records retry count {}, but {retries} retries were scheduled",
                    event.id, event.retry_count
                ),
            );
        }
        if event.next_run_at.is_none() {
            self.violation(
                Invariant::SnoozeSpentNoRetry,
                format!("task_snoozed (event {}) does not say when the task runs again", event.id),
            );
        }
    }

    /// Invariant 4 for a `task_failed_final` after `cause`: with retries left, only a
    /// fatal handler error may fail the task.
    pub(super) fn failed_for_good(&mut self, event: &HistoryEvent, cause: &HistoryEvent) {
        let task = self.task;
        if event.retry_count < task.max_retries && cause.event_type != EventType::TaskFailed {
            self.violation(
                Invariant::Retries,
                format!(
                    "failed for good after {:?} with {} of {} retries used",
                    cause.event_type, event.retry_count, task.max_retries
                ),
            );
        }
    }

    /// Invariant 4 event by event: each event records the `retries` scheduled so far;
    /// a failure event carries the count after its decision. (A `task_queued` is not
    /// checked, and a `retry_scheduled` is checked by [`Self::retry_scheduled`].)
    pub(super) fn recorded_retries(&mut self, event: &HistoryEvent, retries: i32) {
        let kind = event.event_type;
        let expected = match kind {
            // A snooze's count is invariant 19's (`snoozed`).
            EventType::TaskQueued | EventType::RetryScheduled | EventType::TaskSnoozed => return,
            _ if is_failure(kind) && event.status == TaskStatus::Queued => retries + 1,
            _ => retries,
        };
        if event.retry_count != expected {
            // The message names a task_requeued as it is stored, other events by variant.
            let name =
                if kind == EventType::TaskRequeued { "task_requeued".into() } else { format!("{kind:?}") };
            self.violation(
                Invariant::Retries,
                format!(
                    "{name} (event {}) records retry count {}, expected {expected}",
                    event.id, event.retry_count
                ),
            );
        }
    }

    /// Invariant 4 for the task: its `retry_count` is the `retries` its history
    /// scheduled, and within its `max_retries`.
    pub(super) fn retry_count(&mut self, retries: i32) {
        let task = self.task;
        if task.retry_count != retries {
            self.violation(
                Invariant::Retries,
                format!("retry_count is {} but the history scheduled {retries} retries", task.retry_count),
            );
        }
        if task.retry_count > task.max_retries {
            self.violation(
                Invariant::Retries,
                format!("retry_count {} exceeds max_retries {}", task.retry_count, task.max_retries),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Options;
    use crate::check::test_support::{Story, at, broken};

    #[test]
    fn a_retry_outside_the_backoff_bounds_is_a_violation() {
        let mut story = Story::new();
        // Retry 1 with backoff 1 s may wait 1.0–1.25 s; this one waits 3 s.
        story.start(10, "a").retry(100, EventType::TaskFailed, 3_000);
        assert_eq!(broken(&story.verify(vec![], &Options::default())), [9]);
    }

    #[test]
    fn a_timeout_may_not_fail_a_task_that_has_retries_left() {
        let mut story = Story::new();
        story.start(10, "a");
        story.task.completed_at = Some(at(100));
        story.event(100, EventType::TimeoutOccurred, TaskStatus::Failed, None);
        story.event(100, EventType::TaskFailedFinal, TaskStatus::Failed, None);
        assert_eq!(broken(&story.verify(vec![], &Options::default())), [4]);
    }

    #[test]
    fn a_manual_retry_restores_the_retries_and_is_the_only_way_out_of_a_terminal_state() {
        let mut story = Story::new();
        story.task.max_retries = 0;
        story.start(10, "a");
        story.event(20, EventType::TaskFailed, TaskStatus::Failed, None);
        story.event(20, EventType::TaskFailedFinal, TaskStatus::Failed, None);
        story.event(30, EventType::TaskRequeued, TaskStatus::Queued, None);
        story.events.last_mut().unwrap().error_message = Some(MANUAL_RETRY.into());
        story.start(40, "b").event(50, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        let report = story.verify(vec![story.run(2, "b", 41, Some(49))], &Options::default());
        assert!(report.passed(), "{:#?}", report.violations);

        story.events[4].error_message = None;
        assert_eq!(broken(&story.verify(vec![story.run(2, "b", 41, Some(49))], &Options::default())), [8]);
    }

    #[test]
    fn a_snooze_spends_no_retry_and_holds_the_next_start_to_its_end() {
        let mut story = Story::new();
        story.start(10, "a").event(20, EventType::TaskSnoozed, TaskStatus::Queued, Some(5_000));
        story.task.snooze_count = 1;
        story.start(5_000, "a").event(5_100, EventType::TaskSucceeded, TaskStatus::Succeeded, None);
        story.task.completed_at = Some(at(5_100));
        let report = story.verify(vec![story.run(2, "a", 5_001, Some(5_099))], &Options::default());
        assert!(report.passed(), "{:#?}", report.violations);

        // The same snooze counted as a retry (in its event and on the task).
        let mut spent = story.clone();
        spent.events[2].retry_count = 1;
        spent.task.retry_count = 1;
        assert!(
            broken(&spent.verify(vec![spent.run(2, "a", 5_001, Some(5_099))], &Options::default()))
                .contains(&19)
        );

        // The next attempt before the snooze ended.
        let mut early = story.clone();
        early.events[2].next_run_at = Some(at(60_000));
        assert_eq!(
            broken(&early.verify(vec![early.run(2, "a", 5_001, Some(5_099))], &Options::default())),
            [9]
        );
    }
}
