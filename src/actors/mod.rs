//! The worker: an actix actor system that claims tasks and executes them.
//!
//! | actor | owns | receives | sends |
//! |---|---|---|---|
//! | [`Dispatcher`] | the claim loop, the executor pool, the heartbeat | `Wake`, `ExecutorIdle` | `TaskMsg` |
//! | [`Executor`] ×N | one running attempt | `TaskMsg`, `Abort` | `Record<Completion>`, `AttemptFailed`, `ExecutorIdle` |
//! | [`Retry`] | the backoff policy | `AttemptFailed` | `Record<Failure>` to its writer |
//! | [`Completer`] | batched acknowledgements | `Record<Completion>` | one store write per batch |
//! | [`Rescuer`] | attempts whose worker is gone | its tick | rescue writes |
//! | [`Pruner`] | retention and counter folding | its tick | prune writes |
//! | [`StatsBroadcaster`] | live-stream clients (server role) | its tick, `Subscribe` | `Broadcast` |
//!
//! Shutdown is an explicit protocol, [`Worker::shutdown`]: stop claiming; wait for
//! in-flight attempts up to the grace period; abort the rest and release them to
//! `queued` without spending a retry; flush the outcome writers; deregister.

mod broadcaster;
mod dispatcher;
mod executor;
mod maintenance;
pub mod messages;
mod retry;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use broadcaster::StatsBroadcaster;
pub use dispatcher::{Dispatcher, HEARTBEAT_INTERVAL};
pub use executor::{Executor, handler_runtime};
pub use maintenance::{Pruner, Rescuer};
pub use retry::Retry;
pub use writer::{BatchWriter, Completer, Outcome};

use crate::config::WorkerConfig;
use crate::handlers::Registry;
pub(crate) use crate::runtime::{io, spawn_io};
use crate::store::{ReleaseReason, Store};
use messages::{AbortAll, Flush, Stop, StopClaiming, WhenIdle};

/// A running worker: its actors, and the handle to stop them.
pub struct Worker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    dispatcher: Addr<Dispatcher>,
    completer: Addr<Completer>,
    retry: Addr<Retry>,
    rescuer: Addr<Rescuer>,
    pruner: Addr<Pruner>,
}

impl Worker {
    /// Starts the worker's actors on the current actix system.
    pub fn start(store: Arc<dyn Store>, registry: Arc<Registry>, config: WorkerConfig) -> Self {
        let worker_id: Arc<str> = Arc::from(config.worker_id.as_str());
        let completer = Completer::new(Arc::clone(&store), Arc::clone(&worker_id)).start();
        let retry = Retry::new(config.retry, Arc::clone(&store), Arc::clone(&worker_id)).start();

        let dispatcher_store = Arc::clone(&store);
        let dispatcher_config = config.clone();
        let (executor_completer, executor_retry) = (completer.clone(), retry.clone());
        let concurrency = config.concurrency;
        let dispatcher = Dispatcher::create(move |ctx| {
            let me = ctx.address();
            let executors = (0..concurrency)
                .map(|index| {
                    Executor::new(
                        index,
                        Arc::clone(&worker_id),
                        Arc::clone(&registry),
                        me.clone().recipient(),
                        executor_completer.clone().recipient(),
                        executor_retry.clone().recipient(),
                    )
                    .start()
                })
                .collect();
            let mut dispatcher = Dispatcher::new(dispatcher_store, dispatcher_config);
            dispatcher.set_executors(executors);
            dispatcher
        });
        let rescue_every = (config.lease_grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let rescuer = Rescuer::new(Arc::clone(&store), config.retry, rescue_every).start();
        let pruner =
            Pruner::new(Arc::clone(&store), config.retention_succeeded, config.retention_failed).start();
        tracing::info!(worker_id = %config.worker_id, concurrency, "worker started");
        Self { store, config, dispatcher, completer, retry, rescuer, pruner }
    }

    pub fn id(&self) -> &str {
        &self.config.worker_id
    }

    /// Stops the worker: in-flight attempts get `shutdown_grace` to finish; the rest
    /// are aborted and released without spending a retry. Returns when every outcome
    /// is written (or left to the Rescuer after repeated database errors).
    pub async fn shutdown(self) {
        let _ = self.dispatcher.send(StopClaiming).await;
        tracing::info!(grace = ?self.config.shutdown_grace, "worker stopping: claiming stopped, finishing in-flight tasks");
        let finished = tokio::time::timeout(self.config.shutdown_grace, self.dispatcher.send(WhenIdle)).await;
        if finished.is_err() {
            let unfinished = self.dispatcher.send(AbortAll).await.unwrap_or_default();
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
        if let Err(error) = self.store.deregister(&self.config.worker_id).await {
            tracing::warn!(error = %error, "could not deregister the worker");
        }
        let _ = self.dispatcher.send(Stop).await;
        let _ = self.rescuer.send(Stop).await;
        let _ = self.pruner.send(Stop).await;
        tracing::info!(worker_id = %self.config.worker_id, "worker stopped");
    }
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
