//! Heartbeat: the worker process's row in `workers`.
//!
//! Written every [`HEARTBEAT_INTERVAL`] with the queues served and the executors busy
//! in all of them; a worker that stops heartbeating has its tasks rescued without
//! waiting for their leases (`store::WORKER_STALE_AFTER`). The Dispatchers claim
//! nothing before the first heartbeat is written: until then the Rescuer would take
//! their tasks for orphans.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::messages::{Registered, Stop};
use crate::store::{Store, WorkerInfo};

/// How often the worker's liveness is written (see `store::WORKER_STALE_AFTER`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a worker whose first heartbeat failed tries again.
const REGISTER_RETRY: Duration = Duration::from_millis(500);

pub struct Heartbeat {
    store: Arc<dyn Store>,
    worker_id: String,
    started_at: DateTime<Utc>,
    /// The queues served, as the worker reports them (`default=5,emails=20`).
    queues: String,
    /// Executors across all queues.
    concurrency: usize,
    /// Busy executors, one counter per Dispatcher, written by the Dispatchers.
    busy: Vec<Arc<AtomicUsize>>,
    /// Told once the first heartbeat is written.
    dispatchers: Vec<Recipient<Registered>>,
}

impl Heartbeat {
    pub fn new(
        store: Arc<dyn Store>,
        worker_id: String,
        queues: String,
        concurrency: usize,
        busy: Vec<Arc<AtomicUsize>>,
        dispatchers: Vec<Recipient<Registered>>,
    ) -> Self {
        Self { store, worker_id, started_at: Utc::now(), queues, concurrency, busy, dispatchers }
    }

    /// Writes the heartbeat; resolves to whether it was written.
    fn write(&self) -> impl Future<Output = bool> + 'static {
        let store = Arc::clone(&self.store);
        let info = WorkerInfo {
            worker_id: self.worker_id.clone(),
            concurrency: self.concurrency as i32,
            running: self.busy.iter().map(|busy| busy.load(Ordering::Relaxed)).sum::<usize>() as i32,
            started_at: self.started_at,
            last_seen_at: Utc::now(),
            queues: self.queues.clone(),
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
        ctx.wait(self.write().into_actor(self).map(|written, heartbeat, ctx| {
            if written {
                heartbeat.dispatchers.iter().for_each(|dispatcher| dispatcher.do_send(Registered));
            } else {
                ctx.run_later(REGISTER_RETRY, |heartbeat, ctx| heartbeat.register(ctx));
            }
        }));
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.register(ctx);
        ctx.run_interval(HEARTBEAT_INTERVAL, |heartbeat, ctx| {
            ctx.spawn(heartbeat.write().into_actor(heartbeat).map(|_, _, _| ()));
        });
    }
}

impl Handler<Stop> for Heartbeat {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
