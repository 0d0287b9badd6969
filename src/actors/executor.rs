//! Executor: runs one attempt at a time and reports its outcome.
//!
//! The handler's future runs on the handler runtime (see [`handler_runtime`]), not on
//! the actor's thread, so a handler that blocks or burns CPU cannot stall the claim
//! loop, the timers or other executors. The executor owns the timeout: when
//! `timeout_seconds` pass since the attempt started, or since the handler's last
//! progress report (`attempt`), it stops waiting, aborts the handler and reports
//! `TimedOut`. A panic in a handler arrives as a failed join and is a retryable
//! failure, never a dead executor.
//!
//! A cancel of the running task (`cancels`) fires the attempt's token, which the
//! handler sees through its `TaskContext`, and starts `CANCEL_GRACE`: a handler that
//! stops within it ("stopped by its handler"), or that is aborted at its end ("aborted
//! after the 10s grace"), ends its task `cancelled`, never retried. A handler that
//! succeeds anyway keeps its success: the work is done.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{Attempt, ProgressReport};
use super::cancels::Cancels;
use super::messages::{Abort, Ack, AttemptFailed, ExecutorIdle, Record, TaskMsg};
use crate::handlers::{HandlerError, HandlerResult, Registry, TaskContext};
use crate::metrics;
use crate::store::{AttemptRef, Completion, FailureKind, Task};

/// The runtime every handler runs on: multi-threaded, shared by all workers of the
/// process, and never dropped (a runtime cannot be dropped from async code).
pub fn handler_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("taskq-handler")
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2))
            .enable_all()
            .build()
            .expect("the handler runtime could not start")
    })
}

/// The attempt an executor is running.
struct Running {
    attempt: AttemptRef,
    abort: AbortHandle,
    control: Arc<Attempt>,
    /// Fired by a cancel request of the task.
    cancel: CancellationToken,
}

/// How waiting for a handler ended.
enum Waited {
    /// The handler finished (or panicked: a failed join).
    Finished(Result<HandlerResult, JoinError>),
    /// Its deadline passed: `timeout` since the start, or since its last report.
    TimedOut,
    /// Its task's cancel was requested and the cancel grace passed.
    GraceOver,
}

/// An executor's grace periods.
#[derive(Debug, Clone, Copy)]
pub struct Graces {
    /// Added to `timeout_seconds` for the lease a progress report restarts.
    pub lease: Duration,
    /// How long a handler has to stop once its task's cancel was requested.
    pub cancel: Duration,
}

/// Where an executor sends what its attempts produce.
#[derive(Clone)]
pub struct Links {
    pub dispatcher: Recipient<ExecutorIdle>,
    pub completer: Recipient<Ack>,
    pub retry: Recipient<AttemptFailed>,
    /// The worker's writer of progress reports.
    pub progress: Recipient<Record<ProgressReport>>,
    /// Where the attempts' cancellation tokens are found by cancel requests.
    pub cancels: Arc<Cancels>,
}

pub struct Executor {
    /// Position in the Dispatcher's pool, sent back with `ExecutorIdle`.
    pub index: usize,
    pub worker_id: Arc<str>,
    pub registry: Arc<Registry>,
    links: Links,
    graces: Graces,
    /// Set while an attempt runs; cleared by its outcome or by `Abort`, so an outcome
    /// that arrives after an abort is recognised and dropped.
    current: Option<Running>,
}

impl Executor {
    pub fn new(
        index: usize,
        worker_id: Arc<str>,
        registry: Arc<Registry>,
        links: Links,
        graces: Graces,
    ) -> Self {
        Self { index, worker_id, registry, links, graces, current: None }
    }

    fn fail(&self, task: Task, kind: FailureKind, error: String, fatal: bool) {
        metrics::attempt_finished(&task, if fatal { "fatal" } else { kind.label() });
        self.links.retry.do_send(AttemptFailed { task, kind, error, fatal, snooze: None });
    }

    /// The handler answered "not yet": the Retry actor checks `max_snoozes`.
    fn snooze(&self, task: Task, delay: Duration) {
        metrics::attempt_finished(&task, FailureKind::Snoozed.label());
        let error = HandlerError::Snooze(delay).to_string();
        let snooze = Some(delay);
        self.links.retry.do_send(AttemptFailed {
            task,
            kind: FailureKind::Snoozed,
            error,
            fatal: false,
            snooze,
        });
    }

    /// The attempt of a task whose cancel was requested stopped without success: the
    /// task ends `cancelled` (the outcome write notes `how`).
    fn cancel_stopped(&self, task: Task, how: String, label: &'static str) {
        metrics::attempt_finished(&task, FailureKind::Cancelled.label());
        metrics::cancel_stopped(label);
        tracing::info!(task_id = %task.id, task_type = %task.task_type, %how, "cancelled task stopped");
        let kind = FailureKind::Cancelled;
        self.links.retry.do_send(AttemptFailed { task, kind, error: how, fatal: true, snooze: None });
    }

    /// Turns the end of an attempt into its outcome message, then reports idle.
    fn finish(&mut self, task: Task, started: Instant, control: &Attempt, outcome: Waited) {
        let attempt = AttemptRef { task_id: task.id, attempt: task.attempt };
        match &self.current {
            Some(running) if running.attempt == attempt => {}
            // Aborted at shutdown: the Dispatcher releases the task.
            _ => return,
        }
        control.end();
        let running = self.current.take().expect("checked above");
        self.links.cancels.unregister(attempt);
        metrics::attempt_duration(&task, started.elapsed());
        if running.cancel.is_cancelled() {
            let stopped = match &outcome {
                // Work done is kept.
                Waited::Finished(Ok(Ok(_))) => None,
                Waited::Finished(_) => Some(("stopped by its handler".to_owned(), "handler")),
                Waited::GraceOver => {
                    let grace = humantime::format_duration(self.graces.cancel);
                    Some((format!("aborted after the {grace} grace"), "grace"))
                }
                Waited::TimedOut => Some(("stopped at its timeout".to_owned(), "timeout")),
            };
            if let Some((how, label)) = stopped {
                running.abort.abort();
                self.cancel_stopped(task, how, label);
                self.links.dispatcher.do_send(ExecutorIdle { index: self.index });
                return;
            }
        }
        match outcome {
            Waited::Finished(Ok(Ok(result))) => {
                metrics::attempt_finished(&task, "succeeded");
                self.links.completer.do_send(Record(Completion { attempt, result }));
            }
            Waited::Finished(Ok(Err(HandlerError::Retryable(error)))) => {
                self.fail(task, FailureKind::Error, error, false)
            }
            Waited::Finished(Ok(Err(HandlerError::Fatal(error)))) => {
                self.fail(task, FailureKind::Error, error, true)
            }
            Waited::Finished(Ok(Err(HandlerError::Snooze(delay)))) => self.snooze(task, delay),
            Waited::Finished(Err(join)) => {
                let error = match join.try_into_panic() {
                    Ok(panic) => format!("handler panicked: {}", panic_message(&*panic)),
                    Err(join) => format!("handler did not finish: {join}"),
                };
                tracing::error!(task_id = %task.id, %error, "handler panicked");
                self.fail(task, FailureKind::Error, error, false);
            }
            Waited::TimedOut => {
                running.abort.abort();
                let error = if control.reported() {
                    format!("timed out {}s after its last progress report", task.timeout_seconds)
                } else {
                    format!("timed out after {}s", task.timeout_seconds)
                };
                self.fail(task, FailureKind::TimedOut, error, false);
            }
            Waited::GraceOver => unreachable!("the grace starts only with a cancel"),
        }
        self.links.dispatcher.do_send(ExecutorIdle { index: self.index });
    }
}

/// Waits for the handler until its deadline, which each progress report moves on (the
/// timer is only looked at when it fires, so reports cost it nothing), or, once its
/// task's cancel was requested, until the cancel grace ends, if that comes first.
async fn wait(
    mut join: JoinHandle<HandlerResult>,
    control: Arc<Attempt>,
    cancel: CancellationToken,
    grace: Duration,
) -> Waited {
    let mut grace_ends: Option<Instant> = None;
    loop {
        let deadline = grace_ends.map_or(control.deadline(), |end| end.min(control.deadline()));
        tokio::select! {
            finished = &mut join => {
                control.finish_reports().await;
                return Waited::Finished(finished);
            }
            () = cancel.cancelled(), if grace_ends.is_none() => {
                grace_ends = Some(Instant::now() + grace);
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                if grace_ends.is_some_and(|end| end <= now) {
                    return Waited::GraceOver;
                }
                if control.deadline() <= now {
                    return Waited::TimedOut;
                }
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl Actor for Executor {
    type Context = Context<Self>;
}

impl Handler<TaskMsg> for Executor {
    type Result = ();

    fn handle(&mut self, msg: TaskMsg, ctx: &mut Self::Context) {
        let task = msg.task;
        let attempt = AttemptRef { task_id: task.id, attempt: task.attempt };
        let Some((_, handler)) = self.registry.get(&task.task_type) else {
            let error = format!(
                "no handler is registered for type {:?} on worker {}",
                task.task_type, self.worker_id
            );
            self.fail(task, FailureKind::Error, error, true);
            self.links.dispatcher.do_send(ExecutorIdle { index: self.index });
            return;
        };
        let handler = Arc::clone(handler);
        let timeout = Duration::from_secs(task.timeout_seconds.max(1) as u64);
        // A rate-limited task's recorded start may lie a little ahead: its timeout
        // counts from there.
        let starts = Instant::now() + msg.start_in;
        let writer = self.links.progress.clone();
        let control = Arc::new(Attempt::new(attempt, starts, timeout, self.graces.lease, writer));
        let cancel = CancellationToken::new();
        self.links.cancels.register(attempt, cancel.clone());
        let context = TaskContext {
            id: task.id,
            name: task.name.clone(),
            task_type: task.task_type.clone(),
            payload: task.payload.clone(),
            attempt: task.attempt,
            retry_count: task.retry_count,
            worker_id: Arc::clone(&self.worker_id),
            control: Arc::clone(&control) as Arc<dyn crate::handlers::AttemptControl>,
            cancel: cancel.clone(),
        };
        let span = tracing::info_span!(
            "task",
            task_id = %task.id,
            task_type = %task.task_type,
            attempt = task.attempt,
            worker_id = %self.worker_id,
        );
        let start_in = starts.saturating_duration_since(Instant::now());
        let run = async move {
            if !start_in.is_zero() {
                tokio::time::sleep(start_in).await;
            }
            handler.run(context).await
        };
        let join = handler_runtime().spawn(run.instrument(span));
        let abort = join.abort_handle();
        self.current =
            Some(Running { attempt, abort, control: Arc::clone(&control), cancel: cancel.clone() });
        let started = Instant::now();
        ctx.spawn(
            wait(join, Arc::clone(&control), cancel, self.graces.cancel)
                .into_actor(self)
                .map(move |outcome, executor, _| executor.finish(task, started, &control, outcome)),
        );
    }
}

impl Handler<Abort> for Executor {
    type Result = Option<AttemptRef>;

    fn handle(&mut self, _: Abort, _: &mut Self::Context) -> Self::Result {
        let running = self.current.take()?;
        running.abort.abort();
        running.control.end();
        self.links.cancels.unregister(running.attempt);
        Some(running.attempt)
    }
}
