//! `GET /api/tasks/stream`: Server-Sent Events for dashboards.
//!
//! `event: stats` carries the statistics snapshot, `event: task` a history event with
//! the task's type and name, `event: progress` a running task's new progress report. Both come from the StatsBroadcaster, which queries once
//! per tick for all clients; this handler only subscribes and formats.

use std::time::Duration;

use actix_web::{Responder, web};
use actix_web_lab::sse;
use futures_util::StreamExt;

use super::AppState;
use super::error::ApiError;
use crate::actors::messages::{Broadcast, Subscribe};

/// Comment lines sent when nothing else is, so proxies keep the connection and a
/// vanished client is noticed (the write fails) within seconds.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Server-Sent Events: `event: stats` (a Stats object) every `STATS_INTERVAL`,
/// `event: task` (a history event with the task's `type` and `name`) per state change,
/// and `event: progress` (`{task_id, progress}`) when a running task reports progress.
#[utoipa::path(get, path = "/api/tasks/stream", tag = "stats",
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)))]
pub async fn stream(state: web::Data<AppState>) -> Result<impl Responder, ApiError> {
    let broadcaster = state.broadcaster.as_ref().ok_or(ApiError::NotFound("not found"))?;
    let receiver = broadcaster.send(Subscribe).await.map_err(|_| ApiError::NotFound("not found"))?;
    let events = tokio_stream_from(receiver).map(|message| {
        let event = match message {
            Broadcast::Stats(stats) => sse::Data::new_json(&*stats).map(|d| d.event("stats")),
            Broadcast::Task(event) => {
                sse::Data::new_json(&*event).map(|d| d.id(event.event.id.to_string()).event("task"))
            }
            Broadcast::Progress(report) => sse::Data::new_json(&*report).map(|d| d.event("progress")),
        };
        Ok::<_, std::convert::Infallible>(sse::Event::Data(event.unwrap_or_else(|_| sse::Data::new("{}"))))
    });
    Ok(sse::Sse::from_stream(events)
        .with_keep_alive(KEEP_ALIVE)
        .with_retry_duration(Duration::from_secs(2))
        .customize()
        .insert_header(("X-Accel-Buffering", "no")))
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
