//! The messages actors exchange. Each is small and says who sends it and why.
//!
//! Mailboxes are volatile: anything here can vanish with the process. The database is
//! the truth, and fenced writes plus the Rescuer make a lost message safe.

use std::sync::Arc;

use actix::prelude::*;

use crate::store::{AttemptRef, Completion, Stats, Task, TaskEvent, TaskProgress};

/// Dispatcher → Executor: run this claimed attempt. Sent only to an idle executor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskMsg {
    pub task: Task,
    /// How long to wait before running it: a rate-limited task's recorded start may lie
    /// a little ahead ([`crate::store::flow::LOOKAHEAD`]).
    pub start_in: std::time::Duration,
}

/// Executor → Dispatcher: the executor finished its attempt (its outcome is already
/// on its way to the Completer or the Retry actor) and can take another.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ExecutorIdle {
    pub index: usize,
}

/// The wake-up listener → Dispatcher: runnable tasks may exist in its queue, or (with
/// `settings_changed`) the queue's settings changed, perhaps to paused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake {
    pub settings_changed: bool,
}

/// Completer / Retry's writer → Dispatchers: finished attempts were written, so slots
/// of limited queues may be free. Only a Dispatcher of a limited queue claims on it:
/// its last claim may have come back short because of the limit, not an empty queue.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Freed;

/// Worker → Completer, Retry: whom to tell `Freed` after each write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchWrites(pub Vec<Recipient<Freed>>);

/// Heartbeat → Dispatcher: the worker's first heartbeat is written; claiming may
/// begin (the Rescuer takes the tasks of unregistered workers for orphans).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Registered;

/// Executor → Retry: an attempt failed; `fatal` errors are never retried. A snooze
/// (kind `Snoozed`) carries its delay in `snooze`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttemptFailed {
    pub task: Task,
    pub kind: crate::store::FailureKind,
    pub error: String,
    pub fatal: bool,
    pub snooze: Option<std::time::Duration>,
}

/// Executor → Completer, Retry → its writer: one outcome to persist in the next batch.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record<T: 'static>(pub T);

/// Shutdown → Completer / Retry: resolves once everything recorded so far is written
/// (or given up on after repeated database errors).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Shutdown → Dispatcher: claim nothing more; release the local queue of prefetched
/// tasks now, and the tasks of a claim still in flight as soon as it returns.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopClaiming;

/// Shutdown → Dispatcher: resolves when no executor is busy and no claim or release is
/// in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WhenIdle;

/// Shutdown → Dispatcher (after the grace period): stop every running handler and
/// return the attempts that were running, for release.
#[derive(Message)]
#[rtype(result = "Vec<AttemptRef>")]
pub struct AbortAll;

/// Dispatcher → Executor: stop the running handler, if any; its outcome is discarded.
#[derive(Message)]
#[rtype(result = "Option<AttemptRef>")]
pub struct Abort;

/// Shutdown → any actor: stop now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// What a live-stream client receives from the StatsBroadcaster.
#[derive(Debug, Clone)]
pub enum Broadcast {
    Stats(Arc<Stats>),
    Task(Arc<TaskEvent>),
    /// A running task's new progress report.
    Progress(Arc<TaskProgress>),
}

/// SSE handler → StatsBroadcaster: add a client; the receiver ends when the client is
/// dropped (too slow, or shutdown).
#[derive(Message)]
#[rtype(result = "tokio::sync::mpsc::Receiver<Broadcast>")]
pub struct Subscribe;

/// A completed attempt, as the Completer batches it.
pub type Ack = Record<Completion>;
