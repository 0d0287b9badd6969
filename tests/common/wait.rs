//! Waiting for a condition with a deadline, shared by the test binaries: tests poll
//! what they wait for instead of sleeping a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some`, failing the test after `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}
