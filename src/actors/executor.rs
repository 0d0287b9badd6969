//! Executor: runs one attempt at a time and reports its outcome.
//!
//! The handler's future runs on the handler runtime (see [`handler_runtime`]), not on
//! the actor's thread, so a handler that blocks or burns CPU cannot stall the claim
//! loop, the timers or other executors. The executor owns the timeout: when
//! `timeout_seconds` pass it stops waiting, aborts the handler and reports
//! `TimedOut`. A panic in a handler arrives as a failed join and is a retryable
//! failure, never a dead executor.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::task::{AbortHandle, JoinError};
use tracing::Instrument;

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
}

pub struct Executor {
    /// Position in the Dispatcher's pool, sent back with `ExecutorIdle`.
    pub index: usize,
    pub worker_id: Arc<str>,
    pub registry: Arc<Registry>,
    pub dispatcher: Recipient<ExecutorIdle>,
    pub completer: Recipient<Ack>,
    pub retry: Recipient<AttemptFailed>,
    /// Set while an attempt runs; cleared by its outcome or by `Abort`, so an outcome
    /// that arrives after an abort is recognised and dropped.
    current: Option<Running>,
}

impl Executor {
    pub fn new(
        index: usize,
        worker_id: Arc<str>,
        registry: Arc<Registry>,
        dispatcher: Recipient<ExecutorIdle>,
        completer: Recipient<Ack>,
        retry: Recipient<AttemptFailed>,
    ) -> Self {
        Self { index, worker_id, registry, dispatcher, completer, retry, current: None }
    }

    fn fail(&self, task: Task, kind: FailureKind, error: String, fatal: bool) {
        metrics::attempt_finished(&task, if fatal { "fatal" } else { kind.label() });
        self.retry.do_send(AttemptFailed { task, kind, error, fatal });
    }

    /// Turns the end of an attempt into its outcome message, then reports idle.
    fn finish(
        &mut self,
        task: Task,
        started: Instant,
        outcome: Result<Result<HandlerResult, JoinError>, tokio::time::error::Elapsed>,
    ) {
        let attempt = AttemptRef { task_id: task.id, attempt: task.attempt };
        match &self.current {
            Some(running) if running.attempt == attempt => {}
            // Aborted at shutdown: the Dispatcher releases the task.
            _ => return,
        }
        let running = self.current.take().expect("checked above");
        metrics::attempt_duration(&task, started.elapsed());
        match outcome {
            Ok(Ok(Ok(result))) => {
                metrics::attempt_finished(&task, "succeeded");
                self.completer.do_send(Record(Completion { attempt, result }));
            }
            Ok(Ok(Err(HandlerError::Retryable(error)))) => self.fail(task, FailureKind::Error, error, false),
            Ok(Ok(Err(HandlerError::Fatal(error)))) => self.fail(task, FailureKind::Error, error, true),
            Ok(Err(join)) => {
                let error = match join.try_into_panic() {
                    Ok(panic) => format!("handler panicked: {}", panic_message(&*panic)),
                    Err(join) => format!("handler did not finish: {join}"),
                };
                tracing::error!(task_id = %task.id, %error, "handler panicked");
                self.fail(task, FailureKind::Error, error, false);
            }
            Err(_elapsed) => {
                running.abort.abort();
                let error = format!("timed out after {}s", task.timeout_seconds);
                self.fail(task, FailureKind::TimedOut, error, false);
            }
        }
        self.dispatcher.do_send(ExecutorIdle { index: self.index });
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
            self.dispatcher.do_send(ExecutorIdle { index: self.index });
            return;
        };
        let handler = Arc::clone(handler);
        let context = TaskContext {
            id: task.id,
            name: task.name.clone(),
            task_type: task.task_type.clone(),
            payload: task.payload.clone(),
            attempt: task.attempt,
            retry_count: task.retry_count,
            worker_id: Arc::clone(&self.worker_id),
        };
        let span = tracing::info_span!(
            "task",
            task_id = %task.id,
            task_type = %task.task_type,
            attempt = task.attempt,
            worker_id = %self.worker_id,
        );
        let start_in = msg.start_in;
        let run = async move {
            if !start_in.is_zero() {
                tokio::time::sleep(start_in).await;
            }
            handler.run(context).await
        };
        let join = handler_runtime().spawn(run.instrument(span));
        self.current = Some(Running { attempt, abort: join.abort_handle() });
        let timeout = Duration::from_secs(task.timeout_seconds.max(1) as u64) + start_in;
        let started = Instant::now();
        ctx.spawn(
            tokio::time::timeout(timeout, join)
                .into_actor(self)
                .map(move |outcome, executor, _| executor.finish(task, started, outcome)),
        );
    }
}

impl Handler<Abort> for Executor {
    type Result = Option<AttemptRef>;

    fn handle(&mut self, _: Abort, _: &mut Self::Context) -> Self::Result {
        let running = self.current.take()?;
        running.abort.abort();
        Some(running.attempt)
    }
}
