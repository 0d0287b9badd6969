//! `taskq bench`: measures taskq against a PostgreSQL, and the same work done by raw
//! SQL in the same run, so every figure can be read as a ratio to what the database
//! itself allows on this machine.
//!
//! The benchmark creates a database of its own next to the one `DATABASE_URL` names
//! (`taskq_bench_<pid>_<n>`), migrates it, and drops it at the end, whatever happened
//! (Ctrl-C included). Nothing in the named database is read or changed.
//!
//! # Scenarios
//!
//! | scenario | what it does | module |
//! |---|---|---|
//! | `drain` | bulk-inserts N no-op tasks, then times a worker until all are terminal | [`drain`] |
//! | `latency` | an idle worker; one insert every 50 ms; commit → handler start | [`latency`] |
//! | `enqueue` | one task per transaction from one and from many connections; batches | [`enqueue`] |
//! | `http` | `POST /api/tasks` from many keep-alive connections to a server process | [`http`] |
//! | `stats` | `GET /api/stats` with a million tasks in the table | [`http`] |
//! | `search` | the requests of every dashboard view and filter, with a million tasks in the table | [`search`] |
//! | `scale` | drain with 1, 2 and 4 worker processes | [`drain`] |
//! | `queues` | drain spread over four queues, one under a global limit | [`queues`] |
//! | `ratelimit` | a backlog drained by four worker processes under a rate limit of 100/s | [`ratelimit`] |
//! | `schedules` | a scheduler leading 1,000 schedules: statements/s with none due, tick lag | [`schedules`] |
//! | `memory` | resident memory of a worker process with 100 idle executors | [`drain`] |
//!
//! Each scenario runs `--runs` times (three by default); each figure is reported as
//! the median with the range of its runs. Wherever a raw-SQL equivalent exists, the
//! raw-SQL run ([`baseline`], pgbench with the scripts in `bench/`) is interleaved with
//! the taskq run, so both see the same machine noise. So is the peer queue
//! ([`peer`], graphile-worker) in `drain`, `latency` and `enqueue`, where it is
//! installed: its figures and taskq's ratio to them fill the report's peer columns.
//!
//! Processes: `http`, `stats`, `scale`, `ratelimit` and `memory` start the `taskq` binary itself
//! (`--taskq-bin`, by default this executable) as server or worker processes, so the
//! load generator and the measured process do not share a runtime.

mod baseline;
mod drain;
mod enqueue;
mod http;
mod latency;
mod peer;
mod process;
mod queues;
mod ratelimit;
mod report;
mod schedules;
mod search;

pub use process::wait_listening;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::store::{self, ConnectOptions, Store};
pub use report::{Figure, Goal, Report, Unit};

/// `taskq bench`: the benchmark suite (see `docs/benchmarks.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, in this order: drain, latency, enqueue, http, stats, search,
    /// scale, queues, ratelimit, schedules, memory (default: all).
    #[arg(value_name = "SCENARIO")]
    pub scenarios: Vec<Scenario>,
    /// A PostgreSQL URL whose role may create databases; the benchmark runs in a
    /// database of its own beside it.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Runs of every scenario; figures are the median and range of the runs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the raw-SQL baselines (they need `pgbench` on PATH).
    #[arg(long)]
    pub no_baseline: bool,
    /// The taskq binary started as server and worker processes (default: this one).
    #[arg(long)]
    pub taskq_bin: Option<PathBuf>,
    /// The peer's driver (`run.sh w1|w2|w3`), run between taskq's runs of drain,
    /// latency and enqueue where graphile-worker is installed (its `setup.sh`).
    #[arg(long, value_name = "DIR", default_value = "../shared/peers/graphile-worker")]
    pub peer: PathBuf,
    /// Where the peer's `setup.sh` installed graphile-worker and Node.
    #[arg(long, value_name = "DIR", env = "QBENCH_DIR", default_value = "/tmp/qbench")]
    pub peer_home: PathBuf,
    /// Skip the peer even where it is installed.
    #[arg(long)]
    pub no_peer: bool,

    /// drain: tasks inserted before the worker starts.
    #[arg(long, default_value_t = 20_000)]
    pub drain_tasks: u32,
    /// drain: worker concurrencies to measure, each a separate figure.
    #[arg(long, value_delimiter = ',', default_values_t = [5, 100])]
    pub concurrency: Vec<u32>,
    /// drain, scale and enqueue: tasks per insert statement when inserting in bulk.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,

    /// latency: tasks inserted one at a time into an idle worker.
    #[arg(long, default_value_t = 100)]
    pub latency_tasks: u32,
    /// latency: pause between two inserts.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub latency_interval: Duration,

    /// enqueue: single-task inserts measured per case.
    #[arg(long, default_value_t = 2_000)]
    pub enqueue_tasks: u32,
    /// enqueue: connections of the "many connections" case.
    #[arg(long, default_value_t = 16)]
    pub enqueue_connections: u32,
    /// enqueue: tasks inserted by the batch case.
    #[arg(long, default_value_t = 50_000)]
    pub enqueue_batch_tasks: u32,

    /// http: concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub http_connections: u32,
    /// http: measured duration of each run (after a warm-up of a fifth of it).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_duration: Duration,

    /// stats: tasks in the table while /api/stats is measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub stats_tasks: u32,
    /// stats: sequential requests measured per run.
    #[arg(long, default_value_t = 200)]
    pub stats_requests: u32,

    /// search: tasks in the table while the dashboard's requests are timed.
    #[arg(long, default_value_t = 1_000_000)]
    pub search_tasks: u32,
    /// search: sequential requests timed per view or filter, per run.
    #[arg(long, default_value_t = 5)]
    pub search_requests: u32,

    /// scale: worker process counts to compare.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    pub scale_workers: Vec<u32>,
    /// scale: executors per worker process.
    #[arg(long, default_value_t = 100)]
    pub scale_concurrency: u32,
    /// scale: tasks drained per run.
    #[arg(long, default_value_t = 20_000)]
    pub scale_tasks: u32,

    /// ratelimit: tasks enqueued before the worker processes start.
    #[arg(long, default_value_t = 2_000)]
    pub ratelimit_tasks: u32,
    /// ratelimit: the queue's rate limit, starts per --ratelimit-per.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ratelimit_max: u32,
    /// ratelimit: the window of the rate limit (1ms to 1 day).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ratelimit_per: Duration,
    /// ratelimit: worker processes draining the limited queue.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub ratelimit_workers: u32,
    /// ratelimit: executors per worker process.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub ratelimit_concurrency: u32,

    /// schedules: how long the leader idles over schedules none of which is due.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub schedules_idle: Duration,
    /// schedules: how long some schedules then tick every second.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub schedules_ticking: Duration,
    /// schedules: how many of the 1,000 schedules tick every second.
    #[arg(long, default_value_t = 100)]
    pub schedules_every_second: usize,

    /// memory: executors of the idle worker process whose memory is measured.
    #[arg(long, default_value_t = 100)]
    pub memory_concurrency: u32,
    /// memory: how long the worker idles before its memory is read.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub memory_settle: Duration,
}

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Drain,
    Latency,
    Enqueue,
    Http,
    Stats,
    Search,
    Scale,
    Queues,
    Ratelimit,
    Schedules,
    Memory,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Self::Drain,
        Self::Latency,
        Self::Enqueue,
        Self::Http,
        Self::Stats,
        Self::Search,
        Self::Scale,
        Self::Queues,
        Self::Ratelimit,
        Self::Schedules,
        Self::Memory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Latency => "latency",
            Self::Enqueue => "enqueue",
            Self::Http => "http",
            Self::Stats => "stats",
            Self::Search => "search",
            Self::Scale => "scale",
            Self::Queues => "queues",
            Self::Ratelimit => "ratelimit",
            Self::Schedules => "schedules",
            Self::Memory => "memory",
        }
    }
}

/// What every scenario needs: the database, the binary, the settings, the progress
/// bar and the report it adds its measurements to.
pub(crate) struct Bench {
    pub args: BenchArgs,
    pub db: BenchDb,
    pub taskq_bin: PathBuf,
    /// The raw-SQL runner, absent with `--no-baseline`.
    pub pgbench: Option<baseline::Pgbench>,
    /// The peer queue, where it is installed and not `--no-peer`.
    pub peer: Option<peer::Peer>,
    pub progress: ProgressBar,
    pub report: Report,
}

impl Bench {
    /// Shows what runs now, above the bar on a terminal and in the log elsewhere.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        if self.progress.is_hidden() {
            tracing::debug!(step = %message, "bench");
        }
        self.progress.set_message(message);
    }

    /// A store on the bench database, as a taskq process would open it.
    pub async fn store(&self, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
        let mut options = ConnectOptions::new(&self.db.url);
        options.max_connections = max_connections;
        options.acquire_timeout = Duration::from_secs(30);
        Ok(store::connect(&options).await?)
    }
}

/// Runs the requested scenarios and prints the report (a table, or JSON with `--json`).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (json, output) = (args.json, args.output.clone());
    let report = measure(args).await?;
    if let Some(path) = output {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Runs the requested scenarios and returns what they measured.
pub async fn measure(args: BenchArgs) -> anyhow::Result<Report> {
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL.into_iter().filter(|s| args.scenarios.contains(s)).collect()
    };
    let taskq_bin = match &args.taskq_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the taskq executable")?,
    };
    let pgbench = if args.no_baseline {
        None
    } else {
        Some(baseline::Pgbench::find().context(
            "the raw-SQL baselines need pgbench on PATH (Debian: postgresql-client); or pass --no-baseline",
        )?)
    };

    let db = BenchDb::create(&args.database_url).await?;
    let progress = progress_bar(scenarios.len() as u64 * u64::from(args.runs));
    let report = Report { runs: args.runs, ..Report::default() };
    let peer =
        (!args.no_peer).then(|| peer::Peer::find(&args.peer, &args.peer_home, &args.database_url)).flatten();
    let mut bench = Bench { args, db, taskq_bin, pgbench, peer, progress, report };
    bench.report.machine = report::Machine::describe(&bench.db).await.ok();

    // Ctrl-C must not leave the database behind.
    let outcome = tokio::select! {
        outcome = run_scenarios(&mut bench, &scenarios) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    bench.progress.finish_and_clear();
    let dropped = bench.db.drop().await;
    outcome?;
    dropped?;
    Ok(bench.report)
}

async fn run_scenarios(bench: &mut Bench, scenarios: &[Scenario]) -> anyhow::Result<()> {
    for &scenario in scenarios {
        let result = match scenario {
            Scenario::Drain => drain::drain(bench).await,
            Scenario::Latency => latency::latency(bench).await,
            Scenario::Enqueue => enqueue::enqueue(bench).await,
            Scenario::Http => http::post_tasks(bench).await,
            Scenario::Stats => http::stats(bench).await,
            Scenario::Search => search::search(bench).await,
            Scenario::Scale => drain::scale(bench).await,
            Scenario::Queues => queues::queues(bench).await,
            Scenario::Ratelimit => ratelimit::ratelimit(bench).await,
            Scenario::Schedules => schedules::schedules(bench).await,
            Scenario::Memory => drain::memory(bench).await,
        };
        result.with_context(|| format!("scenario {} failed", scenario.name()))?;
    }
    Ok(())
}

fn progress_bar(steps: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(steps), target);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The database the benchmark creates for itself and drops at the end.
pub(crate) struct BenchDb {
    /// The URL of the bench database.
    pub url: String,
    /// The URL the user gave, used to create and drop the bench database.
    admin_url: String,
    name: String,
}

impl BenchDb {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            admin_url.starts_with("postgres://") || admin_url.starts_with("postgresql://"),
            "taskq bench measures PostgreSQL: set DATABASE_URL to a postgres:// URL"
        );
        let options = PgConnectOptions::from_str(admin_url).context("DATABASE_URL is not a valid URL")?;
        let mut admin = PgConnection::connect_with(&options)
            .await
            .with_context(|| format!("cannot connect to {}", redact(admin_url)))?;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "taskq_bench_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .context("cannot create the bench database (the role needs CREATEDB)")?;
        let _ = admin.close().await;
        let url = with_database(admin_url, &name)?;
        let db = Self { url, admin_url: admin_url.to_owned(), name };
        let migrated = async {
            let store = store::connect(&ConnectOptions::new(&db.url)).await?;
            store.migrate().await?;
            store.close().await;
            anyhow::Ok(())
        };
        if let Err(error) = migrated.await {
            let _ = db.drop().await;
            return Err(error.context("cannot migrate the bench database"));
        }
        Ok(db)
    }

    /// A plain connection to the bench database, for set-up and observation.
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }

    /// Empties every table, so each run starts from the same state, and checkpoints so
    /// that the runs do not pay for each other's dirty pages.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        sqlx::query(
            "TRUNCATE tasks, task_history, task_counts, task_throughput, workers, schedules, \
             schedule_history, leaders, leader_terms",
        )
        .execute(&mut conn)
        .await?;
        // CHECKPOINT needs superuser or pg_checkpoint; without it the runs are only noisier.
        let _ = sqlx::query("CHECKPOINT").execute(&mut conn).await;
        let _ = conn.close().await;
        Ok(())
    }

    async fn drop(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .context("cannot drop the bench database")?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// The URL with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map(|i| i + 3).context("DATABASE_URL has no scheme")?;
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Order statistics of a sample, in its own unit.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest value with at least p% of the sample at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_database_replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b").unwrap(), "postgres://h/b");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sample = sorted((1..=100).map(f64::from).collect());
        assert_eq!(percentile(&sample, 50.0), 50.0);
        assert_eq!(percentile(&sample, 99.0), 99.0);
        assert_eq!(percentile(&sample, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
