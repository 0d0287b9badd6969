//! The wake-up listener: one per worker process, whatever the number of queues. It
//! forwards each hint (a NOTIFY on PostgreSQL, an in-process message on SQLite) to the
//! Dispatchers of the queues it concerns, or a cancel request to the attempt it names
//! ([`Cancels`]), and reconnects with backoff when its connection is lost. Hints are
//! never needed for correctness: the Dispatchers' poll finds what a lost hint would
//! have announced, and the cancels' poll a lost cancel.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

use super::cancels::Cancels;
use super::messages::Wake;
use crate::store::{Hint, Store};

/// Backoff of the listener's reconnects: doubling from the first to the last.
const LISTEN_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// Starts forwarding hints to `dispatchers` (each with its queue) and cancel requests
/// to `cancels`; stops when aborted.
pub fn listen(
    store: Arc<dyn Store>,
    dispatchers: Vec<(String, Recipient<Wake>)>,
    cancels: Arc<Cancels>,
) -> tokio::task::AbortHandle {
    super::spawn_io(async move {
        let mut delay = LISTEN_RETRY.0;
        loop {
            match store.wakeups().await {
                Ok(mut hints) => {
                    delay = LISTEN_RETRY.0;
                    // Hints of either kind may have been missed while away.
                    for (_, dispatcher) in &dispatchers {
                        dispatcher.do_send(Wake { settings_changed: true });
                    }
                    while let Some(hint) = hints.next().await {
                        match hint {
                            Ok(Hint::Cancel(task_id)) => cancels.cancel(task_id),
                            Ok(hint) => forward(&hint, &dispatchers),
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
    })
}

fn forward(hint: &Hint, dispatchers: &[(String, Recipient<Wake>)]) {
    let settings_changed = matches!(hint, Hint::Settings(_));
    for (queue, dispatcher) in dispatchers {
        if hint.concerns(queue) {
            dispatcher.do_send(Wake { settings_changed });
        }
    }
}
