//! Dispatcher: the claim loop of one queue in one worker process.
//!
//! A worker runs one Dispatcher per queue it serves (`WORKER_QUEUES`), each with an
//! executor pool of its own, so a queue of slow tasks never holds up another queue's
//! executors. It owns that pool and a small local queue of claimed tasks that have not
//! started yet. A claim takes enough tasks for the idle executors plus a prefetch:
//! as many as the executors will finish while the next claim is on its way (Little's
//! law on two measured averages, the claim's round trip and an executor's cycle, see
//! [`Dispatcher::prefetch`]). Short tasks thus never wait for a round trip, while a
//! worker of slow tasks prefetches nothing and leaves the queue to its peers. The
//! prefetch is capped by `WORKER_PREFETCH`, and a task that waited locally for half
//! its lease grace is released to the queue unstarted, so a lease always covers the
//! wait, the run and the acknowledgement.
//!
//! At most one claim is in flight; a claim that comes back full is followed by
//! another at once, and one that comes back short means the queue is drained: the
//! Dispatcher then waits for a hint (a NOTIFY, an in-process wake-up on SQLite) or
//! the poll tick that covers lost hints.
//!
//! It claims nothing before the worker's first heartbeat is written (`Registered`,
//! from the [`Heartbeat`](super::heartbeat::Heartbeat)), so the Rescuer never takes its
//! tasks for orphans. When its queue is paused (a `Wake` for a settings change, or the
//! poll that covers a lost one), it releases its prefetched tasks unstarted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::executor::Executor;
use super::messages::{
    Abort, AbortAll, ExecutorIdle, Freed, Registered, Stop, StopClaiming, TaskMsg, Wake, WhenIdle,
};
use crate::config::WorkerConfig;
use crate::metrics;
use crate::store::{AttemptRef, Claim, ReleaseReason, Store, StoreError, Task};
/// Claim round trips the prefetch covers: one for the claim in flight, one of margin
/// for the variance of both averages.
const PREFETCH_ROUND_TRIPS: f64 = 2.0;
/// Weight of the newest sample in the running averages.
const SMOOTHING: f64 = 0.2;

/// An exponentially weighted moving average of durations, in seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Average(Option<f64>);

impl Average {
    fn add(&mut self, sample: Duration) {
        let sample = sample.as_secs_f64();
        self.0 = Some(self.0.map_or(sample, |average| average + SMOOTHING * (sample - average)));
    }
}

/// How many claimed tasks to hold beyond the idle executors: the tasks `executors`
/// finish during `PREFETCH_ROUND_TRIPS` claims (executors / cycle × claim time), at most
/// `cap`. Rounded, so a worker of tasks slower than a claim prefetches none; and
/// nothing until both averages have a sample, so a worker starts out claiming for idle
/// executors only.
fn prefetch(executors: usize, claim_time: Average, cycle_time: Average, cap: usize) -> usize {
    let (Some(claim), Some(cycle)) = (claim_time.0, cycle_time.0) else {
        return 0;
    };
    let finished_per_claim = executors as f64 * claim / cycle.max(1e-6);
    ((PREFETCH_ROUND_TRIPS * finished_per_claim).round() as usize).min(cap)
}

/// A claimed task waiting in the local queue.
struct Ready {
    task: Task,
    claimed: Instant,
    /// Its recorded start (a rate limit's slot), when that lies ahead of the claim.
    starts: Instant,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
    /// The queue this Dispatcher claims from.
    queue: Arc<str>,
    config: WorkerConfig,
    /// Busy executors, read by the worker's heartbeat.
    busy_count: Arc<AtomicUsize>,
    executors: Vec<Addr<Executor>>,
    /// Indexes of executors with nothing to do. Never non-empty while `ready` is.
    idle: Vec<usize>,
    /// When each busy executor was handed its task.
    busy_since: Vec<Option<Instant>>,
    /// Claimed tasks not started yet, oldest claim first.
    ready: VecDeque<Ready>,
    /// Round trip of a claim.
    claim_time: Average,
    /// Time from handing an executor a task to the executor being idle again.
    cycle_time: Average,
    /// A claim query is in flight.
    claiming: bool,
    /// Release writes in flight; shutdown waits for them, so that a process that exits
    /// right after leaves no released task looking orphaned.
    releasing: usize,
    /// A hint arrived while a claim was in flight: that claim may have read the queue
    /// before the hinted tasks committed, so claim again even if it comes back short.
    hinted: bool,
    /// The last claim came back short: wait for a hint before claiming again.
    drained: bool,
    /// Shutdown began: claim nothing more.
    stopping: bool,
    /// The first heartbeat is written; no claim happens before.
    registered: bool,
    /// A look at the queue's settings is in flight.
    checking: bool,
    /// A claim is scheduled for when a rate limit lets the next held task start.
    retry_pending: bool,
    /// The last claim left tasks waiting for their concurrency key: as for a limited
    /// queue, this worker's finished attempts may have freed one.
    keys_waiting: bool,
    /// The queue has a global limit (as last read): a claim that comes back short may
    /// have met the limit rather than an empty queue, so the Dispatcher claims again
    /// whenever this worker's finished attempts are written (`Freed`). Slots freed by
    /// other workers are seen at the next hint or poll.
    limited: bool,
    /// `WhenIdle` callers.
    idle_waiters: Vec<oneshot::Sender<()>>,
    gauges: metrics::WorkerGauges,
}

impl Dispatcher {
    /// A Dispatcher of `queue`; `busy_count` is where it reports its busy executors.
    pub fn new(
        store: Arc<dyn Store>,
        config: WorkerConfig,
        queue: &str,
        busy_count: Arc<AtomicUsize>,
    ) -> Self {
        let gauges = metrics::WorkerGauges::new(&config.worker_id, queue);
        Self {
            store,
            worker_id: Arc::from(config.worker_id.as_str()),
            queue: Arc::from(queue),
            config,
            busy_count,
            executors: Vec::new(),
            idle: Vec::new(),
            busy_since: Vec::new(),
            ready: VecDeque::new(),
            claim_time: Average::default(),
            cycle_time: Average::default(),
            claiming: false,
            releasing: 0,
            hinted: false,
            drained: false,
            stopping: false,
            registered: false,
            checking: false,
            retry_pending: false,
            keys_waiting: false,
            limited: false,
            idle_waiters: Vec::new(),
            gauges,
        }
    }

    /// Gives the Dispatcher its pool; every executor starts idle.
    pub fn set_executors(&mut self, executors: Vec<Addr<Executor>>) {
        self.idle = (0..executors.len()).rev().collect();
        self.busy_since = vec![None; executors.len()];
        self.executors = executors;
    }

    fn busy(&self) -> usize {
        self.executors.len() - self.idle.len()
    }

    fn prefetch(&self) -> usize {
        prefetch(self.executors.len(), self.claim_time, self.cycle_time, self.config.prefetch)
    }

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.claiming || !self.registered {
            return;
        }
        let prefetch = self.prefetch();
        // Refill the local queue once it is half empty, so claims stay large.
        if self.idle.is_empty() && self.ready.len() > prefetch / 2 {
            return;
        }
        let limit = (self.idle.len() + prefetch).saturating_sub(self.ready.len());
        if limit == 0 {
            return;
        }
        self.claiming = true;
        let store = Arc::clone(&self.store);
        let worker_id = Arc::clone(&self.worker_id);
        let queue = Arc::clone(&self.queue);
        let grace = self.config.lease_grace;
        let sent = Instant::now();
        let claim =
            super::io(async move { store.claim_batch(&worker_id, &queue, limit as u32, grace).await });
        ctx.spawn(claim.into_actor(self).map(move |claimed, dispatcher, ctx| {
            dispatcher.claiming = false;
            match claimed {
                Ok(claim) => {
                    dispatcher.claim_time.add(sent.elapsed());
                    dispatcher.claimed(claim, limit, ctx);
                }
                Err(error) => dispatcher.claim_failed(error),
            }
            dispatcher.notify_if_idle();
        }));
    }

    fn claimed(&mut self, claim: Claim, limit: usize, ctx: &mut Context<Self>) {
        metrics::claimed(claim.tasks.len());
        self.gauges.held(&claim.held);
        self.keys_waiting = claim.held.waiting_for_key > 0;
        self.drained = claim.tasks.len() < limit && !std::mem::take(&mut self.hinted);
        if let Some(retry_in) = claim.held.retry_in.filter(|_| self.drained) {
            self.claim_after(retry_in, ctx);
        }
        let claimed = Instant::now();
        let ready = claim.tasks.into_iter().zip(claim.start_in).map(|(task, start_in)| Ready {
            task,
            claimed,
            starts: claimed + start_in,
        });
        self.ready.extend(ready);
        if self.stopping {
            // Shutdown began while the claim was in flight: hand the tasks back.
            self.release_ready(self.ready.len(), ReleaseReason::Shutdown, ctx);
            return;
        }
        self.start_ready();
        if !self.drained {
            self.claim(ctx);
        }
    }

    /// Claims again after `delay`, when rate limits let the next held task start:
    /// tasks held back wait for that, without polling the queue meanwhile.
    fn claim_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.retry_pending, true) {
            return;
        }
        ctx.run_later(delay, |dispatcher, ctx| {
            dispatcher.retry_pending = false;
            dispatcher.hint(ctx);
        });
    }

    /// Hands queued tasks to idle executors.
    fn start_ready(&mut self) {
        let now = Instant::now();
        while !self.idle.is_empty() {
            let Some(Ready { task, starts, .. }) = self.ready.pop_front() else { break };
            let index = self.idle.pop().expect("checked non-empty");
            self.busy_since[index] = Some(now);
            self.executors[index].do_send(TaskMsg { task, start_in: starts.saturating_duration_since(now) });
        }
        self.report_gauges();
    }

    fn report_gauges(&self) {
        self.busy_count.store(self.busy(), Ordering::Relaxed);
        self.gauges.set(self.busy(), self.executors.len(), self.ready.len());
    }

    fn claim_failed(&mut self, error: StoreError) {
        // The next poll tick tries again: the poll interval is the retry backoff.
        self.drained = true;
        tracing::warn!(error = %error, worker_id = %self.worker_id, queue = %self.queue, "claim failed; retrying at the next poll");
    }

    /// Reads the queue's settings: notes whether it is limited, and releases the local
    /// queue if it was paused. Claims see a pause in the database; prefetched tasks were
    /// claimed before it and must not start after.
    fn read_settings(&mut self, ctx: &mut Context<Self>) {
        if self.checking || self.stopping {
            return;
        }
        self.checking = true;
        let store = Arc::clone(&self.store);
        let queue = Arc::clone(&self.queue);
        let look = super::io(async move {
            let settings = store.queue_settings().await?;
            Ok::<_, StoreError>(settings.into_iter().find(|s| *s.name == *queue))
        });
        ctx.spawn(look.into_actor(self).map(|settings, dispatcher, ctx| {
            dispatcher.checking = false;
            match settings {
                Ok(settings) => {
                    dispatcher.limited = settings.as_ref().is_some_and(|s| s.max_running.is_some());
                    if settings.is_some_and(|s| s.paused) && !dispatcher.ready.is_empty() {
                        tracing::info!(queue = %dispatcher.queue, tasks = dispatcher.ready.len(), "queue paused: releasing prefetched tasks");
                        dispatcher.release_ready(dispatcher.ready.len(), ReleaseReason::Paused, ctx);
                    }
                }
                Err(error) => tracing::warn!(error = %error, queue = %dispatcher.queue, "could not read the queue's settings; trying at the next poll"),
            }
        }));
    }

    /// Releases tasks that waited in the local queue for half the lease grace: their
    /// leases must still cover a full timeout and the acknowledgement if they start.
    fn expire_ready(&mut self, ctx: &mut Context<Self>) {
        let max_wait = self.config.lease_grace / 2;
        let expired = self.ready.iter().take_while(|ready| ready.claimed.elapsed() >= max_wait).count();
        if expired > 0 {
            tracing::info!(tasks = expired, waited = ?max_wait, "releasing prefetched tasks that did not start in time");
            self.release_ready(expired, ReleaseReason::NotStarted, ctx);
        }
    }

    /// Releases the first `count` tasks of the local queue.
    fn release_ready(&mut self, count: usize, reason: ReleaseReason, ctx: &mut Context<Self>) {
        let attempts: Vec<AttemptRef> = self
            .ready
            .drain(..count)
            .map(|ready| AttemptRef { task_id: ready.task.id, attempt: ready.task.attempt })
            .collect();
        if attempts.is_empty() {
            return;
        }
        self.report_gauges();
        let store = Arc::clone(&self.store);
        let worker_id = Arc::clone(&self.worker_id);
        let release =
            super::io(async move { release_with_retries(&*store, &worker_id, &attempts, reason).await });
        self.releasing += 1;
        ctx.spawn(release.into_actor(self).map(|(), dispatcher, _| {
            dispatcher.releasing -= 1;
            dispatcher.notify_if_idle();
        }));
    }

    fn notify_if_idle(&mut self) {
        let settled = !self.claiming && self.releasing == 0 && self.ready.is_empty();
        if self.stopping && settled && self.busy() == 0 {
            self.idle_waiters.drain(..).for_each(|waiter| {
                let _ = waiter.send(());
            });
        }
    }
}

/// Releases attempts that will not run here, retrying a few times: a release that
/// cannot be written is not lost either (the lease runs out and the Rescuer takes
/// over), but it would spend a retry.
pub async fn release_with_retries(
    store: &dyn Store,
    worker_id: &str,
    attempts: &[AttemptRef],
    reason: ReleaseReason,
) {
    for delay in [50, 200, 1000, 0] {
        match store.release(worker_id, attempts, reason).await {
            Ok(released) => {
                metrics::released(reason.label(), released.len());
                tracing::info!(
                    released = released.len(),
                    reason = reason.note(),
                    "released tasks to the queue"
                );
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
        // The poll covers lost hints: of new tasks, and of a pause while tasks wait in
        // the local queue (the only state a pause changes here; a limit set or removed
        // is learnt from its hint, or from the one every reconnect of the listener sends).
        ctx.run_interval(self.config.poll_interval, |dispatcher, ctx| {
            dispatcher.drained = false;
            dispatcher.claim(ctx);
            if !dispatcher.ready.is_empty() {
                dispatcher.read_settings(ctx);
            }
        });
        // Checked four times per allowed wait: no task waits past 5/8 of the grace.
        let expiry_check = (self.config.lease_grace / 8).max(Duration::from_millis(10));
        ctx.run_interval(expiry_check, |dispatcher, ctx| dispatcher.expire_ready(ctx));
    }
}

impl Handler<Registered> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Registered, ctx: &mut Self::Context) {
        self.registered = true;
        self.read_settings(ctx);
        self.claim(ctx);
    }
}

impl Dispatcher {
    /// Runnable tasks may exist: claim, and claim again after a claim in flight, which
    /// may have read the queue before they committed.
    fn hint(&mut self, ctx: &mut Context<Self>) {
        self.drained = false;
        self.hinted = self.claiming;
        self.claim(ctx);
    }
}

impl Handler<Wake> for Dispatcher {
    type Result = ();

    fn handle(&mut self, wake: Wake, ctx: &mut Self::Context) {
        if wake.settings_changed {
            self.read_settings(ctx);
        }
        self.hint(ctx);
    }
}

impl Handler<Freed> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Freed, ctx: &mut Self::Context) {
        if self.limited || self.keys_waiting {
            self.hint(ctx);
        }
    }
}

impl Handler<ExecutorIdle> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: ExecutorIdle, ctx: &mut Self::Context) {
        if let Some(since) = self.busy_since[msg.index].take() {
            self.cycle_time.add(since.elapsed());
        }
        self.idle.push(msg.index);
        self.start_ready();
        if !self.drained {
            self.claim(ctx);
        }
        self.notify_if_idle();
    }
}

impl Handler<StopClaiming> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: StopClaiming, ctx: &mut Self::Context) {
        self.stopping = true;
        self.release_ready(self.ready.len(), ReleaseReason::Shutdown, ctx);
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
        self.busy_since.iter_mut().for_each(|since| *since = None);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn average(seconds: f64) -> Average {
        let mut average = Average::default();
        average.add(Duration::from_secs_f64(seconds));
        average
    }

    #[test]
    fn no_prefetch_before_both_averages_have_a_sample() {
        assert_eq!(prefetch(5, Average::default(), average(0.001), 500), 0);
        assert_eq!(prefetch(5, average(0.002), Average::default(), 500), 0);
    }

    #[test]
    fn prefetch_covers_two_claims_of_quick_tasks_up_to_the_cap() {
        // 5 executors finishing a task every 100 µs finish 100 during a 2 ms claim.
        assert_eq!(prefetch(5, average(0.002), average(0.0001), 500), 200);
        assert_eq!(prefetch(5, average(0.002), average(0.00001), 500), 500);
        assert_eq!(prefetch(5, average(0.002), average(0.0001), 0), 0, "WORKER_PREFETCH=0");
    }

    #[test]
    fn tasks_slower_than_a_claim_are_not_prefetched() {
        assert_eq!(prefetch(5, average(0.002), average(1.0), 500), 0);
        assert_eq!(prefetch(100, average(0.002), average(30.0), 500), 0);
    }

    #[test]
    fn the_average_moves_a_fifth_of_the_way_to_each_sample() {
        let mut average = average(1.0);
        average.add(Duration::from_secs(2));
        assert!((average.0.unwrap() - 1.2).abs() < 1e-9);
    }
}
