//! StatsBroadcaster: one statistics snapshot per tick for every live-stream client.
//!
//! Database load does not grow with the number of dashboards: each tick runs one
//! stats query and one history query, whatever the number of clients, and only an
//! index-only read of the newest history id without clients. Fan-out never blocks:
//! each client has a bounded channel that is `try_send`-ed to, and a client whose
//! buffer is full (too slow) or closed (gone) is dropped on the spot.
//!
//! History ids are assigned when an event is inserted, not when it commits, so an
//! event can become visible after events with higher ids. The stream's [`Cursor`]
//! waits for such holes instead of reading past them.
//!
//! Progress reports are no events: each tick also reads the progress of the running
//! tasks (few, reached through the lease index) and sends those that changed since the
//! last tick. A report overwritten within one tick is not sent; the next one is.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;

use super::messages::{Broadcast, Stop, Subscribe};
use crate::metrics;
use crate::store::{self, Stats, Store, TaskEvent, TaskProgress};

/// The most task events sent per tick; a busier queue shows the stats only.
const EVENTS_PER_TICK: u32 = 200;
/// Messages a client may have queued before it counts as too slow: two ticks' worth,
/// so a busy tick never drops a client that reads.
const CLIENT_BUFFER: usize = 2 * (EVENTS_PER_TICK as usize + 1);
/// How long the stream waits for a hole in the history ids to fill before it counts
/// the missing ids as rolled back. An event of a transaction open longer than this
/// is not streamed.
const HOLE_PATIENCE: Duration = Duration::from_secs(10);

/// What a tick read from the history.
enum Read {
    /// The stream's first position: the newest id.
    Start(i64),
    /// Events after the cursor's `settled` id.
    Events(Vec<TaskEvent>),
}

/// The stream's position in the history, robust to events that commit out of id order.
///
/// Every id up to `settled` was sent or given up on; ids above it that were sent are
/// remembered in `sent`. Each read starts after `settled`, so an event that commits
/// late below ids already sent is still read, and `sent` keeps anything from being
/// sent twice. `settled` moves over sent ids without a hole; a hole (an id not seen
/// yet below a sent one) is waited for up to [`HOLE_PATIENCE`], then skipped.
#[derive(Debug)]
struct Cursor {
    settled: i64,
    sent: BTreeSet<i64>,
    /// When the hole at `settled + 1` was first seen.
    hole_since: Option<Instant>,
}

impl Cursor {
    fn new(position: i64) -> Self {
        Self { settled: position, sent: BTreeSet::new(), hole_since: None }
    }

    /// Keeps the events read after `settled` that were not sent yet, counts them sent,
    /// and moves `settled` as far as holes allow.
    fn take_new(&mut self, events: Vec<TaskEvent>, now: Instant) -> Vec<TaskEvent> {
        let fresh: Vec<TaskEvent> = events
            .into_iter()
            .filter(|event| event.event.id > self.settled && self.sent.insert(event.event.id))
            .collect();
        self.settle(now);
        fresh
    }

    fn settle(&mut self, now: Instant) {
        while let Some(&next_sent) = self.sent.first() {
            if next_sent == self.settled + 1 {
                self.sent.pop_first();
                self.settled = next_sent;
            } else if now.duration_since(*self.hole_since.get_or_insert(now)) >= HOLE_PATIENCE {
                self.settled = next_sent - 1;
            } else {
                return;
            }
            self.hole_since = None;
        }
        self.hole_since = None;
    }
}

pub struct StatsBroadcaster {
    store: Arc<dyn Store>,
    interval: Duration,
    clients: Vec<mpsc::Sender<Broadcast>>,
    /// The newest snapshot, sent to a client when it subscribes.
    latest: Option<Arc<Stats>>,
    /// Where the stream is in the history; `None` until the first client.
    cursor: Option<Cursor>,
    /// A tick's queries are in flight; ticks are skipped meanwhile.
    busy: bool,
    /// The progress last sent of each running task (its attempt and report time).
    progress_sent: HashMap<uuid::Uuid, (i32, chrono::DateTime<chrono::Utc>)>,
}

impl StatsBroadcaster {
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Self {
            store,
            interval,
            clients: Vec::new(),
            latest: None,
            cursor: None,
            busy: false,
            progress_sent: HashMap::new(),
        }
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
                    Ok(last) => broadcaster.cursor = Some(Cursor::new(last)),
                    Err(error) => tracing::debug!(error = %error, "stream position not read"),
                }
            }));
            return;
        }
        let store = Arc::clone(&self.store);
        let after = self.cursor.as_ref().map(|cursor| cursor.settled);
        let work = super::io(async move {
            metrics::stats_query();
            let stats = store::stats(&*store).await?;
            let read = match after {
                Some(after) => Read::Events(store.events_since(after, EVENTS_PER_TICK).await?),
                None => Read::Start(store.last_event_id().await?),
            };
            let progress = store.running_progress().await?;
            Ok::<_, store::StoreError>((stats, read, progress))
        });
        ctx.spawn(work.into_actor(self).map(|outcome, broadcaster, _| {
            broadcaster.busy = false;
            match outcome {
                Ok((stats, read, progress)) => {
                    let events = match read {
                        Read::Start(position) => {
                            broadcaster.cursor = Some(Cursor::new(position));
                            Vec::new()
                        }
                        Read::Events(events) => broadcaster
                            .cursor
                            .as_mut()
                            .map_or_else(Vec::new, |cursor| cursor.take_new(events, Instant::now())),
                    };
                    let progress = broadcaster.new_progress(progress);
                    broadcaster.publish(stats, events, progress);
                }
                Err(error) => tracing::warn!(error = %error, "stats tick failed"),
            }
        }));
    }

    /// The reports not sent yet; what is sent is remembered for the running tasks only.
    fn new_progress(&mut self, running: Vec<TaskProgress>) -> Vec<TaskProgress> {
        let previous = std::mem::take(&mut self.progress_sent);
        running
            .into_iter()
            .filter(|report| {
                let mark = (report.progress.attempt, report.progress.at);
                self.progress_sent.insert(report.task_id, mark);
                previous.get(&report.task_id) != Some(&mark)
            })
            .collect()
    }

    fn publish(&mut self, stats: Stats, events: Vec<TaskEvent>, progress: Vec<TaskProgress>) {
        let stats = Arc::new(stats);
        self.latest = Some(Arc::clone(&stats));
        let mut messages = vec![Broadcast::Stats(stats)];
        messages.extend(events.into_iter().map(|e| Broadcast::Task(Arc::new(e))));
        messages.extend(
            progress.into_iter().take(EVENTS_PER_TICK as usize).map(|p| Broadcast::Progress(Arc::new(p))),
        );
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

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::store::{EventType, HistoryEvent, TaskStatus};

    fn event(id: i64) -> TaskEvent {
        TaskEvent {
            event: HistoryEvent {
                id,
                task_id: Uuid::nil(),
                event_type: EventType::TaskQueued,
                status: TaskStatus::Queued,
                retry_count: 0,
                worker_id: None,
                error_message: None,
                next_run_at: None,
                created_at: Utc::now(),
                queue: "default".into(),
                schedule: None,
                tick_at: None,
                progress_at: None,
            },
            task_type: "noop".into(),
            name: "n".into(),
        }
    }

    fn ids(events: &[TaskEvent]) -> Vec<i64> {
        events.iter().map(|e| e.event.id).collect()
    }

    fn read(cursor: &mut Cursor, visible: &[i64], now: Instant) -> Vec<i64> {
        let after: Vec<TaskEvent> =
            visible.iter().filter(|&&id| id > cursor.settled).map(|&id| event(id)).collect();
        ids(&cursor.take_new(after, now))
    }

    #[test]
    fn events_in_order_are_sent_once_and_settle() {
        let (mut cursor, now) = (Cursor::new(10), Instant::now());
        assert_eq!(read(&mut cursor, &[11, 12], now), [11, 12]);
        assert_eq!(read(&mut cursor, &[11, 12, 13], now), [13]);
        assert_eq!((cursor.settled, cursor.sent.len()), (13, 0));
    }

    #[test]
    fn an_event_that_commits_after_a_higher_one_is_still_sent() {
        let (mut cursor, now) = (Cursor::new(10), Instant::now());
        // 11 belongs to a transaction still open; 12 and 13 committed.
        assert_eq!(read(&mut cursor, &[12, 13], now), [12, 13]);
        assert_eq!(cursor.settled, 10, "the hole at 11 holds the position");
        assert_eq!(read(&mut cursor, &[12, 13], now + Duration::from_secs(1)), Vec::<i64>::new());
        assert_eq!(read(&mut cursor, &[11, 12, 13, 14], now + Duration::from_secs(2)), [11, 14]);
        assert_eq!((cursor.settled, cursor.sent.len()), (14, 0));
    }

    #[test]
    fn a_hole_that_never_fills_is_skipped_after_the_patience() {
        let (mut cursor, now) = (Cursor::new(10), Instant::now());
        assert_eq!(read(&mut cursor, &[12], now), [12]);
        assert_eq!(read(&mut cursor, &[12], now + HOLE_PATIENCE / 2), Vec::<i64>::new());
        assert_eq!(cursor.settled, 10);
        assert_eq!(read(&mut cursor, &[12, 14], now + HOLE_PATIENCE), [14]);
        // 11 was given up on; the hole at 13 is new and gets its own patience.
        assert_eq!(cursor.settled, 12);
        assert_eq!(read(&mut cursor, &[13, 14], now + HOLE_PATIENCE), [13]);
        assert_eq!((cursor.settled, cursor.sent.len()), (14, 0));
    }
}
