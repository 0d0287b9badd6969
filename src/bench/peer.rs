//! The peer: graphile-worker, run between taskq's runs in the same `taskq bench`, so
//! both see the same machine and its noise, and the report carries the ratio.
//!
//! The driver is the one in `../shared/peers/graphile-worker` (or a directory given
//! with `--peer`): its `run.sh w1|w2|w3` prints one JSON line. It is used only where
//! it is installed (its `setup.sh` puts graphile-worker under `$QBENCH_DIR`, by default
//! `/tmp/qbench`: `--peer-home`); elsewhere the peer columns stay empty. graphile-worker runs in its
//! tuned setting (32 concurrent jobs, a local queue, batched completions) against the
//! server the benchmark uses, in a database the driver recreates.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// What the peer column names.
pub const PEER: &str = "graphile-worker 0.18, tuned";

/// An installed peer driver.
pub struct Peer {
    run_sh: PathBuf,
    home: PathBuf,
    /// The server's URL without a database, as the driver takes it (`PGBASE`).
    pg_base: String,
}

impl Peer {
    /// The driver in `dir`, if it is there and graphile-worker is installed in `home`.
    pub fn find(dir: &Path, home: &Path, admin_url: &str) -> Option<Self> {
        let run_sh = dir.join("run.sh");
        let installed = home.join("graphile-worker/node_modules/graphile-worker").is_dir();
        let pg_base = admin_url.rsplit_once('/')?.0.to_owned();
        (run_sh.is_file() && installed).then(|| Self { run_sh, home: home.to_owned(), pg_base })
    }

    /// Runs one workload (`w1` drain, `w2` latency, `w3` single inserts) with `args`;
    /// returns its JSON line.
    pub async fn run(&self, workload: &str, args: &[String]) -> anyhow::Result<Value> {
        let output = tokio::process::Command::new("bash")
            .arg(&self.run_sh)
            .arg(workload)
            .args(["--setting", "tuned"])
            .args(args)
            .env("PGBASE", &self.pg_base)
            .env("QBENCH_DIR", &self.home)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.run_sh.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "{} {workload} failed: {}",
            self.run_sh.display(),
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default()
        );
        let line =
            stdout.lines().rev().find(|line| line.starts_with('{')).context("the peer printed no JSON")?;
        Ok(serde_json::from_str(line)?)
    }

    /// The number `key` of a peer's JSON line.
    pub fn number(line: &Value, key: &str) -> anyhow::Result<f64> {
        line[key].as_f64().with_context(|| format!("the peer's line has no {key}: {line}"))
    }
}
