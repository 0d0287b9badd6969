//! Live-stream clients that vanish mid-stream, and 500 that connect and never read:
//! the server's memory and file descriptors come back to their baseline, and other
//! clients and the API are not held up meanwhile.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::harness::*;

fn open_stream(port: u16) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .write_all(b"GET /api/tasks/stream HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    socket
}

/// Latency of `GET /api/stats`: the slowest of `n` requests.
async fn slowest_stats(api: &Api, n: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let asked = Instant::now();
        let (status, _) = api.get("/api/stats").await.unwrap();
        assert_eq!(status, 200);
        slowest = slowest.max(asked.elapsed());
    }
    slowest
}

/// How many `stats` events one well-behaved client receives in `window`.
async fn events_seen(api: &Api, window: Duration) -> usize {
    let response = api.client.get(api.url("/api/tasks/stream")).send().await.unwrap();
    let mut body = response.bytes_stream();
    let mut seen = 0;
    let end = Instant::now() + window;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(end.into(), body.next()).await {
        seen += String::from_utf8_lossy(&chunk).matches("event: stats").count();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_and_stalled_stream_clients_cost_nothing_once_gone() {
    let _gate = shared();
    const TEST: &str = "live-stream clients";
    let scratch = Scratch::new("stream");
    let db = format!("sqlite://{}", scratch.path("stream.db").display());
    let server = Proc::start(Spec::new("server", &db, "server"), &scratch).await;
    let api = Api::new(server.url(""));
    let stalled_clients = scale(500, 2_000);

    // Warm up, then the baseline.
    let quiet = slowest_stats(&api, 20).await;
    let normal_rate = events_seen(&api, Duration::from_secs(2)).await;
    let (fds, rss) = (server.fds(), server.rss_kib());

    // Clients that read a little and vanish, in waves.
    for _ in 0..scale(5, 50) {
        let mut streams = Vec::new();
        for _ in 0..100 {
            streams.push(api.client.get(api.url("/api/tasks/stream")).send().await.unwrap().bytes_stream());
        }
        for stream in &mut streams {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        }
        drop(streams);
    }

    // Clients that never read a byte, twice: what the first round leaves behind, the
    // second must not add to (the allocator keeps some memory; a leak would grow).
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let stalled: Vec<TcpStream> = (0..stalled_clients).map(|_| open_stream(server.port)).collect();
        wait_for("the server to accept every stalled client", Duration::from_secs(30), || async {
            // Give or take the few idle keep-alive connections of the baseline.
            (server.fds() + 10 >= fds + stalled_clients).then_some(())
        })
        .await;
        let loaded = slowest_stats(&api, 20).await;
        let loaded_rate = events_seen(&api, Duration::from_secs(2)).await;
        let (peak_fds, peak_rss) = (server.fds(), server.rss_kib());
        drop(stalled);
        // Back to the baseline, give or take the test client's own idle keep-alive
        // connections.
        let gone = Instant::now();
        let after_fds = loop {
            let now = server.fds();
            if now <= fds + 8 {
                break now;
            }
            assert!(gone.elapsed() < Duration::from_secs(60), "{now} descriptors open, baseline {fds}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        rounds.push((loaded, loaded_rate, peak_fds, peak_rss, after_fds, server.rss_kib()));
    }
    let (loaded, loaded_rate, peak_fds, peak_rss, after_fds, after_rss) = rounds[0];
    let second_rss = rounds[1].5;
    figure(TEST, "stalled clients held open", stalled_clients);
    figure(
        TEST,
        "open descriptors: baseline / with clients / after",
        format!("{fds} / {peak_fds} / {after_fds}"),
    );
    figure(
        TEST,
        "resident memory: baseline / with clients / after / after a second round",
        format!("{} / {} / {} / {} MiB", rss / 1024, peak_rss / 1024, after_rss / 1024, second_rss / 1024),
    );
    figure(
        TEST,
        "slowest GET /api/stats: quiet / with stalled clients",
        format!("{:.0} / {:.0} ms", quiet.as_secs_f64() * 1e3, loaded.as_secs_f64() * 1e3),
    );
    figure(
        TEST,
        "stats events in 2 s to a reading client: quiet / loaded",
        format!("{normal_rate} / {loaded_rate}"),
    );
    assert!(
        second_rss <= after_rss + 8 * 1024,
        "memory grew round after round: {after_rss} → {second_rss} KiB"
    );
    assert!(after_rss <= rss + 64 * 1024, "memory stayed high: {rss} → {after_rss} KiB");
    assert!(loaded < Duration::from_secs(2), "the API was held up: {loaded:?}");
    assert!(
        loaded_rate * 2 >= normal_rate && loaded_rate > 0,
        "a reading client was held up: {loaded_rate} vs {normal_rate}"
    );
}
