//! What an executor shares with the handler of its running attempt: the deadline that
//! progress reports restart, and the coalesced writes of those reports.
//!
//! The executor owns the timeout (see `executor`): it waits for the handler until
//! `timeout` after the later of the attempt's start and its last report. A report
//! restarts that clock at once, in memory, whatever happens to its write; the write
//! extends the lease, so the Rescuer leaves alone an attempt that keeps reporting.
//!
//! Writes are coalesced per attempt: one goes to the database at most every
//! [`WRITE_GAP`], the latest report winning. A report outside the gap is written at once
//! and awaited, so its handler hears whether its fence held; one inside the gap waits
//! in `pending` (replacing an older one) for a flush at the gap's end, and returns at
//! once. A handler reporting in a tight loop thus costs two writes a second. When the
//! handler finishes, a report still held back is written before its outcome is sent,
//! so the last report (often "100 %") is the one the task keeps. Writes of one attempt
//! take turns (`writing`); they go through the worker's progress writer (a
//! [`BatchWriter`](super::BatchWriter)), so reports of many attempts share statements.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::messages::Record;
use super::writer::Outcome;
use crate::handlers::{AttemptControl, ProgressError};
use crate::metrics;
use crate::store::{self, AttemptRef, ProgressUpdate, Store};

/// The least time between two progress writes of one attempt.
pub const WRITE_GAP: Duration = Duration::from_millis(500);

/// How long a finished handler's last report may hold its outcome back.
const FINAL_WRITE_PATIENCE: Duration = Duration::from_secs(2);

/// A progress report on its way to the database, with whom to tell whether its fence
/// held (the handler that awaits it; `None` for a flush nobody awaits).
pub struct ProgressReport {
    pub update: ProgressUpdate,
    pub reply: Option<oneshot::Sender<bool>>,
}

impl Outcome for ProgressReport {
    const KIND: &'static str = "progress report";
    const FREES_SLOTS: bool = false;

    fn task_id(&self) -> Uuid {
        self.update.attempt.task_id
    }

    fn write(
        store: Arc<dyn Store>,
        worker_id: Arc<str>,
        batch: Arc<Vec<Self>>,
    ) -> BoxFuture<'static, store::Result<Vec<Uuid>>> {
        Box::pin(async move {
            let updates: Vec<ProgressUpdate> = batch.iter().map(|report| report.update.clone()).collect();
            metrics::progress_written(updates.len());
            store.report_progress(&worker_id, &updates).await
        })
    }

    fn written(self, applied: bool) {
        if !applied {
            // Expected after a rescue or at an attempt's end: the handler is told.
            tracing::debug!(task_id = %self.task_id(), "progress report ignored: the attempt is no longer running here");
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(applied);
        }
    }
}

/// The coalescing state of one attempt's writes.
#[derive(Default)]
struct Coalescing {
    /// When the last write was sent.
    last_sent: Option<Instant>,
    /// The latest report held back by the gap, with its message.
    pending: Option<(u8, String)>,
    /// A flush of `pending` is scheduled.
    flushing: bool,
}

/// One running attempt, as its executor and its handler share it.
pub struct Attempt {
    attempt: AttemptRef,
    timeout: Duration,
    /// The lease a written report restarts: `timeout_seconds` plus the lease grace.
    lease: Duration,
    started: Instant,
    /// When the handler last reported (its deadline is this plus `timeout`).
    last_report: Mutex<Option<Instant>>,
    coalescing: Mutex<Coalescing>,
    /// Held through each write, so that the write of the last report held back, made
    /// when the handler finishes, is not overtaken by a flush still on its way.
    writing: tokio::sync::Mutex<()>,
    writer: Recipient<Record<ProgressReport>>,
    /// A write found the fence gone: the attempt is no longer this worker's.
    lost: AtomicBool,
    /// The attempt's outcome is known: reports still held back are dropped.
    ended: AtomicBool,
}

impl Attempt {
    /// An attempt whose handler starts at `starts` (now, or a planned start a little
    /// ahead).
    pub fn new(
        attempt: AttemptRef,
        starts: Instant,
        timeout: Duration,
        lease_grace: Duration,
        writer: Recipient<Record<ProgressReport>>,
    ) -> Self {
        Self {
            attempt,
            timeout,
            lease: timeout + lease_grace,
            started: starts,
            last_report: Mutex::new(None),
            coalescing: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            writer,
            lost: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        }
    }

    /// When the executor stops waiting for the handler: `timeout` after the attempt's
    /// start or its last report, whichever is later.
    pub fn deadline(&self) -> Instant {
        lock(&self.last_report).unwrap_or(self.started) + self.timeout
    }

    /// Whether the handler reported at least once.
    pub fn reported(&self) -> bool {
        lock(&self.last_report).is_some()
    }

    /// The attempt's outcome is known: nothing more is written for it.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Sends a write of `percent` and `message` and waits for its fence's answer. A
    /// reply that never comes (the writer gave the batch up after repeated database
    /// errors) is no fault of the handler's: it is not told.
    async fn write(&self, percent: u8, message: String) -> Result<(), ProgressError> {
        let (reply, applied) = oneshot::channel();
        let update = ProgressUpdate { attempt: self.attempt, percent, message, lease: self.lease };
        self.writer.do_send(Record(ProgressReport { update, reply: Some(reply) }));
        if applied.await == Ok(false) {
            self.lost.store(true, Ordering::Relaxed);
            return Err(ProgressError::Lost);
        }
        Ok(())
    }

    /// Writes the report held back, once the gap since the last write has passed.
    async fn flush_later(self: Arc<Self>, wait: Duration) {
        tokio::time::sleep(wait).await;
        let _turn = self.writing.lock().await;
        let report = {
            let mut coalescing = lock(&self.coalescing);
            coalescing.flushing = false;
            if self.ended.load(Ordering::Relaxed) {
                return;
            }
            let report = coalescing.pending.take();
            if report.is_some() {
                coalescing.last_sent = Some(Instant::now());
            }
            report
        };
        if let Some((percent, message)) = report {
            // The handler that made it has moved on: a lost fence is told at its next report.
            let _ = self.write(percent, message).await;
        }
    }

    /// The handler finished: nothing more is written after the report it still had
    /// held back, which is written now (before the outcome is sent, so its fence holds).
    pub async fn finish_reports(&self) {
        let _turn = self.writing.lock().await;
        let report = {
            let mut coalescing = lock(&self.coalescing);
            self.ended.store(true, Ordering::Relaxed);
            coalescing.pending.take()
        };
        if let Some((percent, message)) = report {
            // Bounded: a database that does not answer must not hold the outcome back.
            let _ = tokio::time::timeout(FINAL_WRITE_PATIENCE, self.write(percent, message)).await;
        }
    }
}

impl AttemptControl for Attempt {
    fn progress(
        self: Arc<Self>,
        percent: u8,
        message: String,
    ) -> BoxFuture<'static, Result<(), ProgressError>> {
        Box::pin(async move {
            metrics::progress_reported();
            if self.lost.load(Ordering::Relaxed) {
                return Err(ProgressError::Lost);
            }
            *lock(&self.last_report) = Some(Instant::now());
            let held_back = {
                let mut coalescing = lock(&self.coalescing);
                match coalescing.last_sent.map(|sent| sent.elapsed()) {
                    Some(since) if since < WRITE_GAP => {
                        coalescing.pending = Some((percent, message.clone()));
                        if !std::mem::replace(&mut coalescing.flushing, true) {
                            let flush = Arc::clone(&self).flush_later(WRITE_GAP - since);
                            super::handler_runtime().spawn(flush);
                        }
                        true
                    }
                    _ => {
                        coalescing.last_sent = Some(Instant::now());
                        coalescing.pending = None;
                        false
                    }
                }
            };
            if held_back {
                return Ok(());
            }
            let _turn = self.writing.lock().await;
            self.write(percent, message).await
        })
    }
}

/// A lock whose holder cannot have left its data half-changed (every critical section
/// here is a few assignments), so a poisoned one is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
