//! How a worker hears that one of its running tasks was cancelled.
//!
//! `POST /api/tasks/{id}/cancel` on a running task marks it in the database and, in the
//! same transaction, sends a NOTIFY on `CANCEL_CHANNEL` (on SQLite, an in-process
//! wake-up); the process's wake-up listener hands it to [`Cancels::cancel`]. A
//! notification can be lost (the listener reconnecting), so every worker also asks the
//! database for its cancel-requested attempts at most every second while it runs any
//! ([`poll`]). Either way the attempt's cancellation token fires, which its handler
//! sees through `TaskContext`, and its executor starts the cancel grace.
//!
//! Executors register an attempt's token while its handler runs and remove it at its
//! end; a request for an attempt that is not registered here (another worker's, or one
//! still waiting in the local queue) is ignored, and the poll finds it once it starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{AttemptRef, Store};

/// The cancellation tokens of the attempts running in this process, by task.
#[derive(Default)]
pub struct Cancels {
    running: Mutex<HashMap<Uuid, (i32, CancellationToken)>>,
}

impl Cancels {
    /// An attempt's handler starts: a cancel of its task fires `token`.
    pub fn register(&self, attempt: AttemptRef, token: CancellationToken) {
        self.lock().insert(attempt.task_id, (attempt.attempt, token));
    }

    /// The attempt ended (or was aborted): nothing is left to cancel.
    pub fn unregister(&self, attempt: AttemptRef) {
        let mut running = self.lock();
        if running.get(&attempt.task_id).is_some_and(|(number, _)| *number == attempt.attempt) {
            running.remove(&attempt.task_id);
        }
    }

    /// A cancel of `task_id` was requested: fires its running attempt's token, if it
    /// runs here.
    pub fn cancel(&self, task_id: Uuid) {
        if let Some((attempt, token)) = self.lock().get(&task_id) {
            if !token.is_cancelled() {
                tracing::info!(%task_id, attempt, "cancel requested: telling the handler");
            }
            token.cancel();
        }
    }

    /// Fires the token of `attempt`, if it is the one running here.
    fn cancel_attempt(&self, attempt: AttemptRef) {
        let matches = self.lock().get(&attempt.task_id).is_some_and(|(number, _)| *number == attempt.attempt);
        if matches {
            self.cancel(attempt.task_id);
        }
    }

    /// The tasks whose attempts run here.
    fn running(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (i32, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Asks the database every `every` which of `worker_id`'s running attempts were asked
/// to cancel, while any runs here: the fallback of the NOTIFY. Stops when aborted.
pub fn poll(
    store: Arc<dyn Store>,
    worker_id: String,
    cancels: Arc<Cancels>,
    every: Duration,
) -> tokio::task::AbortHandle {
    super::spawn_io(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let running = cancels.running();
            if running.is_empty() {
                continue;
            }
            match store.cancels_requested(&worker_id, &running).await {
                Ok(requested) => requested.into_iter().for_each(|attempt| cancels.cancel_attempt(attempt)),
                Err(error) => {
                    tracing::debug!(error = %error, "could not look for cancel requests; trying again")
                }
            }
        }
    })
}
