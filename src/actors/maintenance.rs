//! Maintenance actors: the Rescuer, which recovers attempts whose worker is gone, and
//! the Pruner, which keeps the tables small. Both run on every worker; the store makes
//! concurrent runs safe (row locks for rescue, an advisory lock for pruning).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::backoff::RetryPolicy;
use crate::metrics;
use crate::store::{Store, Task, WORKER_STALE_AFTER};

/// The most expired attempts one rescue query handles; it runs again while full.
const RESCUE_BATCH: u32 = 100;
/// The most tasks one prune statement deletes; small, so locks stay short.
const PRUNE_BATCH: u32 = 500;
/// How often counter deltas are folded (PostgreSQL) and old throughput dropped.
const COMPACT_INTERVAL: Duration = Duration::from_secs(10);
/// How often old terminal tasks are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Finds attempts whose lease ran out, or whose worker stopped heartbeating, and
/// records them as failed attempts (`worker_lock_expired`) with the usual retry policy.
///
/// A worker's silence only proves it dead while the database could hear it. During a
/// database outage every heartbeat fails, so right after one every live worker looks
/// silent; rescuing then would hand tasks that are still running, under leases that
/// still hold, to a second worker. So after its own database access failed, the
/// Rescuer waits [`WORKER_STALE_AFTER`] (every live worker heartbeats again within
/// it) before it rescues anything.
pub struct Rescuer {
    pub store: Arc<dyn Store>,
    pub policy: RetryPolicy,
    pub interval: Duration,
    /// A rescue is in flight; ticks are skipped meanwhile.
    running: bool,
    /// When a rescue last failed to reach the database.
    last_failure: Option<Instant>,
}

impl Rescuer {
    pub fn new(store: Arc<dyn Store>, policy: RetryPolicy, interval: Duration) -> Self {
        Self { store, policy, interval, running: false, last_failure: None }
    }

    fn rescue(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.last_failure.is_some_and(|failed| failed.elapsed() < WORKER_STALE_AFTER) {
            return;
        }
        self.running = true;
        let store = Arc::clone(&self.store);
        let policy = self.policy;
        let work = async move {
            let decide = move |task: &Task| policy.decide(task, false);
            loop {
                match store.rescue(RESCUE_BATCH, &decide).await {
                    Ok(rescued) => {
                        if !rescued.is_empty() {
                            metrics::rescued(rescued.len());
                            tracing::warn!(tasks = ?rescued, "rescued attempts whose worker is gone");
                        }
                        if (rescued.len() as u32) < RESCUE_BATCH {
                            return true;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = %error,
                            wait = ?WORKER_STALE_AFTER,
                            "rescue failed; rescuing again once workers have had time to heartbeat"
                        );
                        return false;
                    }
                }
            }
        };
        ctx.spawn(super::io(work).into_actor(self).map(|reached, rescuer, _| {
            rescuer.running = false;
            if !reached {
                rescuer.last_failure = Some(Instant::now());
            }
        }));
    }
}

impl Actor for Rescuer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rescue(ctx);
        ctx.run_interval(self.interval, |rescuer, ctx| rescuer.rescue(ctx));
    }
}

/// Deletes terminal tasks older than their retention, with their history, in small
/// batches; and folds the stats counters.
pub struct Pruner {
    pub store: Arc<dyn Store>,
    pub retain_succeeded: Duration,
    pub retain_failed: Duration,
    running: bool,
}

impl Pruner {
    pub fn new(store: Arc<dyn Store>, retain_succeeded: Duration, retain_failed: Duration) -> Self {
        Self { store, retain_succeeded, retain_failed, running: false }
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let store = Arc::clone(&self.store);
        let (succeeded, failed) = (self.retain_succeeded, self.retain_failed);
        let work = async move {
            let mut total = 0;
            loop {
                match store.prune(succeeded, failed, PRUNE_BATCH).await {
                    Ok(0) => break,
                    Ok(deleted) => {
                        total += deleted;
                        // Yield between batches so the queue's own traffic goes first.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "prune failed; retrying at the next tick");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(deleted = total, "pruned old terminal tasks");
            }
        };
        ctx.spawn(super::io(work).into_actor(self).map(|(), pruner, _| pruner.running = false));
    }
}

impl Actor for Pruner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(COMPACT_INTERVAL, |pruner, ctx| {
            let store = Arc::clone(&pruner.store);
            let compact = super::io(async move {
                if let Err(error) = store.compact_counters().await {
                    tracing::warn!(error = %error, "counter compaction failed");
                }
            });
            ctx.spawn(compact.into_actor(pruner));
        });
        self.prune(ctx);
        ctx.run_interval(PRUNE_INTERVAL, |pruner, ctx| pruner.prune(ctx));
    }
}
