//! `http` and `stats`: the API under load, from a separate server process.
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client written here on a plain
//! socket: it costs a few microseconds per request, so on a two-core machine most of
//! the CPU goes to the server and PostgreSQL rather than to the client (a full HTTP
//! client costs several times more). `bench/http-wrk.sh` runs the same load with wrk
//! against any running server, for comparison.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::baseline::{Limit, Script};
use super::process::TaskqProcess;
use super::{Bench, Unit, percentile};

/// The targets taskq sets itself.
const POST_TARGET: f64 = 5_000.0;
const STATS_P99_TARGET_MS: f64 = 20.0;
/// The body of every `POST /api/tasks`.
const TASK_BODY: &str = r#"{"name":"bench","type":"noop"}"#;

pub async fn post_tasks(bench: &mut Bench) -> anyhow::Result<()> {
    let connections = bench.args.http_connections.max(1);
    let measure = bench.args.http_duration;
    let warm_up = measure / 5;
    let rate_name = format!("POST /api/tasks req/s, {connections} connections");
    let (p50, p99) = ("POST /api/tasks p50", "POST /api/tasks p99");
    for run in 1..=bench.args.runs {
        bench.step(format!("http run {run}: {connections} connections for {measure:?}"));
        bench.db.reset().await?;
        let server = TaskqProcess::spawn(&bench.taskq_bin, "server", &bench.db.url, &[]).await?;
        let port = server.port;
        let load = Load { port, warm_up, measure };
        let clients = (0..connections).map(|_| load.client());
        let results = futures_util::future::join_all(clients).await;
        server.stop().await;
        let mut latencies = Vec::new();
        for result in results {
            latencies.extend(result?);
        }
        let count = latencies.len();
        let latencies = super::sorted(latencies);
        let report = &mut bench.report;
        report.taskq(
            "http",
            &rate_name,
            Unit::PerSecond,
            Some(POST_TARGET),
            count as f64 / measure.as_secs_f64(),
        );
        report.taskq("http", p50, Unit::Millis, None, percentile(&latencies, 50.0));
        report.taskq("http", p99, Unit::Millis, None, percentile(&latencies, 99.0));

        if let Some(pgbench) = &bench.pgbench {
            bench.step(format!("http run {run}: raw SQL"));
            bench.db.reset().await?;
            let seconds = measure.as_secs().max(1) as u32;
            let raw = pgbench
                .run(&bench.db.url, Script::InsertOne, 1, connections, Limit::Seconds(seconds))
                .await?;
            let what = format!("pgbench insert_one.sql, {connections} clients");
            let report = &mut bench.report;
            report.raw("http", &rate_name, Unit::PerSecond, &what, raw.tps);
            report.raw("http", p50, Unit::Millis, &what, percentile(&raw.latencies_ms, 50.0));
            report.raw("http", p99, Unit::Millis, &what, percentile(&raw.latencies_ms, 99.0));
        }
        bench.progress.inc(1);
    }
    Ok(())
}

pub async fn stats(bench: &mut Bench) -> anyhow::Result<()> {
    let n = bench.args.stats_tasks;
    let requests = bench.args.stats_requests.max(1);
    bench.step(format!("stats: filling the table with {n} tasks"));
    bench.db.reset().await?;
    fill(bench, n).await?;
    let server = TaskqProcess::spawn(&bench.taskq_bin, "server", &bench.db.url, &[]).await?;
    let tasks =
        if n >= 1_000_000 && n % 1_000_000 == 0 { format!("{}M", n / 1_000_000) } else { n.to_string() };
    let (p50, p99) =
        (format!("GET /api/stats p50, {tasks} tasks"), format!("GET /api/stats p99, {tasks} tasks"));
    let outcome = async {
        for run in 1..=bench.args.runs {
            bench.step(format!("stats run {run}: {requests} requests"));
            let mut conn = Connection::open(server.port).await?;
            for _ in 0..10 {
                conn.get("/api/stats").await?; // warm-up: connections, plans, caches
            }
            let mut latencies = Vec::with_capacity(requests as usize);
            for _ in 0..requests {
                let started = Instant::now();
                let status = conn.get("/api/stats").await?;
                anyhow::ensure!(status == 200, "GET /api/stats answered {status}");
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            let latencies = super::sorted(latencies);
            bench.report.taskq("stats", &p50, Unit::Millis, None, percentile(&latencies, 50.0));
            bench.report.taskq(
                "stats",
                &p99,
                Unit::Millis,
                Some(STATS_P99_TARGET_MS),
                percentile(&latencies, 99.0),
            );

            if let Some(pgbench) = &bench.pgbench {
                bench.step(format!("stats run {run}: raw SQL"));
                let raw =
                    pgbench.run(&bench.db.url, Script::Stats, 1, 1, Limit::Transactions(requests)).await?;
                let what = "pgbench stats.sql (the snapshot's four queries), 1 client";
                bench.report.raw("stats", &p50, Unit::Millis, what, percentile(&raw.latencies_ms, 50.0));
                bench.report.raw("stats", &p99, Unit::Millis, what, percentile(&raw.latencies_ms, 99.0));
            }
            bench.progress.inc(1);
        }
        anyhow::Ok(())
    }
    .await;
    server.stop().await;
    outcome
}

/// Fills the table with `n` tasks in the shape of a queue that has run for a week:
/// mostly succeeded, some failed and cancelled, 2% queued (a quarter of them scheduled
/// for later), 1% running; a seventh retried once. Their ids are UUID v7 of their
/// creation times, spread evenly over the week, as taskq makes them; names are
/// distinct, types `send_email` (60%), `run_query` (30%), `webhook` (10%) and, one in a
/// thousand, `rare_type`, and each payload holds a `customer_id` of 10,000. Written by
/// SQL in chunks, without history (neither the stats nor a search read it).
pub(super) async fn fill(bench: &Bench, n: u32) -> anyhow::Result<()> {
    let mut conn = bench.db.connect().await?;
    const CHUNK: u32 = 100_000;
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        sqlx::query(
            r#"
            INSERT INTO tasks (id, name, type, payload, status, retry_count, run_at, worker_id,
                               locked_until, started_at, completed_at, created_at, updated_at)
            SELECT encode(overlay(uuid_send(gen_random_uuid()) PLACING
                              substring(int8send(floor(extract(epoch FROM c.at) * 1000)::int8) FROM 3)
                              FROM 1 FOR 6), 'hex')::uuid,
                   'order-' || i,
                   CASE WHEN i % 1000 = 999 THEN 'rare_type' WHEN i % 10 < 6 THEN 'send_email'
                        WHEN i % 10 < 9 THEN 'run_query' ELSE 'webhook' END,
                   jsonb_build_object('customer_id', i % 10000), s.status, (i % 7 = 0)::int,
                   CASE WHEN i % 200 = 197 THEN now() + interval '1 hour' ELSE c.at END,
                   CASE WHEN s.status = 'running' THEN 'bench-stats' END,
                   CASE WHEN s.status = 'running' THEN now() + interval '1 hour' END,
                   CASE WHEN s.status <> 'queued' THEN c.at + interval '30 seconds' END,
                   CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN c.at + interval '1 minute' END,
                   c.at, c.at
            FROM generate_series($1::int, $2::int - 1) AS i
            CROSS JOIN LATERAL (SELECT now() - interval '7 days' * (1 - i::float8 / $3) AS at) AS c
            CROSS JOIN LATERAL (SELECT CASE
                WHEN i % 100 < 90 THEN 'succeeded'
                WHEN i % 100 < 95 THEN 'failed'
                WHEN i % 100 < 97 THEN 'cancelled'
                WHEN i % 100 < 99 THEN 'queued'
                ELSE 'running' END::task_status AS status) AS s
            "#,
        )
        .bind(from as i32)
        .bind(to as i32)
        .bind(f64::from(n))
        .execute(&mut conn)
        .await?;
        bench.step(format!("stats: filling the table, {to} of {n} tasks"));
        from = to;
    }
    // A quarter of an hour of per-minute throughput, as a busy queue would have.
    sqlx::query(
        "INSERT INTO task_throughput (minute, succeeded, failed) \
         SELECT date_trunc('minute', now()) - make_interval(mins => m), 6000, 300 FROM generate_series(0, 14) AS m",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("VACUUM ANALYZE tasks").execute(&mut conn).await?;
    Ok(())
}

/// The HTTP load of one run: requests in the warm-up are sent but not counted.
#[derive(Clone, Copy)]
struct Load {
    port: u16,
    warm_up: Duration,
    measure: Duration,
}

impl Load {
    /// One keep-alive connection posting tasks back to back; returns the latencies (ms)
    /// of the requests that started in the measured window.
    async fn client(self) -> anyhow::Result<Vec<f64>> {
        let mut conn = Connection::open(self.port).await?;
        let begin = Instant::now() + self.warm_up;
        let end = begin + self.measure;
        let mut latencies = Vec::new();
        loop {
            let started = Instant::now();
            if started >= end {
                return Ok(latencies);
            }
            let status = conn.post("/api/tasks", TASK_BODY).await?;
            anyhow::ensure!(status == 201, "POST /api/tasks answered {status}");
            if started >= begin {
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
}

/// One HTTP/1.1 keep-alive connection to 127.0.0.1.
pub(super) struct Connection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Connection {
    pub(super) async fn open(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.context("cannot connect to taskq")?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), request: Vec::new(), body: Vec::new() })
    }

    pub(super) async fn get(&mut self, path: &str) -> anyhow::Result<u16> {
        self.request.clear();
        self.request.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes());
        self.exchange().await
    }

    async fn post(&mut self, path: &str, json: &str) -> anyhow::Result<u16> {
        self.request.clear();
        self.request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
            .as_bytes(),
        );
        self.exchange().await
    }

    /// Sends the request and reads the whole response; returns its status.
    async fn exchange(&mut self) -> anyhow::Result<u16> {
        self.stream.get_mut().write_all(&self.request).await?;
        let mut line = String::new();
        anyhow::ensure!(self.stream.read_line(&mut line).await? > 0, "the server closed the connection");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            anyhow::ensure!(self.stream.read_line(&mut line).await? > 0, "the server closed the connection");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().context("a bad Content-Length")?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    anyhow::bail!("chunked responses are not expected from taskq's API");
                }
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(status)
    }
}

/// One GET on a fresh connection: the status, for readiness checks.
pub async fn get_status(port: u16, path: &str) -> anyhow::Result<u16> {
    let mut conn = Connection::open(port).await?;
    conn.get(path).await
}
