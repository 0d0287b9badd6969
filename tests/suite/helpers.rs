//! Shared test set-up: a fresh database per test on either backend, a running app on
//! port 0, and waiting for conditions with a deadline instead of sleeping.

use std::future::Future;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use serde_json::{Value, json};
use taskq::app::{Application, ShutdownHandle};
use taskq::config::{Config, RawSettings, Role};
use taskq::handlers::{Handler, HandlerResult, Registry, TaskContext};
use taskq::store::{self, Backend, ConnectOptions, HistoryEvent, NewTask, Store, Task, TaskStatus};
use uuid::Uuid;

/// The server tests create their databases on: `TASKQ_TEST_PG` or the local default.
pub fn pg_admin_url() -> String {
    std::env::var("TASKQ_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Held by every test that keeps live-stream clients: their ticks count in the
/// process-wide `taskq_stats_queries_total` that
/// `a_thousand_stream_clients_cost_one_stats_query_per_tick` measures.
pub static STREAM_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest any request of a test may take, a live stream's included (they are read
/// for at most 20 s): a server that stops answering fails the test instead of hanging
/// the suite.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a test app may take to shut down (its worker's grace period is 2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            taskq::telemetry::init(Some(taskq::config::LogFormat::Pretty));
        }
    });
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        init_logs();
        let name = format!("taskq_test_{}", Uuid::now_v7().simple());
        let url = match backend {
            Backend::Postgres => {
                let admin = pg_admin_url();
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required by the tests: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
                format!("{base}/{name}")
            }
            Backend::Sqlite => {
                format!("sqlite://{}", std::env::temp_dir().join(format!("{name}.db")).display())
            }
        };
        Self { backend, url, name }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = store::connect(&ConnectOptions::new(&self.url)).await.unwrap();
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.backend {
            Backend::Postgres => {
                let (admin, name) = (pg_admin_url(), self.name.clone());
                // Drop runs outside any runtime guarantee: use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                        {
                            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                        }
                    });
                })
                .join();
            }
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://").to_owned();
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    crate::wait::poll(what, deadline, Duration::from_millis(20), check).await
}

/// Waits until the task reaches `status`.
pub async fn wait_for_status(store: &dyn Store, id: Uuid, status: TaskStatus, deadline: Duration) -> Task {
    wait_for(&format!("task {id} to be {status:?}"), deadline, || async move {
        store.get_task(id).await.unwrap().filter(|t| t.status == status)
    })
    .await
}

pub fn event_types(history: &[HistoryEvent]) -> Vec<String> {
    history.iter().map(|e| serde_json::to_value(e.event_type).unwrap().as_str().unwrap().to_owned()).collect()
}

/// Settings for fast tests: quick polls, short leases and grace periods.
pub fn test_config(url: &str) -> Config {
    let mut config = Config::from_raw(RawSettings::default()).unwrap();
    config.database_url = url.to_owned();
    config.server_port = 0;
    config.worker.poll_interval = Duration::from_millis(100);
    config.worker.lease_grace = Duration::from_secs(1);
    config.worker.shutdown_grace = Duration::from_secs(2);
    config.worker.worker_id = format!("test-worker-{}", Uuid::now_v7().simple());
    config.stats_interval = Duration::from_millis(200);
    config.demo_time_scale = 0.01;
    config
}

pub fn noop(name: &str) -> NewTask {
    let mut task = NewTask::new("noop", json!({}));
    task.name = name.to_owned();
    task
}

/// One run of the recording handler.
#[derive(Debug, Clone)]
pub struct Run {
    pub task_id: Uuid,
    pub name: String,
}

/// A handler that records every run, tracks how many run at once per worker, and
/// sleeps `{"ms": n}` if asked: makes double execution and over-claiming visible.
#[derive(Clone, Default)]
pub struct Recorder {
    pub runs: Arc<Mutex<Vec<Run>>>,
    running: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    pub max_running: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl Recorder {
    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_builtins(0.01);
        registry.register("record", self.clone());
        registry
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn run(&self, task: TaskContext) -> HandlerResult {
        let worker = task.worker_id.to_string();
        {
            let mut running = self.running.lock().unwrap();
            let now = running.entry(worker.clone()).or_default();
            *now += 1;
            let mut max = self.max_running.lock().unwrap();
            let peak = max.entry(worker.clone()).or_default();
            *peak = (*peak).max(*now);
        }
        self.runs.lock().unwrap().push(Run { task_id: task.id, name: task.name.clone() });
        if let Some(ms) = task.payload.get("ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        *self.running.lock().unwrap().get_mut(&worker).unwrap() -= 1;
        Ok(None)
    }
}

pub fn record(name: &str, payload: Value) -> NewTask {
    let mut task = NewTask::new("record", payload);
    task.name = name.to_owned();
    task
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: ShutdownHandle,
    pub stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The app's database, dropped when the app is.
    pub db: TestDb,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Registry::with_builtins(0.01), |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    registry: Registry,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut config = test_config(&db.url);
    tweak(&mut config);
    if config.role == Role::Server {
        config.worker.concurrency = 1;
    }
    let app = Application::build(config, registry).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    let stopped = actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("an HTTP client");
    TestApp { address, client, shutdown, stopped, db }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// Creates a task over HTTP and returns its JSON, asserting 201.
    pub async fn create(&self, body: Value) -> Value {
        let response = self.post("/api/tasks", &body).await;
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "create answered {status}: {json}");
        json
    }

    pub async fn wait_for_status(&self, id: &str, status: &str, deadline: Duration) -> Value {
        wait_for(&format!("task {id} to be {status}"), deadline, || async move {
            let task: Value = self.get(&format!("/api/tasks/{id}")).await.json().await.ok()?;
            (task["status"] == status).then_some(task)
        })
        .await
    }

    pub async fn stop(self) {
        self.shutdown.shutdown();
        let stopped = tokio::time::timeout(STOP_TIMEOUT, self.stopped).await;
        stopped.unwrap_or_else(|_| panic!("the app did not stop within {STOP_TIMEOUT:?}")).unwrap().unwrap();
    }
}
