//! The worker: an actix actor system that claims tasks and executes them.
//!
//! | actor | owns | receives | sends |
//! |---|---|---|---|
//! | [`Dispatcher`] ×queues | one queue's claim loop and executor pool | `Wake`, `Registered`, `ExecutorIdle` | `TaskMsg` |
//! | [`Executor`] ×N per queue | one running attempt, its deadline | `TaskMsg`, `Abort` | `Record<Completion>`, `AttemptFailed`, `Record<ProgressReport>`, `ExecutorIdle` |
//! | [`Heartbeat`] | the worker's row in `workers` | its tick | `Registered` |
//! | [`Retry`] | the backoff policy | `AttemptFailed` | `Record<Failure>` to its writer |
//! | [`Completer`] | batched acknowledgements | `Record<Completion>` | one store write per batch |
//! | progress writer (`BatchWriter<ProgressReport>`) | batched progress reports, coalesced per attempt | `Record<ProgressReport>` | one store write per batch |
//! | [`Rescuer`] | attempts whose worker is gone | its tick | rescue writes |
//! | [`Pruner`] | retention and counter folding | its tick | prune writes |
//! | [`Scheduler`] | the scheduler's leadership; while it leads, the schedules' ticks | its pass | tick enqueues |
//! | [`StatsBroadcaster`] | live-stream clients (server role) | its tick, `Subscribe` | `Broadcast` |
//!
//! One wake-up listener per process (`listener`) routes hints to the Dispatchers of
//! the queues they name.
//!
//! Shutdown is an explicit protocol, [`Worker::shutdown`]: stop claiming; wait for
//! in-flight attempts up to the grace period; abort the rest and release them to
//! `queued` without spending a retry; flush the outcome writers; deregister.

mod attempt;
mod broadcaster;
mod cancels;
mod dispatcher;
mod executor;
mod heartbeat;
mod listener;
mod maintenance;
pub mod messages;
mod retry;
mod scheduler;
mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use actix::prelude::*;

pub use attempt::{ProgressReport, WRITE_GAP as PROGRESS_WRITE_GAP};
pub use broadcaster::StatsBroadcaster;
pub use cancels::Cancels;
pub use dispatcher::Dispatcher;
pub use executor::{Executor, Graces, Links, handler_runtime};
pub use heartbeat::{HEARTBEAT_INTERVAL, Heartbeat};
pub use maintenance::{Pruner, Rescuer};
pub use retry::Retry;
pub use scheduler::{LEADER_TTL, PASS_INTERVAL, Scheduler, stop as stop_scheduler};
pub use writer::{BatchWriter, Completer, Outcome};

use crate::config::{QueueSpec, WorkerConfig};
use crate::handlers::Registry;
pub(crate) use crate::runtime::{io, spawn_io};
use crate::store::{ReleaseReason, Store};
use messages::{AbortAll, Flush, Stop, StopClaiming, WatchWrites, WhenIdle};

/// The longest a running task's worker takes to notice its cancel when the NOTIFY is
/// lost: how often it asks the database (or `WORKER_POLL_INTERVAL`, if shorter).
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// A running worker: its actors, and the handle to stop them.
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    /// One per queue served, in `WORKER_QUEUES` order.
    dispatchers: Vec<Addr<Dispatcher>>,
    heartbeat: Addr<Heartbeat>,
    listener: tokio::task::AbortHandle,
    /// The fallback of cancel requests' NOTIFY (`cancels::poll`).
    cancel_poll: tokio::task::AbortHandle,
    completer: Addr<Completer>,
    retry: Addr<Retry>,
    rescuer: Addr<Rescuer>,
    pruner: Addr<Pruner>,
    scheduler: Addr<Scheduler>,
}

impl Worker {
    /// Starts the worker's actors on the current actix system.
    pub fn start(store: Arc<dyn Store>, registry: Arc<Registry>, config: WorkerConfig) -> Self {
        let worker_id: Arc<str> = Arc::from(config.worker_id.as_str());
        let completer = Completer::new(Arc::clone(&store), Arc::clone(&worker_id)).start();
        let retry = Retry::new(config.retry, Arc::clone(&store), Arc::clone(&worker_id)).start();
        let progress = BatchWriter::<ProgressReport>::new(Arc::clone(&store), Arc::clone(&worker_id)).start();
        let cancels = Arc::new(Cancels::default());
        let graces = Graces { lease: config.lease_grace, cancel: config.cancel_grace };

        let queues = config.served_queues();
        let busy: Vec<Arc<AtomicUsize>> = queues.iter().map(|_| Arc::default()).collect();
        let dispatchers: Vec<Addr<Dispatcher>> = queues
            .iter()
            .zip(&busy)
            .map(|(spec, busy)| {
                let store = Arc::clone(&store);
                let (registry, worker_id, config) =
                    (Arc::clone(&registry), Arc::clone(&worker_id), config.clone());
                let (completer, retry, busy) = (completer.clone(), retry.clone(), Arc::clone(busy));
                let (progress, cancels) = (progress.clone(), Arc::clone(&cancels));
                let QueueSpec { name, concurrency } = spec.clone();
                Dispatcher::create(move |ctx| {
                    let links = Links {
                        dispatcher: ctx.address().recipient(),
                        completer: completer.recipient(),
                        retry: retry.recipient(),
                        progress: progress.recipient(),
                        cancels,
                    };
                    let executors = (0..concurrency)
                        .map(|index| {
                            let (worker_id, registry) = (Arc::clone(&worker_id), Arc::clone(&registry));
                            Executor::new(index, worker_id, registry, links.clone(), graces).start()
                        })
                        .collect();
                    let mut dispatcher = Dispatcher::new(store, config, &name, busy);
                    dispatcher.set_executors(executors);
                    dispatcher
                })
            })
            .collect();
        let heartbeat = Heartbeat::new(
            Arc::clone(&store),
            config.worker_id.clone(),
            config.queues_label(),
            queues.iter().map(|q| q.concurrency).sum(),
            busy,
            dispatchers.iter().map(|d| d.clone().recipient()).collect(),
        )
        .start();
        let watchers = || WatchWrites(dispatchers.iter().map(|d| d.clone().recipient()).collect());
        completer.do_send(watchers());
        retry.do_send(watchers());
        let routes = queues.iter().zip(&dispatchers).map(|(q, d)| (q.name.clone(), d.clone().recipient()));
        let listener = listener::listen(Arc::clone(&store), routes.collect(), Arc::clone(&cancels));
        let cancel_poll = config.poll_interval.min(CANCEL_POLL);
        let cancel_poll = cancels::poll(Arc::clone(&store), config.worker_id.clone(), cancels, cancel_poll);

        let rescue_every = (config.lease_grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let rescuer = Rescuer::new(Arc::clone(&store), config.retry, rescue_every).start();
        let pruner =
            Pruner::new(Arc::clone(&store), config.retention_succeeded, config.retention_failed).start();
        let scheduler = Scheduler::new(Arc::clone(&store), worker_id).start();
        tracing::info!(worker_id = %config.worker_id, queues = %config.queues_label(), "worker started");
        Self {
            store,
            config,
            dispatchers,
            heartbeat,
            listener,
            cancel_poll,
            completer,
            retry,
            rescuer,
            pruner,
            scheduler,
        }
    }

    pub fn id(&self) -> &str {
        &self.config.worker_id
    }

    /// Stops the worker: in-flight attempts get `shutdown_grace` to finish; the rest
    /// are aborted and released without spending a retry. Returns when every outcome
    /// is written (or left to the Rescuer after repeated database errors).
    pub async fn shutdown(self) {
        ask_all(&self.dispatchers, || StopClaiming).await;
        // Resign first, so another process schedules while this one drains.
        scheduler::stop(&self.scheduler).await;
        tracing::info!(grace = ?self.config.shutdown_grace, "worker stopping: claiming stopped, finishing in-flight tasks");
        let finished =
            tokio::time::timeout(self.config.shutdown_grace, ask_all(&self.dispatchers, || WhenIdle)).await;
        if finished.is_err() {
            let aborted = ask_all(&self.dispatchers, || AbortAll).await;
            let unfinished: Vec<_> = aborted.into_iter().flat_map(Result::unwrap_or_default).collect();
            tracing::warn!(tasks = unfinished.len(), "grace period over: releasing unfinished tasks");
            dispatcher::release_with_retries(
                &*self.store,
                &self.config.worker_id,
                &unfinished,
                ReleaseReason::Shutdown,
            )
            .await;
        }
        let _ = self.completer.send(Flush).await;
        let _ = self.retry.send(Flush).await;
        self.listener.abort();
        self.cancel_poll.abort();
        let _ = self.heartbeat.send(Stop).await;
        if let Err(error) = self.store.deregister(&self.config.worker_id).await {
            tracing::warn!(error = %error, "could not deregister the worker");
        }
        ask_all(&self.dispatchers, || Stop).await;
        let _ = self.rescuer.send(Stop).await;
        let _ = self.pruner.send(Stop).await;
        tracing::info!(worker_id = %self.config.worker_id, "worker stopped");
    }
}

/// Sends `message()` to every Dispatcher and waits for all the answers.
async fn ask_all<M>(
    dispatchers: &[Addr<Dispatcher>],
    message: impl Fn() -> M,
) -> Vec<Result<M::Result, MailboxError>>
where
    M: Message + Send + 'static,
    M::Result: Send,
    Dispatcher: Handler<M>,
{
    futures_util::future::join_all(dispatchers.iter().map(|dispatcher| dispatcher.send(message()))).await
}

impl Handler<Stop> for Rescuer {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Stop> for Pruner {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
