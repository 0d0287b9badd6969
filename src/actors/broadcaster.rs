//! StatsBroadcaster: one statistics snapshot per tick for every live-stream client.
//!
//! Database load does not grow with the number of dashboards: each tick runs one
//! stats query and one history query, whatever the number of clients, and only an
//! index-only read of the newest history id without clients. Fan-out never blocks: each client has a bounded channel that
//! is `try_send`-ed to, and a client whose buffer is full (too slow) or closed (gone)
//! is dropped on the spot.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use super::messages::{Broadcast, Stop, Subscribe};
use crate::metrics;
use crate::store::{self, Stats, Store, TaskEvent};

/// The most task events sent per tick; a busier queue shows the stats only.
const EVENTS_PER_TICK: u32 = 200;
/// Messages a client may have queued before it counts as too slow: two ticks' worth,
/// so a busy tick never drops a client that reads.
const CLIENT_BUFFER: usize = 2 * (EVENTS_PER_TICK as usize + 1);

pub struct StatsBroadcaster {
    store: Arc<dyn Store>,
    interval: Duration,
    clients: Vec<mpsc::Sender<Broadcast>>,
    /// The newest snapshot, sent to a client when it subscribes.
    latest: Option<Arc<Stats>>,
    /// The id of the last history event sent; `None` until the first client.
    last_event: Option<i64>,
    /// A tick's queries are in flight; ticks are skipped meanwhile.
    busy: bool,
}

impl StatsBroadcaster {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Self { store, interval, clients: Vec::new(), latest: None, last_event: None, busy: false }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.clients.retain(|client| !client.is_closed());
        metrics::stream_clients(self.clients.len());
        if self.busy {
            return;
        }
        self.busy = true;
        if self.clients.is_empty() {
            // Without clients only the stream's position moves (one index-only read),
            // so the first client to arrive gets the events from then on, not a
            // backlog and not a gap.
            let store = Arc::clone(&self.store);
            let position = super::io(async move { store.last_event_id().await });
            ctx.spawn(position.into_actor(self).map(|position, broadcaster, _| {
                broadcaster.busy = false;
                match position {
                    Ok(last) => broadcaster.last_event = Some(last),
                    Err(error) => tracing::debug!(error = %error, "stream position not read"),
                }
            }));
            return;
        }
        let store = Arc::clone(&self.store);
        let after = self.last_event;
        let work = super::io(async move {
            metrics::stats_query();
            let stats = store::stats(&*store).await?;
            let events = match after {
                Some(after) => store.events_since(after, EVENTS_PER_TICK).await?,
                None => Vec::new(),
            };
            let last = match (after, events.last()) {
                (_, Some(event)) => event.event.id,
                (Some(after), None) => after,
                (None, None) => store.last_event_id().await?,
            };
            Ok::<_, store::StoreError>((stats, events, last))
        });
        ctx.spawn(work.into_actor(self).map(|outcome, broadcaster, _| {
            broadcaster.busy = false;
            match outcome {
                Ok((stats, events, last)) => broadcaster.publish(stats, events, last),
                Err(error) => tracing::warn!(error = %error, "stats tick failed"),
            }
        }));
    }

    fn publish(&mut self, stats: Stats, events: Vec<TaskEvent>, last: i64) {
        let stats = Arc::new(stats);
        self.latest = Some(Arc::clone(&stats));
        self.last_event = Some(last);
        let mut messages = vec![Broadcast::Stats(stats)];
        messages.extend(events.into_iter().map(|e| Broadcast::Task(Arc::new(e))));
        self.clients.retain(|client| {
            let kept = messages.iter().all(|message| client.try_send(message.clone()).is_ok());
            if !kept {
                tracing::debug!("dropping a live-stream client that is too slow or gone");
            }
            kept
        });
        metrics::stream_clients(self.clients.len());
    }
}

impl Actor for StatsBroadcaster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |broadcaster, ctx| broadcaster.tick(ctx));
    }
}

impl Handler<Subscribe> for StatsBroadcaster {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _: Subscribe, _: &mut Self::Context) -> Self::Result {
        let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
        if let Some(latest) = &self.latest {
            let _ = sender.try_send(Broadcast::Stats(Arc::clone(latest)));
        }
        self.clients.push(sender);
        metrics::stream_clients(self.clients.len());
        MessageResult(receiver)
    }
}

/// Closes every stream (at shutdown) and stops.
impl Handler<Stop> for StatsBroadcaster {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.clients.clear();
        ctx.stop();
    }
}
