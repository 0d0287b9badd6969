//! Lingering close: the rest of a request body the handler did not read (a body over
//! its limit, answered 413 before it was read; any early error) is read and thrown
//! away before the answer goes out, up to a bound, as nginx's `lingering_close` does.
//!
//! Without it the server answers and closes while the client is still sending: the
//! kernel resets a connection closed with unread data, and a client that writes its
//! whole body before reading the answer (Node's fetch, Python's requests) sees the
//! reset (EPIPE, ECONNRESET) instead of the JSON 413; only a client that reads while
//! it writes (curl) got it. Read to its end, the body leaves the connection clean and
//! open for the next request.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};

/// The most of an unread body the server reads to throw away: twice the largest body
/// any route takes. A client sending more is cut off, as without this.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// The longest the server waits for the rest of a body it will not use.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The request's body, shared between the handler (through [`Shared`]) and this
/// middleware, which reads what the handler left once it has answered. Requests stay
/// on the worker thread that took them, so an `Rc` is enough.
type Body = Rc<RefCell<Payload>>;

struct Shared(Body);

impl Stream for Shared {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// The middleware: hands the handler the body through [`Shared`], then reads what is
/// left of it before passing the answer on.
pub async fn drain_unread_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let body: Body = Rc::new(RefCell::new(req.take_payload()));
    req.set_payload(Payload::Stream { payload: Box::pin(Shared(body.clone())) });
    let answer = next.call(req).await;
    let _ = tokio::time::timeout(DRAIN_TIME, drain(&body)).await;
    answer
}

/// Reads the body to its end or to [`DRAIN_BYTES`]; a body already read ends at once.
async fn drain(body: &Body) {
    let mut stream = Shared(body.clone());
    let mut read = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > DRAIN_BYTES {
            break;
        }
    }
}
