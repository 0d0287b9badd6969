//! taskq processes started by the benchmark: servers for `http` and `stats`, workers
//! for `scale` and `memory`. Each gets its own port (workers serve probes on it), logs
//! only warnings to a file beside the pgbench logs, and is killed when dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgConnection;

/// How long a process may take to answer `/livez`.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub struct TaskqProcess {
    child: tokio::process::Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl TaskqProcess {
    /// Starts `taskq` with `ROLE=role` on the bench database, plus `env`.
    pub async fn spawn(
        bin: &Path,
        role: &str,
        database_url: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("taskq-bench-{}-{port}.log", std::process::id()));
        let mut command = tokio::process::Command::new(bin);
        command
            .arg("serve")
            // Away from any taskq.toml of the caller's directory: only the environment counts.
            .current_dir(std::env::temp_dir())
            .env("ROLE", role)
            .env("DATABASE_URL", database_url)
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", port.to_string())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env_remove("API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        let mut process = Self { child, port, log };
        process.wait_live().await?;
        Ok(process)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_live(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("taskq exited at start ({status}): {}", self.log_tail());
            }
            if super::http::get_status(self.port, "/livez").await.is_ok_and(|status| status == 200) {
                return Ok(());
            }
            anyhow::ensure!(started.elapsed() < START_PATIENCE, "taskq did not start: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory in bytes, from `/proc`.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("the process has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib * 1024)
    }

    /// Stops the process (SIGKILL: every benchmark waits for its work to be done first).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.log);
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// A port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `count` Dispatchers listen for wake-ups on the bench database, so that
/// a NOTIFY sent now reaches all of them.
pub async fn wait_listening(conn: &mut PgConnection, count: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(&mut *conn)
        .await?;
        if listening >= count {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < START_PATIENCE, "only {listening} of {count} workers listen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
