//! BatchWriter: persists outcomes in batches. The Completer is a `BatchWriter` of
//! completions; the Retry actor feeds one of failures; executors feed one of progress
//! reports (`attempt::ProgressReport`).
//!
//! Batching is natural rather than timed: when no write is in flight, an outcome is
//! written at once (lowest latency when idle); while one is in flight, outcomes pile
//! up and go together in the next write (fewest round trips under load). A failed
//! write is retried with backoff; after [`GIVE_UP_AFTER`] failures the batch is
//! dropped with an error, which loses nothing: those attempts are still `running` in
//! the database and the Rescuer recovers them when their leases run out.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::messages::{Flush, Freed, Record, WatchWrites};
use crate::store::{self, Completion, Failure, Store};

/// The most outcomes in one write.
const MAX_BATCH: usize = 1000;
/// Consecutive failed writes after which a batch is left to the Rescuer.
const GIVE_UP_AFTER: u32 = 20;
/// Backoff between failed writes: doubling from the first, up to the last.
const RETRY_DELAYS: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// An outcome the writer knows how to persist.
pub trait Outcome: Send + Unpin + 'static {
    /// What the outcome is, for logs.
    const KIND: &'static str;
    /// Whether writing it ends attempts, freeing slots of limited queues (`Freed`).
    const FREES_SLOTS: bool = true;
    fn task_id(&self) -> Uuid;
    fn write(
        store: Arc<dyn Store>,
        worker_id: Arc<str>,
        batch: Arc<Vec<Self>>,
    ) -> BoxFuture<'static, store::Result<Vec<Uuid>>>
    where
        Self: Sized;

    /// Called for each outcome of a batch once it is written: `applied` says whether
    /// its fence held. By default one that did not is logged: the attempt's lease was
    /// lost.
    fn written(self, applied: bool)
    where
        Self: Sized,
    {
        if !applied {
            tracing::warn!(
                task_id = %self.task_id(),
                "{} ignored: the attempt's lease was lost (another attempt owns the task now)",
                Self::KIND
            );
        }
    }
}

impl Outcome for Completion {
    const KIND: &'static str = "completion";

    fn task_id(&self) -> Uuid {
        self.attempt.task_id
    }

    fn write(
        store: Arc<dyn Store>,
        worker_id: Arc<str>,
        batch: Arc<Vec<Self>>,
    ) -> BoxFuture<'static, store::Result<Vec<Uuid>>> {
        Box::pin(async move { store.complete(&worker_id, &batch).await })
    }
}

impl Outcome for Failure {
    const KIND: &'static str = "failure";

    fn task_id(&self) -> Uuid {
        self.attempt.task_id
    }

    fn write(
        store: Arc<dyn Store>,
        worker_id: Arc<str>,
        batch: Arc<Vec<Self>>,
    ) -> BoxFuture<'static, store::Result<Vec<Uuid>>> {
        Box::pin(async move { store.fail(&worker_id, &batch).await })
    }
}

pub struct BatchWriter<T: Outcome> {
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
    /// Outcomes recorded and not yet written, oldest first.
    pending: Vec<T>,
    /// Whether a write is in flight (at most one at a time).
    writing: bool,
    /// Consecutive failed writes of the batch at the front of `pending`.
    failures: u32,
    /// `Flush` callers waiting for `pending` to empty.
    waiters: Vec<oneshot::Sender<()>>,
    /// Told after every write that finished attempts (`WatchWrites`).
    watchers: Vec<Recipient<Freed>>,
}

/// The Completer: batches of successful attempts.
pub type Completer = BatchWriter<Completion>;

impl<T: Outcome> BatchWriter<T> {
    pub fn new(store: Arc<dyn Store>, worker_id: Arc<str>) -> Self {
        Self {
            store,
            worker_id,
            pending: Vec::new(),
            writing: false,
            failures: 0,
            waiters: Vec::new(),
            watchers: Vec::new(),
        }
    }

    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self.pending.is_empty() {
            self.waiters.drain(..).for_each(|waiter| {
                let _ = waiter.send(());
            });
            return;
        }
        self.writing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let batch = Arc::new(self.pending.drain(..take).collect::<Vec<_>>());
        let write =
            super::io(T::write(Arc::clone(&self.store), Arc::clone(&self.worker_id), Arc::clone(&batch)));
        ctx.spawn(write.into_actor(self).map(move |written, writer, ctx| {
            writer.writing = false;
            match written {
                Ok(applied) => {
                    writer.failures = 0;
                    if !applied.is_empty() && T::FREES_SLOTS {
                        writer.watchers.iter().for_each(|watcher| watcher.do_send(Freed));
                    }
                    let applied: std::collections::HashSet<Uuid> = applied.into_iter().collect();
                    let batch = Arc::try_unwrap(batch)
                        .unwrap_or_else(|_| unreachable!("the write future has finished"));
                    for outcome in batch {
                        let written = applied.contains(&outcome.task_id());
                        outcome.written(written);
                    }
                    writer.write_next(ctx);
                }
                Err(error) => writer.retry_later(batch, error, ctx),
            }
        }));
    }

    fn retry_later(&mut self, batch: Arc<Vec<T>>, error: store::StoreError, ctx: &mut Context<Self>) {
        self.failures += 1;
        if self.failures >= GIVE_UP_AFTER {
            tracing::error!(
                error = %error,
                tasks = batch.len(),
                "giving up writing {} batch; the Rescuer will recover these attempts when their leases run out",
                T::KIND
            );
            self.failures = 0;
            self.write_next(ctx);
            return;
        }
        let delay = RETRY_DELAYS.0.saturating_mul(1 << self.failures.min(16)).min(RETRY_DELAYS.1);
        tracing::warn!(error = %error, attempt = self.failures, retry_in = ?delay, "{} write failed; retrying", T::KIND);
        // Put the batch back in front, keeping order.
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|_| unreachable!("the write future has finished"));
        self.pending.splice(0..0, batch);
        self.writing = true;
        ctx.run_later(delay, |writer, ctx| {
            writer.writing = false;
            writer.write_next(ctx);
        });
    }
}

impl<T: Outcome> Actor for BatchWriter<T> {
    type Context = Context<Self>;
}

impl<T: Outcome> Handler<Record<T>> for BatchWriter<T> {
    type Result = ();

    fn handle(&mut self, Record(outcome): Record<T>, ctx: &mut Self::Context) {
        self.pending.push(outcome);
        self.write_next(ctx);
    }
}

impl<T: Outcome> Handler<WatchWrites> for BatchWriter<T> {
    type Result = ();

    fn handle(&mut self, WatchWrites(watchers): WatchWrites, _: &mut Self::Context) {
        self.watchers = watchers;
    }
}

impl<T: Outcome> Handler<Flush> for BatchWriter<T> {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        let (done, wait) = oneshot::channel();
        self.waiters.push(done);
        self.write_next(ctx);
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}
