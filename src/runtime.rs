//! The I/O runtime: where taskq's own background database work runs.
//!
//! Actors live on actix arbiters and HTTP handlers on actix-web's workers, both torn
//! down with their system; a database future dropped there mid-flight (an embedding
//! application that exits without shutting the worker down) would find no runtime to
//! return its connection to. Running store calls and long-lived background loops
//! here instead means they always complete on a live runtime, and spreads their I/O
//! over more than one arbiter thread.

use std::future::Future;
use std::sync::OnceLock;

/// Multi-threaded, shared by the process, never dropped (a runtime cannot be dropped
/// from async code).
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("taskq-io")
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the I/O runtime could not start")
    })
}

/// Runs a store call on the I/O runtime and returns its output.
pub(crate) fn io<F>(future: F) -> impl Future<Output = F::Output> + 'static
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = io_runtime().spawn(future);
    async move { task.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic())) }
}

/// Starts a long-lived background future on the I/O runtime.
pub(crate) fn spawn_io<F>(future: F) -> tokio::task::AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    io_runtime().spawn(future).abort_handle()
}
