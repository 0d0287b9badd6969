//! Fixtures shared by the checker's unit tests: a task and its history told event by
//! event as the store writes them ([`Story`]), and the invariants a report says were
//! broken ([`broken`]). Each family's tests tell their stories with these.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::lifecycle::is_failure;
use super::{LedgerRun, Options, Report, verify};
use crate::store::{EventType, HistoryEvent, Task, TaskStatus};

pub(super) fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
}

/// Builds a task and its history event by event, as the store would.
#[derive(Clone)]
pub(super) struct Story {
    pub(super) task: Task,
    pub(super) events: Vec<HistoryEvent>,
}

impl Story {
    pub(super) fn new() -> Self {
        Self::in_queue("default")
    }

    pub(super) fn in_queue(queue: &str) -> Self {
        let task = Task {
            id: Uuid::now_v7(),
            name: "t".into(),
            task_type: "ledger".into(),
            payload: json!({}),
            status: TaskStatus::Queued,
            priority: 0,
            retry_count: 0,
            max_retries: 2,
            snooze_count: 0,
            max_snoozes: 25,
            backoff_seconds: 1,
            timeout_seconds: 5,
            attempt: 0,
            run_at: at(0),
            last_error: None,
            result: None,
            worker_id: None,
            locked_until: None,
            idempotency_key: None,
            created_at: at(0),
            updated_at: at(0),
            started_at: None,
            completed_at: None,
            progress: None,
            cancel_requested_at: None,
            cancel_reason: None,
            queue: queue.into(),
            concurrency_key: None,
            schedule: None,
            tick_at: None,
        };
        let mut story = Self { task, events: Vec::new() };
        story.event(0, EventType::TaskQueued, TaskStatus::Queued, None);
        story
    }

    pub(super) fn event(
        &mut self,
        ms: i64,
        kind: EventType,
        status: TaskStatus,
        next: Option<i64>,
    ) -> &mut Self {
        let task = &mut self.task;
        task.status = status;
        task.updated_at = at(ms);
        match kind {
            EventType::TaskStarted => {
                task.attempt += 1;
                task.started_at = Some(at(ms));
            }
            EventType::RetryScheduled => {
                task.retry_count += 1;
                task.run_at = at(next.unwrap());
            }
            _ => {}
        }
        let retry_count = if is_failure(kind) && status == TaskStatus::Queued {
            task.retry_count + 1
        } else {
            task.retry_count
        };
        self.events.push(HistoryEvent {
            id: self.events.len() as i64 + 1,
            task_id: task.id,
            event_type: kind,
            status,
            retry_count,
            worker_id: task.worker_id.clone(),
            error_message: None,
            next_run_at: next.map(at),
            created_at: at(ms),
            queue: task.queue.clone(),
            schedule: None,
            tick_at: None,
            progress_at: None,
        });
        self
    }

    pub(super) fn start(&mut self, ms: i64, worker: &str) -> &mut Self {
        self.task.worker_id = Some(worker.into());
        self.event(ms, EventType::TaskStarted, TaskStatus::Running, None)
    }

    pub(super) fn retry(&mut self, ms: i64, failure: EventType, delay_ms: i64) -> &mut Self {
        self.event(ms, failure, TaskStatus::Queued, None);
        self.event(ms, EventType::RetryScheduled, TaskStatus::Queued, Some(ms + delay_ms))
    }

    pub(super) fn verify(&self, runs: Vec<LedgerRun>, options: &Options) -> Report {
        verify(
            std::slice::from_ref(&self.task),
            self.events.clone(),
            runs,
            vec![],
            vec![],
            options,
            at(600_000),
        )
    }

    pub(super) fn run(&self, attempt: i32, worker: &str, from: i64, to: Option<i64>) -> LedgerRun {
        LedgerRun {
            task_id: self.task.id,
            attempt,
            worker_id: worker.into(),
            started_at: at(from),
            finished_at: to.map(at),
        }
    }
}

/// The numbers of the invariants `report` says were broken, in the order of its
/// violations (one number for a run of violations of one invariant).
pub(super) fn broken(report: &Report) -> Vec<u8> {
    let mut numbers: Vec<u8> = report.violations.iter().map(|v| v.invariant.number()).collect();
    numbers.dedup();
    numbers
}
