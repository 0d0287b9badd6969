//! Group commit for single-task inserts: [`CreateBatcher`].
//!
//! Each `POST /api/tasks` is worth one transaction, and a transaction's commit waits
//! for its WAL flush: a server inserting request by request commits at most one task
//! per flush and connection. The batcher gathers concurrent requests instead. A few
//! writer loops share one queue; a loop that becomes free takes every request waiting
//! (up to [`MAX_GROUP`]) and inserts them with one `create_tasks`: one statement, one
//! commit, one flush. An idle loop takes a lone request at once, so a quiet server
//! adds no latency, and a busy one commits many requests per flush.
//!
//! A request waits for a writer at most as long as it would wait for a pooled
//! connection (`max_wait`), then it is refused as unavailable (503) without being
//! inserted: a stalled database gives callers the same bounded answer as a pool that
//! ran dry.
//!
//! A group the database refuses for one of its rows is written again one request at
//! a time, concurrently, so each caller gets its own answer and no request fails for
//! another's row. A group that meets an outage is answered unavailable as a whole:
//! writing it again one by one would only make every caller wait twice.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Created, NewTask, Result, Store, StoreError};

/// The most requests in one insert.
const MAX_GROUP: usize = 500;
/// Requests that may wait for a writer before callers wait to enqueue.
const QUEUE: usize = 4096;

struct Request {
    task: NewTask,
    queued: Instant,
    reply: oneshot::Sender<Result<Created>>,
}

/// Inserts single tasks for many concurrent callers in shared transactions.
#[derive(Clone)]
pub struct CreateBatcher {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    writers: usize,
    max_wait: Duration,
    /// The writer loops' queue, made (and the loops started) by the first request, so
    /// a process that never creates a task (a worker) runs no loops.
    requests: OnceLock<mpsc::Sender<Request>>,
}

impl CreateBatcher {
    /// A batcher of `writers` loops (at most that many inserts in flight), started on
    /// the first request; they stop when the last clone of the batcher is dropped. A
    /// request not taken by a writer within `max_wait` is refused.
    pub fn new(store: Arc<dyn Store>, writers: usize, max_wait: Duration) -> Self {
        Self {
            shared: Arc::new(Shared { store, writers: writers.max(1), max_wait, requests: OnceLock::new() }),
        }
    }

    fn requests(&self) -> &mpsc::Sender<Request> {
        let Shared { store, writers, max_wait, requests } = &*self.shared;
        requests.get_or_init(|| {
            let (requests, queue) = mpsc::channel(QUEUE);
            let queue = Arc::new(Mutex::new(queue));
            for _ in 0..*writers {
                crate::runtime::spawn_io(write_loop(Arc::clone(store), Arc::clone(&queue), *max_wait));
            }
            requests
        })
    }

    /// Inserts one task (or finds the task its idempotency key names), committed
    /// with whatever other requests were waiting.
    pub async fn create(&self, task: NewTask) -> Result<Created> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::from(sqlx::Error::PoolClosed);
        let request = Request { task, queued: Instant::now(), reply };
        self.requests().send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_loop(store: Arc<dyn Store>, queue: Arc<Mutex<mpsc::Receiver<Request>>>, max_wait: Duration) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            group
        };
        let (fresh, stale): (Vec<_>, Vec<_>) =
            group.into_iter().partition(|request| request.queued.elapsed() < max_wait);
        for request in stale {
            let _ = request.reply.send(Err(sqlx::Error::PoolTimedOut.into()));
        }
        if !fresh.is_empty() {
            write(&*store, fresh).await;
        }
    }
}

async fn write(store: &dyn Store, group: Vec<Request>) {
    let tasks: Vec<NewTask> = group.iter().map(|request| request.task.clone()).collect();
    let created = store.create_tasks(&tasks).await;
    match created
        .and_then(|created| if created.len() == tasks.len() { Ok(created) } else { Err(missing_row()) })
    {
        Ok(created) => {
            for (request, created) in group.into_iter().zip(created) {
                let _ = request.reply.send(Ok(created));
            }
        }
        // The database cannot be reached: every request gets that answer now, instead
        // of one more wait for a connection each.
        Err(StoreError::Unavailable(cause)) => {
            for request in group {
                let _ = request.reply.send(Err(StoreError::Unavailable(Arc::clone(&cause))));
            }
        }
        Err(error) if group.len() == 1 => {
            if let Some(request) = group.into_iter().next() {
                let _ = request.reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::debug!(error = %error, tasks = group.len(), "group insert failed; inserting one by one");
            futures_util::future::join_all(group.into_iter().map(|request| async move {
                let created = store.create_tasks(std::slice::from_ref(&request.task)).await;
                let created = created.and_then(|mut created| created.pop().ok_or_else(missing_row));
                let _ = request.reply.send(created);
            }))
            .await;
        }
    }
}

/// `create_tasks` answers every input; an empty answer is a bug, reported as such.
fn missing_row() -> StoreError {
    StoreError::Database(sqlx::Error::RowNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConnectOptions;

    #[tokio::test]
    async fn the_writer_loops_start_with_the_first_request_not_before() {
        let path = std::env::temp_dir().join(format!("taskq_group_{}.db", uuid::Uuid::now_v7().simple()));
        let store = crate::store::connect(&ConnectOptions::new(format!("sqlite://{}", path.display())))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let batcher = CreateBatcher::new(Arc::clone(&store), 2, Duration::from_secs(5));
        assert!(batcher.shared.requests.get().is_none(), "no loops run before a request");
        let created = batcher.create(NewTask::new("noop", serde_json::json!({}))).await.unwrap();
        assert!(created.inserted);
        assert!(batcher.shared.requests.get().is_some(), "the first request started them");
        store.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
