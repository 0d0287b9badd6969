//! The fault harness: a throwaway PostgreSQL that may be restarted at will, real
//! taskq processes signalled by pid, an API client that remembers every 201, and the
//! invariant checker run at the end of every fault.

#![allow(dead_code)] // each fault uses its own part of the harness

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use taskq::check::{self, Options, Report};
use uuid::Uuid;

/// The process under test: taskq with the fault handlers (`ledger`, `panic`, …).
pub const TESTBED: &str = env!("CARGO_BIN_EXE_taskq-testbed");
/// The shipped binary, for `taskq check` and the hostile-input table.
pub const TASKQ: &str = env!("CARGO_BIN_EXE_taskq");

/// The lease grace of every worker (`WorkerConfig::default`): lease = timeout + this.
pub const LEASE_GRACE: Duration = Duration::from_secs(10);
/// How often a worker's Rescuer looks for expired leases (lease grace / 2, at most 5 s).
pub const RESCUE_INTERVAL: Duration = Duration::from_secs(5);
/// The claim poll of the fleets started here.
pub const POLL: Duration = Duration::from_millis(200);

/// The long soak instead of the bounded CI run.
pub fn soak() -> bool {
    std::env::var("TASKQ_SOAK").is_ok_and(|v| v == "1")
}

/// Picks the bounded (CI) or the soak value.
pub fn scale<T>(ci: T, soak_value: T) -> T {
    if soak() { soak_value } else { ci }
}

static GATE: RwLock<()> = RwLock::new(());

/// Tests that mostly wait for timers share the machine.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Tests that load the machine run alone.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// Prints a measured figure and appends it to `$TASKQ_FIGURES`.
pub fn figure(test: &str, name: &str, value: impl std::fmt::Display) {
    let line = format!("FIGURE | {test} | {name} | {value}");
    println!("{line}");
    if let Ok(path) = std::env::var("TASKQ_FIGURES") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    crate::wait::poll(what, deadline, Duration::from_millis(50), check).await
}

/// A directory for one test's files, kept when the test fails (for its logs).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("taskq-faults-{test}-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("faults: kept {} for its logs", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The PostgreSQL server binaries: on PATH, else the newest in /usr/lib/postgresql.
fn pg_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        return dir;
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    installed.sort();
    installed
        .pop()
        .filter(|dir| dir.join("initdb").is_file())
        .expect("the fault suite needs the PostgreSQL server binaries (initdb, pg_ctl)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A PostgreSQL server of the test's own, on a free port: restarting it, stopping it
/// or terminating its backends disturbs nothing else on the machine.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("taskq-faults-pg-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        if as_postgres && !Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success()) {
            let status = Command::new("useradd").args(["--system", "postgres"]).status().unwrap();
            assert!(status.success(), "cannot create the postgres user to run the throwaway server");
        }
        if as_postgres {
            let status = Command::new("chown").args(["postgres"]).arg(&dir).status().unwrap();
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let pg = Self { dir, bin, port: free_port(), as_postgres };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        );
        pg.start_server();
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and returns when it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server: `fast` (clean) or `immediate` (like a crash: recovery at start).
    pub fn stop_server(&self, mode: &str) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", mode, "-w", "-t", "60", "stop"]);
    }

    pub fn restart(&self, mode: &str) {
        self.stop_server(mode);
        self.start_server();
    }

    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates the database `faults_{name}` and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let name = format!("faults_{name}");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the throwaway PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create the database {name}: {e}"));
        self.url(&name)
    }

    /// Terminates every backend of `database`; returns how many there were.
    pub async fn terminate_backends(&self, database: &str) -> i64 {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.admin_url()).await.unwrap();
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How to start one taskq process.
#[derive(Clone)]
pub struct Spec {
    pub binary: &'static str,
    pub role: &'static str,
    pub database_url: String,
    pub worker_id: String,
    pub concurrency: usize,
    pub env: Vec<(String, String)>,
}

impl Spec {
    pub fn new(role: &'static str, database_url: &str, name: &str) -> Self {
        Self {
            binary: TESTBED,
            role,
            database_url: database_url.to_owned(),
            worker_id: name.to_owned(),
            concurrency: 4,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
}

/// A running taskq process, killed when dropped.
pub struct Proc {
    child: Child,
    pub spec: Spec,
    pub port: u16,
    pub log: PathBuf,
    pub exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts the process (its log in the scratch directory) and waits for `/livez`.
    pub async fn start(spec: Spec, scratch: &Scratch) -> Self {
        let proc = Self::spawn(spec, scratch);
        proc.ready().await;
        proc
    }

    pub fn spawn(spec: Spec, scratch: &Scratch) -> Self {
        let port = free_port();
        let log = scratch.path(&format!("{}-{}.log", spec.worker_id, Uuid::now_v7().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(spec.binary);
        command
            .current_dir(&scratch.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &spec.database_url)
            .env("ROLE", spec.role)
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", port.to_string())
            .env("WORKER_ID", &spec.worker_id)
            .env("WORKER_CONCURRENCY", spec.concurrency.to_string())
            .env("WORKER_POLL_INTERVAL", format!("{}ms", POLL.as_millis()))
            .env("SHUTDOWN_GRACE", "5s")
            .env("STATS_INTERVAL", "200ms")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", spec.binary));
        Self { child, spec, port, log, exit: None }
    }

    pub async fn ready(&self) {
        let url = self.url("/livez");
        let client = reqwest::Client::new();
        wait_for(&format!("{} to answer /livez", self.spec.worker_id), Duration::from_secs(60), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.ok().filter(|r| r.status().is_success()).map(drop) }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to end.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(start.elapsed() < deadline, "{} did not exit within {deadline:?}", self.spec.worker_id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors of the process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An API client that remembers every task it was answered 201 for.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub acknowledged: Arc<Mutex<Vec<Uuid>>>,
}

impl Api {
    pub fn new(base: String) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Self { base, client, acknowledged: Arc::default() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/tasks`; a 201 is remembered. Returns the status and the body.
    pub async fn create(&self, body: &Value) -> reqwest::Result<(u16, Value)> {
        let response = self.client.post(self.url("/api/tasks")).json(body).send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 201 {
            let id =
                body["id"].as_str().and_then(|id| Uuid::parse_str(id).ok()).expect("a 201 carries the id");
            self.acknowledged.lock().unwrap().push(id);
        }
        Ok((status, body))
    }

    /// `POST /api/tasks/batch`, asserting 201; returns the ids.
    pub async fn create_batch(&self, tasks: Vec<Value>) -> Vec<Uuid> {
        let response = self
            .client
            .post(self.url("/api/tasks/batch"))
            .json(&json!({ "tasks": tasks }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "batch answered {status}: {body}");
        let ids: Vec<Uuid> = body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Uuid::parse_str(t["id"].as_str().unwrap()).unwrap())
            .collect();
        self.acknowledged.lock().unwrap().extend(&ids);
        ids
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        let response = self.client.get(self.url(path)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub fn acknowledged(&self) -> Vec<Uuid> {
        self.acknowledged.lock().unwrap().clone()
    }
}

/// A ledger task: one row in the ledger per run, sleeping `ms` in between.
pub fn ledger_task(name: &str, ms: u64, timeout_seconds: u32, max_retries: u32) -> Value {
    json!({
        "name": name,
        "type": "ledger",
        "payload": { "ms": ms },
        "timeout_seconds": timeout_seconds,
        "max_retries": max_retries,
        "backoff_seconds": 1,
    })
}

/// Counts by status, straight from the tasks table.
pub async fn status_counts(url: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = if url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
        sqlx::query_as("SELECT status::text, count(*)::int8 FROM tasks GROUP BY status")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url).await.unwrap();
        sqlx::query_as("SELECT status, count(*) FROM tasks GROUP BY status")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    rows.into_iter().collect()
}

/// Waits until nothing runs and nothing is queued: every task is terminal.
pub async fn settle(url: &str, deadline: Duration) -> HashMap<String, i64> {
    wait_for("every task to reach a terminal status", deadline, || async {
        let counts = status_counts(url).await;
        let busy = counts.get("queued").copied().unwrap_or(0) + counts.get("running").copied().unwrap_or(0);
        (busy == 0).then_some(counts)
    })
    .await
}

/// Runs the checker and fails the test on any violation; prints the summary.
pub async fn assert_invariants(test: &str, url: &str, acknowledged: Vec<Uuid>, settled: bool) -> Report {
    let options = Options { settled, acknowledged, ..Options::default() };
    let report = check::check(url, &options).await.expect("the checker reads the database");
    println!("{test}: check: {}", report.summary());
    figure(test, "lost", report.lost);
    figure(test, "invariant violations", report.violations.len());
    let shown: Vec<String> = report.violations.iter().take(20).map(ToString::to_string).collect();
    assert!(report.passed(), "{test}: {} violations:\n{}", report.violations.len(), shown.join("\n"));
    report
}

/// One history event, as the fault tests inspect it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub task_id: Uuid,
    pub event_type: String,
    pub worker_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Every history event of a PostgreSQL database, oldest first.
pub async fn pg_events(url: &str) -> Vec<Event> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_as("SELECT task_id, event_type::text, worker_id, created_at FROM task_events ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// How many runs of a task the ledger holds (PostgreSQL).
pub async fn pg_ledger_runs(url: &str, id: Uuid) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*)::int8 FROM taskq_ledger WHERE task_id = $1")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

/// The history of one task over HTTP, as event type names.
pub async fn history_types(api: &Api, id: Uuid) -> Vec<String> {
    let (status, body) = api.get(&format!("/api/tasks/{id}/history")).await.unwrap();
    assert_eq!(status, 200);
    body.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap().to_owned()).collect()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}
