//! Configuration in two phases: [`RawSettings`] is what the environment (and an
//! optional `taskq.toml` below it) says, as strings; [`Config::from_raw`] validates it
//! once into typed values. A bad value stops the process with a message naming the
//! variable; business code never parses strings.
//!
//! Durations accept a number of seconds (`30`, `0.5`) or a human duration (`500ms`,
//! `7d`). `DATABASE_URL` wins over the original `DB_*` variables; with neither, taskq
//! uses the embedded SQLite file `taskq.db`.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::RetryPolicy;

/// The default database when nothing is configured: an SQLite file beside the process.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://taskq.db";

/// What one process does (`ROLE`, or `--role` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API and the dashboard.
    Server,
    /// Claims and executes tasks (with a small ops listener for probes and metrics).
    Worker,
    /// Both, in one process: the zero-setup default.
    All,
}

impl Role {
    pub fn runs_server(self) -> bool {
        matches!(self, Self::Server | Self::All)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }
}

/// Settings as given, before validation. Every field is the lower-cased name of its
/// environment variable.
#[derive(Debug, Default, Deserialize)]
pub struct RawSettings {
    pub role: Option<String>,
    pub database_url: Option<String>,
    pub db_host: Option<String>,
    pub db_port: Option<String>,
    pub db_username: Option<String>,
    pub db_password: Option<String>,
    pub db_database: Option<String>,
    pub db_ssl_mode: Option<String>,
    pub db_max_connections: Option<String>,
    pub server_host: Option<String>,
    pub server_port: Option<String>,
    pub worker_concurrency: Option<String>,
    pub worker_queues: Option<String>,
    pub worker_prefetch: Option<String>,
    pub worker_poll_interval: Option<String>,
    pub worker_timeout: Option<String>,
    pub worker_id: Option<String>,
    pub retry_max_backoff: Option<String>,
    pub shutdown_grace: Option<String>,
    pub cancel_grace: Option<String>,
    pub retention_succeeded: Option<String>,
    pub retention_failed: Option<String>,
    pub stats_interval: Option<String>,
    pub api_token: Option<String>,
    pub cors_origins: Option<String>,
    pub log_format: Option<String>,
    pub demo_time_scale: Option<String>,
    /// `[queues.NAME]` tables of `taskq.toml`.
    #[serde(default)]
    pub queues: std::collections::BTreeMap<String, RawQueue>,
    /// `[types.NAME]` tables of `taskq.toml`.
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, RawType>,
    /// `[[schedules]]` tables of `taskq.toml`, as given.
    #[serde(default)]
    pub schedules: Vec<serde_json::Value>,
}

/// A `[queues.NAME]` table: settings applied to the queue at every start.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The queue's global limit; absent means none.
    pub max_running: Option<i64>,
    /// `{ max = 10, per = "1s" }`; absent means none.
    pub rate_limit: Option<crate::store::flow::RateLimitJson>,
    /// Tasks with one concurrency key that may run at once; absent means 1.
    pub max_per_key: Option<i64>,
}

/// A `[types.NAME]` table: a task type's flow settings, applied at every start.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawType {
    pub rate_limit: Option<crate::store::flow::RateLimitJson>,
    pub max_per_key: Option<i64>,
}

impl RawSettings {
    /// Reads `taskq.toml` (if present) and then the environment, which wins.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::path::Path::new("taskq.toml"), None)
    }

    /// Reads `file` (if present) and then `env` (the process environment when `None`).
    pub fn load_from(
        file: &std::path::Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let file = config::File::from(file).format(config::FileFormat::Toml).required(false);
        config::Config::builder()
            .add_source(file)
            .add_source(config::Environment::default().source(env))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError(format!("could not read the configuration: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// How a process logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub database_url: String,
    pub db_max_connections: u32,
    pub server_host: IpAddr,
    pub server_port: u16,
    pub worker: WorkerConfig,
    pub stats_interval: Duration,
    /// Bearer tokens accepted on `/api/*`; empty means no authentication.
    pub api_tokens: Vec<String>,
    /// Origins allowed by CORS; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// `None` picks by whether stderr is a terminal.
    pub log_format: Option<LogFormat>,
    pub demo_time_scale: f64,
    /// Settings from `taskq.toml`, by queue, applied at start (what a table leaves
    /// out is removed).
    pub queue_settings: std::collections::BTreeMap<String, crate::store::QueueChange>,
    /// Flow settings from `taskq.toml`, by task type, applied at start.
    pub type_settings: std::collections::BTreeMap<String, crate::store::TypeChange>,
    /// The `[[schedules]]` of `taskq.toml`. They are validated at start, where the task
    /// types are known, by the same rules as `POST /api/schedules`, and applied there.
    pub schedules: Vec<serde_json::Value>,
}

/// What a worker process needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    /// Executors of the `default` queue when `queues` is empty (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// The queues served and each one's executors (`WORKER_QUEUES`); empty for
    /// `default` with `concurrency` executors.
    pub queues: Vec<QueueSpec>,
    /// The most claimed tasks held beyond the idle executors (`WORKER_PREFETCH`); the
    /// Dispatcher holds fewer when its tasks are slow, and none when this is 0.
    pub prefetch: usize,
    pub poll_interval: Duration,
    /// `timeout_seconds` of tasks that do not set one (`WORKER_TIMEOUT`).
    pub default_timeout: Duration,
    /// Added to a task's timeout to make its lease, so a lease only runs out when the
    /// worker itself is gone (the executor enforces the timeout well before).
    pub lease_grace: Duration,
    pub retry: RetryPolicy,
    pub shutdown_grace: Duration,
    /// How long a running task's handler has to stop after its cancel was requested
    /// before the attempt is aborted (`CANCEL_GRACE`).
    pub cancel_grace: Duration,
    pub retention_succeeded: Duration,
    pub retention_failed: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: 5,
            queues: Vec::new(),
            prefetch: 500,
            poll_interval: Duration::from_secs(1),
            default_timeout: Duration::from_secs(30),
            lease_grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(25),
            cancel_grace: Duration::from_secs(10),
            retention_succeeded: Duration::from_secs(7 * 86_400),
            retention_failed: Duration::from_secs(30 * 86_400),
        }
    }
}

/// One queue a worker serves, with executors of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub concurrency: usize,
}

impl WorkerConfig {
    /// The queues this worker serves: `WORKER_QUEUES`, or `default` with
    /// `WORKER_CONCURRENCY` executors.
    pub fn served_queues(&self) -> Vec<QueueSpec> {
        if self.queues.is_empty() {
            vec![QueueSpec { name: crate::store::DEFAULT_QUEUE.to_owned(), concurrency: self.concurrency }]
        } else {
            self.queues.clone()
        }
    }

    /// The served queues as the worker reports them: `default=5,emails=20`.
    pub fn queues_label(&self) -> String {
        let specs = self.served_queues();
        specs.iter().map(|q| format!("{}={}", q.name, q.concurrency)).collect::<Vec<_>>().join(",")
    }
}

/// Parses `WORKER_QUEUES`: `name=executors` pairs separated by commas, each name
/// once, each count from 1 to 1000.
pub fn parse_worker_queues(text: &str) -> Result<Vec<QueueSpec>, ConfigError> {
    let invalid = |why: String| ConfigError(format!("WORKER_QUEUES: invalid value {text:?}: {why}"));
    let mut specs: Vec<QueueSpec> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, count) =
            entry.split_once('=').ok_or_else(|| invalid(format!("{entry:?} is not name=executors")))?;
        let name = name.trim();
        crate::store::check_queue_name(name).map_err(invalid)?;
        let concurrency =
            count.trim().parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                invalid(format!("executors of {name:?} must be a whole number from 1 to 1000"))
            })?;
        if specs.iter().any(|s| s.name == name) {
            return Err(invalid(format!("queue {name:?} is named twice")));
        }
        specs.push(QueueSpec { name: name.to_owned(), concurrency });
    }
    Ok(specs)
}

/// `hostname-pid`: unique per process on a machine, readable in the dashboard.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

impl Config {
    /// Loads and validates the configuration of this process.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_raw(RawSettings::load()?)
    }

    pub fn from_raw(raw: RawSettings) -> Result<Self, ConfigError> {
        let defaults = WorkerConfig::default();
        let database_url = database_url(&raw)?;
        let worker = WorkerConfig {
            worker_id: match raw.worker_id {
                Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
                _ => defaults.worker_id,
            },
            concurrency: number("WORKER_CONCURRENCY", raw.worker_concurrency, 5, 1..=1000)?,
            queues: parse_worker_queues(raw.worker_queues.as_deref().unwrap_or_default())?,
            prefetch: number("WORKER_PREFETCH", raw.worker_prefetch, defaults.prefetch, 0..=10_000)?,
            poll_interval: duration(
                "WORKER_POLL_INTERVAL",
                raw.worker_poll_interval,
                defaults.poll_interval,
            )?,
            default_timeout: duration("WORKER_TIMEOUT", raw.worker_timeout, defaults.default_timeout)?,
            lease_grace: defaults.lease_grace,
            retry: RetryPolicy {
                max_backoff: duration(
                    "RETRY_MAX_BACKOFF",
                    raw.retry_max_backoff,
                    defaults.retry.max_backoff,
                )?,
            },
            shutdown_grace: duration("SHUTDOWN_GRACE", raw.shutdown_grace, defaults.shutdown_grace)?,
            cancel_grace: duration("CANCEL_GRACE", raw.cancel_grace, defaults.cancel_grace)?,
            retention_succeeded: duration(
                "RETENTION_SUCCEEDED",
                raw.retention_succeeded,
                defaults.retention_succeeded,
            )?,
            retention_failed: duration("RETENTION_FAILED", raw.retention_failed, defaults.retention_failed)?,
        };
        if worker.poll_interval < Duration::from_millis(10) {
            return Err(ConfigError("WORKER_POLL_INTERVAL must be at least 10ms".into()));
        }
        if !(1..=86_400).contains(&worker.default_timeout.as_secs()) {
            return Err(ConfigError("WORKER_TIMEOUT must be from 1s to 1 day".into()));
        }
        if worker.retry.max_backoff < crate::backoff::MIN_DELAY {
            return Err(ConfigError("RETRY_MAX_BACKOFF must be at least 1s".into()));
        }

        let role = match raw.role.as_deref().map(str::trim).map(str::to_lowercase).as_deref() {
            None | Some("") | Some("all") => Role::All,
            Some("server") => Role::Server,
            Some("worker") => Role::Worker,
            Some(other) => {
                return Err(ConfigError(format!(
                    "ROLE: invalid value {other:?}: expected server, worker or all"
                )));
            }
        };
        let log_format = match raw.log_format.as_deref().map(str::to_lowercase).as_deref() {
            None | Some("") => None,
            Some("json") => Some(LogFormat::Json),
            Some("pretty") | Some("text") => Some(LogFormat::Pretty),
            Some(other) => {
                return Err(ConfigError(format!(
                    "LOG_FORMAT: invalid value {other:?}: expected json or pretty"
                )));
            }
        };
        let server_host = match raw.server_host.as_deref().map(str::trim) {
            None | Some("") => IpAddr::from([127, 0, 0, 1]),
            Some(host) => host.parse().map_err(|_| {
                ConfigError(format!(
                    "SERVER_HOST: invalid value {host:?}: expected an IP address such as 0.0.0.0"
                ))
            })?,
        };
        let demo_time_scale = match raw.demo_time_scale {
            None => 1.0,
            Some(text) => {
                text.trim().parse::<f64>().ok().filter(|s| (0.0..=100.0).contains(s)).ok_or_else(|| {
                    ConfigError(format!(
                        "DEMO_TIME_SCALE: invalid value {text:?}: expected a number from 0 to 100"
                    ))
                })?
            }
        };

        Ok(Self {
            role,
            database_url,
            db_max_connections: number("DB_MAX_CONNECTIONS", raw.db_max_connections, 10, 1..=1000)?,
            server_host,
            server_port: number("SERVER_PORT", raw.server_port, 8080, 0..=65535)?,
            worker,
            stats_interval: duration("STATS_INTERVAL", raw.stats_interval, Duration::from_secs(1))?
                .max(Duration::from_millis(100)),
            api_tokens: list(raw.api_token.as_deref()),
            cors_origins: list(raw.cors_origins.as_deref()),
            log_format,
            demo_time_scale,
            queue_settings: queue_settings(&raw.queues)?,
            type_settings: type_settings(&raw.types)?,
            schedules: raw.schedules,
        })
    }
}

/// The `[queues.NAME]` tables, checked: valid names, limits in their ranges.
fn queue_settings(
    queues: &std::collections::BTreeMap<String, RawQueue>,
) -> Result<std::collections::BTreeMap<String, crate::store::QueueChange>, ConfigError> {
    queues
        .iter()
        .map(|(name, queue)| {
            let table = format!("[queues.{name}]");
            crate::store::check_queue_name(name).map_err(|why| ConfigError(format!("{table}: {why}")))?;
            let change = crate::store::QueueChange {
                paused: None,
                max_running: Some(in_limit_range(&table, "max_running", queue.max_running)?),
                rate_limit: Some(rate_limit(&table, queue.rate_limit.clone())?),
                max_per_key: Some(in_limit_range(&table, "max_per_key", queue.max_per_key)?),
            };
            Ok((name.clone(), change))
        })
        .collect()
}

/// The `[types.NAME]` tables, checked.
fn type_settings(
    types: &std::collections::BTreeMap<String, RawType>,
) -> Result<std::collections::BTreeMap<String, crate::store::TypeChange>, ConfigError> {
    types
        .iter()
        .map(|(name, settings)| {
            let table = format!("[types.{name}]");
            let change = crate::store::TypeChange {
                rate_limit: Some(rate_limit(&table, settings.rate_limit.clone())?),
                max_per_key: Some(in_limit_range(&table, "max_per_key", settings.max_per_key)?),
            };
            Ok((name.to_lowercase(), change))
        })
        .collect()
}

/// A count limit of a table (`max_running`, `max_per_key`): from 1 to 1,000,000.
fn in_limit_range(table: &str, field: &str, value: Option<i64>) -> Result<Option<i32>, ConfigError> {
    value
        .map(|n| {
            i32::try_from(n)
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| ConfigError(format!("{table} {field}: {n} is not from 1 to 1000000")))
        })
        .transpose()
}

fn rate_limit(
    table: &str,
    raw: Option<crate::store::flow::RateLimitJson>,
) -> Result<Option<crate::store::flow::RateLimit>, ConfigError> {
    raw.map(|raw| {
        crate::store::flow::RateLimit::try_from(raw).map_err(|why| ConfigError(format!("{table} {why}")))
    })
    .transpose()
}

/// `DATABASE_URL`, else one built from the original `DB_*` variables, else SQLite.
fn database_url(raw: &RawSettings) -> Result<String, ConfigError> {
    if let Some(url) = raw.database_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        return Ok(url.to_owned());
    }
    let Some(host) = raw.db_host.as_deref().filter(|h| !h.is_empty()) else {
        return Ok(DEFAULT_DATABASE_URL.to_owned());
    };
    let port: u16 = number("DB_PORT", raw.db_port.clone(), 5432, 1..=65535)?;
    let user = raw.db_username.as_deref().unwrap_or("admin");
    let password = raw.db_password.as_deref().unwrap_or("admin");
    let database = raw.db_database.as_deref().unwrap_or("tasks");
    let ssl_mode = raw.db_ssl_mode.as_deref().unwrap_or("prefer");
    if !matches!(ssl_mode, "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full") {
        return Err(ConfigError(format!(
            "DB_SSL_MODE: invalid value {ssl_mode:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
        )));
    }
    // The parts go to sqlx as its own connect parameters (`host`, `port`, `user`,
    // `password`, `dbname`, `sslmode`), so none of them needs URL syntax: any
    // character of a password or a database name arrives as given.
    let mut url = url::Url::parse("postgres://").expect("a valid base URL");
    url.query_pairs_mut()
        .append_pair("host", host)
        .append_pair("port", &port.to_string())
        .append_pair("user", user)
        .append_pair("password", password)
        .append_pair("dbname", database)
        .append_pair("sslmode", ssl_mode);
    Ok(url.into())
}

fn number<T>(
    name: &str,
    value: Option<String>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    text.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        ConfigError(format!(
            "{name}: invalid value {text:?}: expected a whole number from {} to {}",
            range.start(),
            range.end()
        ))
    })
}

fn duration(name: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(text) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Some(Duration::from_secs_f64(seconds)),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok(),
    };
    parsed.ok_or_else(|| {
        ConfigError(format!(
            "{name}: invalid value {text:?}: expected seconds (e.g. 30) or a duration (e.g. 500ms, 5m, 7d)"
        ))
    })
}

fn list(value: Option<&str>) -> Vec<String> {
    value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_nothing_configured() {
        let config = Config::from_raw(RawSettings::default()).unwrap();
        assert_eq!(config.role, Role::All);
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.server_port, 8080);
        assert_eq!(config.worker.concurrency, 5);
        assert_eq!(config.worker.poll_interval, Duration::from_secs(1));
        assert_eq!(config.worker.default_timeout, Duration::from_secs(30));
        assert_eq!(config.worker.shutdown_grace, Duration::from_secs(25));
        assert_eq!(config.worker.cancel_grace, Duration::from_secs(10));
        assert!(config.api_tokens.is_empty());
    }

    #[test]
    fn database_url_wins_over_the_original_variables() {
        let raw = RawSettings {
            database_url: Some("postgres://a@b/c".into()),
            db_host: Some("elsewhere".into()),
            ..Default::default()
        };
        assert_eq!(Config::from_raw(raw).unwrap().database_url, "postgres://a@b/c");
    }

    #[test]
    fn original_variables_reach_sqlx_as_given() {
        use std::str::FromStr;

        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let awkward = [
            ("db", "user", "p@ss word", "tasks"),
            ("10.0.0.7", "me@corp:x/y", "%41&b=c+d?#/:é", "my db/with?odd#name%20"),
        ];
        for (host, user, password, database) in awkward {
            let raw = RawSettings {
                db_host: Some(host.into()),
                db_port: Some("5433".into()),
                db_username: Some(user.into()),
                db_password: Some(password.into()),
                db_database: Some(database.into()),
                db_ssl_mode: Some("disable".into()),
                ..Default::default()
            };
            let url = Config::from_raw(raw).unwrap().database_url;
            let parsed = PgConnectOptions::from_str(&url).unwrap();
            let expected = PgConnectOptions::new_without_pgpass()
                .host(host)
                .port(5433)
                .username(user)
                .password(password)
                .database(database)
                .ssl_mode(PgSslMode::Disable);
            // Debug shows every setting, the password included.
            assert_eq!(format!("{parsed:?}"), format!("{expected:?}"), "{url}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            (
                RawSettings { worker_concurrency: Some("zero".into()), ..Default::default() },
                "WORKER_CONCURRENCY",
            ),
            (
                RawSettings { worker_concurrency: Some("0".into()), ..Default::default() },
                "WORKER_CONCURRENCY",
            ),
            (RawSettings { role: Some("boss".into()), ..Default::default() }, "ROLE"),
            (
                RawSettings { worker_poll_interval: Some("soon".into()), ..Default::default() },
                "WORKER_POLL_INTERVAL",
            ),
            (RawSettings { server_port: Some("70000".into()), ..Default::default() }, "SERVER_PORT"),
            (RawSettings { server_host: Some("example.com".into()), ..Default::default() }, "SERVER_HOST"),
        ];
        for (raw, name) in cases {
            let error = Config::from_raw(raw).unwrap_err().to_string();
            assert!(error.contains(name), "{error} does not name {name}");
        }
    }

    #[test]
    fn a_taskq_toml_sets_keys_and_the_environment_wins() {
        let file = std::env::temp_dir().join(format!("taskq-config-{}.toml", std::process::id()));
        std::fs::write(&file, "worker_concurrency = 7\nrole = \"worker\"\n").unwrap();
        let env = std::collections::HashMap::from([("ROLE".to_owned(), "server".to_owned())]);
        let config = Config::from_raw(RawSettings::load_from(&file, Some(env)).unwrap()).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(config.worker.concurrency, 7);
        assert_eq!(config.role, Role::Server);
    }

    /// Loads `toml` as taskq.toml with `env` as the environment.
    fn from_file(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = std::env::temp_dir().join(format!("taskq-config-{}.toml", uuid::Uuid::now_v7().simple()));
        std::fs::write(&file, toml).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let loaded = RawSettings::load_from(&file, Some(env));
        std::fs::remove_file(&file).unwrap();
        Config::from_raw(loaded?)
    }

    #[test]
    fn worker_queues_give_each_queue_its_executors_and_default_serves_default() {
        let config = from_file("", &[("WORKER_QUEUES", "default=5, emails=20,reports=1")]).unwrap();
        let served: Vec<(String, usize)> =
            config.worker.served_queues().into_iter().map(|q| (q.name, q.concurrency)).collect();
        let expected = [("default", 5), ("emails", 20), ("reports", 1)].map(|(n, c)| (n.to_owned(), c));
        assert_eq!(served, expected);
        assert_eq!(config.worker.queues_label(), "default=5,emails=20,reports=1");

        let plain = from_file("", &[("WORKER_CONCURRENCY", "7")]).unwrap();
        assert_eq!(plain.worker.queues_label(), "default=7");
    }

    #[test]
    fn bad_worker_queues_name_the_variable_and_the_problem() {
        for (value, problem) in [
            ("emails", "is not name=executors"),
            ("emails=0", "from 1 to 1000"),
            ("emails=x", "from 1 to 1000"),
            ("Emails=2", "queue name"),
            ("a=1,a=2", "named twice"),
        ] {
            let error = from_file("", &[("WORKER_QUEUES", value)]).unwrap_err().to_string();
            assert!(error.starts_with("WORKER_QUEUES") && error.contains(problem), "{value}: {error}");
        }
    }

    #[test]
    fn queue_settings_come_from_queues_tables_of_the_file() {
        let file = "[queues.emails]\nmax_running = 10\nrate_limit = { max = 5, per = \"1s\" }\nmax_per_key = 2\n\n\
                    [queues.reports]\n";
        let config = from_file(file, &[]).unwrap();
        let emails = config.queue_settings["emails"];
        assert_eq!(emails.max_running, Some(Some(10)));
        assert_eq!(emails.rate_limit, Some(Some(crate::store::flow::RateLimit { max: 5, per_ms: 1000 })));
        assert_eq!(emails.max_per_key, Some(Some(2)));
        let reports = config.queue_settings["reports"];
        assert_eq!(
            (reports.max_running, reports.rate_limit, reports.max_per_key),
            (Some(None), Some(None), Some(None)),
            "a table without a setting removes it"
        );
        for (toml, problem) in [
            ("[queues.emails]\nmax_running = 0\n", "max_running"),
            ("[queues.emails]\nmax_per_key = 0\n", "[queues.emails] max_per_key: 0 is not from 1"),
            ("[queues.emails]\nrate_limit = { max = 5, per = \"soon\" }\n", "rate_limit.per"),
            (
                "[types.send_email]\nrate_limit = { max = 0, per = \"1s\" }\n",
                "[types.send_email] rate_limit.max",
            ),
            ("[queues.emails]\nmax_runing = 3\n", "max_runing"),
            ("[queues.\"Bad Name\"]\nmax_running = 3\n", "queue name"),
        ] {
            let error = from_file(toml, &[]).unwrap_err().to_string();
            assert!(error.contains(problem), "{toml}: {error}");
        }
    }

    #[test]
    fn schedules_come_from_schedules_tables_of_the_file_as_given() {
        let toml = r#"
[[schedules]]
name = "nightly"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
catch_up = "all"
[schedules.task]
type = "noop"
name = "Nightly report"
payload = { ReportId = 7 }

[[schedules]]
name = "often"
cron = "* * * * * *"
task = { type = "noop", name = "tick" }
"#;
        let config = from_file(toml, &[]).unwrap();
        assert_eq!(config.schedules.len(), 2);
        let nightly = &config.schedules[0];
        assert_eq!(nightly["timezone"], "Europe/Berlin");
        assert_eq!(nightly["task"]["payload"]["ReportId"], 7, "keys keep their case: {nightly}");
        assert_eq!(config.schedules[1]["task"]["name"], "tick");
    }

    #[test]
    fn durations_take_seconds_or_human_units_and_tokens_a_list() {
        let raw = RawSettings {
            worker_poll_interval: Some("250ms".into()),
            retention_succeeded: Some("2d".into()),
            shutdown_grace: Some("1.5".into()),
            cancel_grace: Some("250ms".into()),
            api_token: Some("new, old ,".into()),
            ..Default::default()
        };
        let config = Config::from_raw(raw).unwrap();
        assert_eq!(config.worker.poll_interval, Duration::from_millis(250));
        assert_eq!(config.worker.retention_succeeded, Duration::from_secs(2 * 86_400));
        assert_eq!(config.worker.shutdown_grace, Duration::from_millis(1500));
        assert_eq!(config.worker.cancel_grace, Duration::from_millis(250));
        assert_eq!(config.api_tokens, ["new", "old"]);
    }
}
