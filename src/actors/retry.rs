//! Retry: turns a failed attempt into its next state with the backoff policy, and
//! hands the decision to its own BatchWriter. Snoozes go the same way: the policy
//! checks `max_snoozes`, and the writer batches them with the failures.
//!
//! The decision uses the `retry_count` and `snooze_count` the attempt was claimed
//! with; the write is fenced on the attempt, so a decision about a stale attempt
//! changes nothing.

use std::sync::Arc;

use actix::prelude::*;

use super::messages::{AttemptFailed, Flush, Record, WatchWrites};
use super::writer::BatchWriter;
use crate::backoff::RetryPolicy;
use crate::metrics;
use crate::store::{AttemptRef, Failure, FailureKind, Store};

pub struct Retry {
    policy: RetryPolicy,
    writer: Addr<BatchWriter<Failure>>,
}

impl Retry {
    pub fn new(policy: RetryPolicy, store: Arc<dyn Store>, worker_id: Arc<str>) -> Self {
        Self { policy, writer: BatchWriter::new(store, worker_id).start() }
    }
}

impl Actor for Retry {
    type Context = Context<Self>;
}

impl Handler<AttemptFailed> for Retry {
    type Result = ();

    fn handle(&mut self, failed: AttemptFailed, _: &mut Self::Context) {
        let task = &failed.task;
        let attempt = AttemptRef { task_id: task.id, attempt: task.attempt };
        if let Some(delay) = failed.snooze {
            let failure = match self.policy.snooze(task, delay) {
                Ok(delay) => {
                    metrics::snoozed(&task.task_type);
                    tracing::info!(task_id = %task.id, task_type = %task.task_type, snooze = ?delay, "attempt snoozed");
                    Failure {
                        attempt,
                        kind: FailureKind::Snoozed,
                        error: failed.error,
                        retry_in: Some(delay),
                    }
                }
                Err(error) => {
                    tracing::info!(task_id = %task.id, task_type = %task.task_type, %error, "too many snoozes: failing the task");
                    Failure { attempt, kind: FailureKind::Error, error, retry_in: None }
                }
            };
            self.writer.do_send(Record(failure));
            return;
        }
        if failed.kind == FailureKind::Cancelled {
            // Never retried; the write ends the task `cancelled`, noting how it stopped.
            self.writer.do_send(Record(Failure {
                attempt,
                kind: failed.kind,
                error: failed.error,
                retry_in: None,
            }));
            return;
        }
        let retry_in = self.policy.decide(task, failed.fatal);
        if retry_in.is_some() {
            metrics::retry_scheduled(&task.task_type);
        }
        tracing::info!(
            task_id = %task.id,
            task_type = %task.task_type,
            attempt = task.attempt,
            error = %failed.error,
            retry_in = ?retry_in,
            "attempt failed"
        );
        self.writer.do_send(Record(Failure { attempt, kind: failed.kind, error: failed.error, retry_in }));
    }
}

impl Handler<WatchWrites> for Retry {
    type Result = ();

    fn handle(&mut self, watch: WatchWrites, _: &mut Self::Context) {
        self.writer.do_send(watch);
    }
}

impl Handler<Flush> for Retry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, flush: Flush, _: &mut Self::Context) -> Self::Result {
        let writer = self.writer.clone();
        Box::pin(async move {
            let _ = writer.send(flush).await;
        })
    }
}
