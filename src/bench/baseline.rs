//! The raw-SQL baselines: pgbench runs the scripts in `bench/` against the bench
//! database, on the same schema (tables, indexes, counter triggers) and in the same run
//! as taskq, but without taskq's engine and without history rows. A taskq figure divided
//! by its baseline says how much of what the database allows taskq gets.
//!
//! The scripts are compiled into the binary (so `taskq bench` works from anywhere) and
//! kept as files in `bench/` so they can be run by hand:
//! `pgbench -n -M prepared -f bench/claim_complete.sql -D batch=100 -c 2 -t 100 "$URL"`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The pgbench scripts, by file name.
const SCRIPTS: [(&str, &str); 6] = [
    ("claim.sql", include_str!("../../bench/claim.sql")),
    ("complete.sql", include_str!("../../bench/complete.sql")),
    ("claim_complete.sql", include_str!("../../bench/claim_complete.sql")),
    ("insert_one.sql", include_str!("../../bench/insert_one.sql")),
    ("insert_batch.sql", include_str!("../../bench/insert_batch.sql")),
    ("stats.sql", include_str!("../../bench/stats.sql")),
];

/// A pgbench script of `bench/`.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Claim `batch` tasks in one statement (no history).
    Claim,
    /// Claim `batch` tasks, then complete them: two commits (no history).
    ClaimComplete,
    /// One task per transaction (no history).
    InsertOne,
    /// `batch` tasks per statement (no history).
    InsertBatch,
    /// The four queries of the stats snapshot.
    Stats,
}

impl Script {
    fn file(self) -> &'static str {
        match self {
            Self::Claim => "claim.sql",
            Self::ClaimComplete => "claim_complete.sql",
            Self::InsertOne => "insert_one.sql",
            Self::InsertBatch => "insert_batch.sql",
            Self::Stats => "stats.sql",
        }
    }
}

/// How long a pgbench run goes on.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Transactions per client.
    Transactions(u32),
    /// Whole seconds.
    Seconds(u32),
}

/// What one pgbench run measured.
#[derive(Debug, Clone)]
pub struct PgbenchRun {
    /// Wall-clock time of the whole run, connections included.
    pub elapsed: Duration,
    /// Transactions per second, as pgbench reports it (connection time excluded).
    pub tps: f64,
    /// Every transaction's latency in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
}

/// Finds pgbench and runs the scripts.
pub struct Pgbench {
    binary: PathBuf,
    /// Scripts and per-transaction logs, removed with the runner.
    dir: PathBuf,
    runs: std::sync::atomic::AtomicU32,
}

impl Pgbench {
    /// pgbench on PATH, else in Debian's versioned PostgreSQL directories.
    pub fn find() -> anyhow::Result<Self> {
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).map(|dir| dir.join("pgbench")).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin/pgbench")).collect())
            .unwrap_or_default();
        debian.sort();
        debian.reverse(); // the newest version first
        let binary = on_path.into_iter().chain(debian).find(|p| p.is_file()).context("pgbench not found")?;

        let dir = std::env::temp_dir().join(format!("taskq-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for (name, text) in SCRIPTS {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(Self { binary, dir, runs: Default::default() })
    }

    /// Runs `script` with `clients` connections against `url`.
    pub async fn run(
        &self,
        url: &str,
        script: Script,
        batch: u32,
        clients: u32,
        limit: Limit,
    ) -> anyhow::Result<PgbenchRun> {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = self.dir.join(format!("log{n}"));
        let threads = clients.min(std::thread::available_parallelism().map_or(1, |n| n.get()) as u32).max(1);
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("-n") // no vacuum of pgbench's own tables: there are none
            .args(["-M", "prepared"]) // as sqlx does: parse once per connection
            .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
            .args(["-D", &format!("batch={batch}")])
            .arg("-f")
            .arg(self.dir.join(script.file()))
            .arg("--log")
            .arg(format!("--log-prefix={}", prefix.display()))
            .current_dir(&self.dir)
            .kill_on_drop(true);
        match limit {
            Limit::Transactions(t) => command.args(["-t", &t.to_string()]),
            Limit::Seconds(s) => command.args(["-T", &s.max(1).to_string()]),
        };
        command.arg(url);
        let started = Instant::now();
        let output = command.output().await.context("cannot run pgbench")?;
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let tps = stdout
            .lines()
            .find_map(|line| line.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
            .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
        let latencies_ms = read_logs(&self.dir, &format!("log{n}"))?;
        Ok(PgbenchRun { elapsed, tps, latencies_ms })
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Latencies from pgbench's per-transaction logs (`<prefix>.<pid>[.<thread>]`), whose
/// third field is the latency in microseconds. The logs are removed once read.
fn read_logs(dir: &Path, prefix: &str) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|name| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(micros) = line.split_whitespace().nth(2).and_then(|f| f.parse::<f64>().ok()) {
                latencies.push(micros / 1000.0);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(super::sorted(latencies))
}
