//! Dispatcher: the claim loop of one worker process.
//!
//! It owns the executor pool and knows which executors are idle. It claims only for
//! idle executors (backpressure: nothing is claimed that cannot start now), in one
//! query per batch, and claims again at once while batches come back full. When a
//! batch comes back short the queue is drained, and the Dispatcher waits for a hint:
//! a NOTIFY (or an in-process wake-up on SQLite), or the poll tick that covers lost
//! hints. At most one claim is in flight, so executors freed during a claim are
//! served together by the next one.
//!
//! It also heartbeats the worker's row in `workers`; a worker that stops heartbeating
//! has its tasks rescued without waiting for their leases.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::executor::Executor;
use super::messages::{Abort, AbortAll, ExecutorIdle, Stop, StopClaiming, TaskMsg, Wake, WhenIdle};
use crate::config::WorkerConfig;
use crate::metrics;
use crate::store::{AttemptRef, Store, StoreError, Task, WorkerInfo};

/// How often the worker's liveness is written (see `store::WORKER_STALE_AFTER`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a worker whose first heartbeat failed tries again.
const REGISTER_RETRY: Duration = Duration::from_millis(500);
/// Backoff of the NOTIFY listener's reconnects: doubling from the first to the last.
const LISTEN_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

pub struct Dispatcher {
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
    config: WorkerConfig,
    started_at: DateTime<Utc>,
    executors: Vec<Addr<Executor>>,
    /// Indexes of executors with nothing to do.
    idle: Vec<usize>,
    /// A claim query is in flight.
    claiming: bool,
    /// The last claim came back short: wait for a hint before claiming again.
    drained: bool,
    /// Shutdown began: claim nothing more.
    stopping: bool,
    /// The first heartbeat is written; no claim happens before.
    registered: bool,
    /// `WhenIdle` callers.
    idle_waiters: Vec<oneshot::Sender<()>>,
    /// The wake-up listener's task, stopped with the Dispatcher.
    listener: Option<tokio::task::AbortHandle>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, config: WorkerConfig) -> Self {
        Self {
            store,
            worker_id: Arc::from(config.worker_id.as_str()),
            config,
            started_at: Utc::now(),
            executors: Vec::new(),
            idle: Vec::new(),
            claiming: false,
            drained: false,
            stopping: false,
            registered: false,
            idle_waiters: Vec::new(),
            listener: None,
        }
    }

    /// Gives the Dispatcher its pool; every executor starts idle.
    pub fn set_executors(&mut self, executors: Vec<Addr<Executor>>) {
        self.idle = (0..executors.len()).rev().collect();
        self.executors = executors;
    }

    fn busy(&self) -> usize {
        self.executors.len() - self.idle.len()
    }

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.claiming || !self.registered || self.idle.is_empty() {
            return;
        }
        self.claiming = true;
        let limit = self.idle.len() as u32;
        let store = Arc::clone(&self.store);
        let worker_id = Arc::clone(&self.worker_id);
        let grace = self.config.lease_grace;
        let claim = super::io(async move { store.claim(&worker_id, limit, grace).await });
        ctx.spawn(claim.into_actor(self).map(move |claimed, dispatcher, ctx| {
            dispatcher.claiming = false;
            match claimed {
                Ok(tasks) => dispatcher.dispatch(tasks, limit, ctx),
                Err(error) => dispatcher.claim_failed(error),
            }
            dispatcher.notify_if_idle();
        }));
    }

    fn dispatch(&mut self, tasks: Vec<Task>, limit: u32, ctx: &mut Context<Self>) {
        metrics::claimed(tasks.len());
        if self.stopping {
            // Shutdown began while the claim was in flight: hand the tasks back.
            self.release(
                tasks.iter().map(|t| AttemptRef { task_id: t.id, attempt: t.attempt }).collect(),
                ctx,
            );
            return;
        }
        self.drained = (tasks.len() as u32) < limit;
        for task in tasks {
            let index = self.idle.pop().expect("claimed no more tasks than idle executors");
            self.executors[index].do_send(TaskMsg { task });
        }
        metrics::executors_busy(&self.worker_id, self.busy(), self.executors.len());
        if !self.drained {
            self.claim(ctx);
        }
    }

    fn claim_failed(&mut self, error: StoreError) {
        // The next poll tick tries again: the poll interval is the retry backoff.
        self.drained = true;
        tracing::warn!(error = %error, worker_id = %self.worker_id, "claim failed; retrying at the next poll");
    }

    fn release(&self, attempts: Vec<AttemptRef>, ctx: &mut Context<Self>) {
        if attempts.is_empty() {
            return;
        }
        let store = Arc::clone(&self.store);
        let worker_id = Arc::clone(&self.worker_id);
        let release = super::io(async move { release_with_retries(&*store, &worker_id, &attempts).await });
        ctx.spawn(release.into_actor(self));
    }

    fn notify_if_idle(&mut self) {
        if self.stopping && !self.claiming && self.busy() == 0 {
            self.idle_waiters.drain(..).for_each(|waiter| {
                let _ = waiter.send(());
            });
        }
    }

    /// Writes the worker's heartbeat; resolves to whether it was written.
    fn heartbeat(&self) -> impl Future<Output = bool> + 'static {
        let store = Arc::clone(&self.store);
        let info = WorkerInfo {
            worker_id: self.worker_id.to_string(),
            concurrency: self.executors.len() as i32,
            running: self.busy() as i32,
            started_at: self.started_at,
            last_seen_at: Utc::now(),
        };
        super::io(async move {
            let written = store.heartbeat(&info).await;
            if let Err(error) = &written {
                tracing::warn!(error = %error, "heartbeat failed");
            }
            written.is_ok()
        })
    }

    /// Heartbeats, and retries soon while the worker is not registered yet.
    fn register(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(self.heartbeat().into_actor(self).map(|written, dispatcher, ctx| {
            dispatcher.registered = written;
            if written {
                dispatcher.claim(ctx);
            } else {
                ctx.run_later(REGISTER_RETRY, |dispatcher, ctx| dispatcher.register(ctx));
            }
        }));
    }

    /// Forwards wake-up hints to the Dispatcher for as long as it lives, reconnecting
    /// with backoff when the listener's connection is lost.
    fn listen(&mut self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.store);
        let me = ctx.address();
        let listener = async move {
            let mut delay = LISTEN_RETRY.0;
            loop {
                match store.wakeups().await {
                    Ok(mut hints) => {
                        delay = LISTEN_RETRY.0;
                        me.do_send(Wake); // hints may have been missed while away
                        while let Some(hint) = hints.next().await {
                            match hint {
                                Ok(()) => me.do_send(Wake),
                                Err(error) => {
                                    tracing::warn!(error = %error, "wake-up listener lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, retry_in = ?delay, "wake-up listener cannot connect")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LISTEN_RETRY.1);
            }
        };
        self.listener = Some(super::spawn_io(listener));
    }
}

/// Releases attempts at shutdown, retrying a few times: a release that cannot be
/// written is not lost either (the lease runs out and the Rescuer takes over), but it
/// would spend a retry.
pub async fn release_with_retries(store: &dyn Store, worker_id: &str, attempts: &[AttemptRef]) {
    for delay in [50, 200, 1000, 0] {
        match store.release(worker_id, attempts).await {
            Ok(released) => {
                tracing::info!(released = released.len(), "released unfinished tasks to the queue");
                return;
            }
            Err(error) if delay > 0 => {
                tracing::warn!(error = %error, "release failed; retrying");
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            Err(error) => {
                tracing::error!(error = %error, "release failed; leases will expire and be rescued")
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Claim only once the heartbeat is written, so the Rescuer never mistakes
        // this worker's tasks for orphans.
        self.register(ctx);
        ctx.run_interval(HEARTBEAT_INTERVAL, |dispatcher, ctx| {
            ctx.spawn(dispatcher.heartbeat().into_actor(dispatcher).map(|_, _, _| ()));
        });
        ctx.run_interval(self.config.poll_interval, |dispatcher, ctx| {
            dispatcher.drained = false;
            dispatcher.claim(ctx);
        });
        self.listen(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

impl Handler<Wake> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.drained = false;
        self.claim(ctx);
    }
}

impl Handler<ExecutorIdle> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: ExecutorIdle, ctx: &mut Self::Context) {
        self.idle.push(msg.index);
        metrics::executors_busy(&self.worker_id, self.busy(), self.executors.len());
        if !self.drained {
            self.claim(ctx);
        }
        self.notify_if_idle();
    }
}

impl Handler<StopClaiming> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: StopClaiming, _: &mut Self::Context) {
        self.stopping = true;
    }
}

impl Handler<WhenIdle> for Dispatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: WhenIdle, _: &mut Self::Context) -> Self::Result {
        let (done, wait) = oneshot::channel();
        self.idle_waiters.push(done);
        self.notify_if_idle();
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

impl Handler<AbortAll> for Dispatcher {
    type Result = ResponseFuture<Vec<AttemptRef>>;

    fn handle(&mut self, _: AbortAll, _: &mut Self::Context) -> Self::Result {
        let aborts: Vec<_> = self.executors.iter().map(|executor| executor.send(Abort)).collect();
        self.idle = (0..self.executors.len()).collect();
        Box::pin(async move {
            futures_util::future::join_all(aborts)
                .await
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .collect()
        })
    }
}

impl Handler<Stop> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
