//! [`Application`]: one taskq process, wired from its configuration.
//!
//! `build` connects the store, applies migrations, binds the listener (port 0 picks a
//! free one, which tests use) and starts the roles' actors; `run_until_stopped` serves
//! until SIGTERM / SIGINT (or a [`ShutdownHandle`]) and then shuts down in order:
//! readiness off, live streams closed, the worker drained within its grace period,
//! the HTTP server stopped, the pool closed.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use tokio::sync::watch;

use crate::actors::messages::Stop;
use crate::actors::{StatsBroadcaster, Worker};
use crate::config::Config;
use crate::handlers::Registry;
use crate::http::{self, AppState};
use crate::store::{self, ConnectOptions, CreateBatcher, Store};

/// How long migrations are retried at start while the database is unreachable.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(60);
/// How long the HTTP server waits for open connections to finish at shutdown.
const HTTP_SHUTDOWN_TIMEOUT: u64 = 5;
/// How long closing the store waits for connections still in use at the end of a
/// shutdown. Every outcome is written by then; a connection that never comes back (its
/// future dropped where it could not be returned) must not keep the process alive.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Application {
    config: Config,
    store: Arc<dyn Store>,
    port: u16,
    server: actix_web::dev::Server,
    worker: Option<Worker>,
    broadcaster: Option<Addr<StatsBroadcaster>>,
    shutting_down: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
}

/// Triggers the same orderly shutdown as SIGTERM, from code (tests, embedding).
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Application {
    /// Must be called inside an actix system (`#[actix_web::main]`, `actix_rt::test`).
    pub async fn build(config: Config, registry: Registry) -> anyhow::Result<Self> {
        // Bind first: a taken port fails the start before anything else begins.
        let address = SocketAddr::new(config.server_host, config.server_port);
        let listener = TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        // Install the metrics recorder before anything records.
        crate::metrics::handle();
        let store = open_store(&config).await?;
        apply_file_settings(&*store, &config).await?;
        let default_timeout = config.worker.default_timeout.as_secs() as i64;
        http::schedules::declare(&*store, &registry, default_timeout, &config.schedules).await?;
        let registry = Arc::new(registry);
        let shutting_down = Arc::new(AtomicBool::new(false));

        let broadcaster = config
            .role
            .runs_server()
            .then(|| StatsBroadcaster::new(Arc::clone(&store), config.stats_interval).start());
        // Half the pool for inserts of single tasks: the rest of the API keeps its own.
        let insert_writers = (config.db_max_connections as usize / 2).max(1);
        let state = web::Data::new(AppState {
            store: Arc::clone(&store),
            creator: CreateBatcher::new(Arc::clone(&store), insert_writers, store::ACQUIRE_TIMEOUT),
            registry: Arc::clone(&registry),
            broadcaster: broadcaster.clone(),
            api_tokens: config.api_tokens.clone(),
            default_timeout,
            shutting_down: Arc::clone(&shutting_down),
        });

        if config.role.runs_server() && config.api_tokens.is_empty() && !config.server_host.is_loopback() {
            tracing::warn!(
                %address,
                "the API is listening beyond loopback WITHOUT authentication: set API_TOKEN to require a bearer token"
            );
        }
        let full = config.role.runs_server();
        let cors = config.cors_origins.clone();
        let server = HttpServer::new(move || http::app(state.clone(), full, cors.clone()))
            .listen(listener)?
            .disable_signals()
            .shutdown_timeout(HTTP_SHUTDOWN_TIMEOUT)
            .run();

        let worker = config
            .role
            .runs_worker()
            .then(|| Worker::start(Arc::clone(&store), Arc::clone(&registry), config.worker.clone()));
        tracing::info!(role = ?config.role, port, backend = ?store.backend(), "taskq started");
        let (shutdown, _) = watch::channel(false);
        Ok(Self { config, store, port, server, worker, broadcaster, shutting_down, shutdown })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serves until a signal or the shutdown handle, then shuts down in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { config, store, server, worker, broadcaster, shutting_down, shutdown, .. } = self;
        let handle = server.handle();
        let mut server = actix_web::rt::spawn(server);
        let mut requested = shutdown.subscribe();
        tokio::select! {
            signal = stop_signal() => tracing::info!(signal, "shutdown requested"),
            _ = requested.wait_for(|stop| *stop) => tracing::info!("shutdown requested"),
            served = &mut server => {
                served.context("the HTTP server task failed")?.context("the HTTP server failed")?;
                return Ok(());
            }
        }

        shutting_down.store(true, Ordering::Relaxed);
        if let Some(broadcaster) = broadcaster {
            let _ = broadcaster.send(Stop).await;
        }
        if let Some(worker) = worker {
            worker.shutdown().await;
        }
        handle.stop(true).await;
        let _ = server.await;
        if tokio::time::timeout(STORE_CLOSE_TIMEOUT, store.close()).await.is_err() {
            tracing::warn!(waited = ?STORE_CLOSE_TIMEOUT, "database connections still in use at exit; not waiting for them");
        }
        tracing::info!(role = ?config.role, "taskq stopped");
        Ok(())
    }
}

/// Connects the configured store and applies migrations, waiting for a database that
/// is still starting (a container started before its PostgreSQL).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let mut options = ConnectOptions::new(&config.database_url);
    options.max_connections = config.db_max_connections;
    let store = store::connect(&options).await.context("cannot open the database")?;
    let deadline = tokio::time::Instant::now() + MIGRATE_PATIENCE;
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(store),
            Err(error) if tokio::time::Instant::now() < deadline && is_transient(&error) => {
                tracing::warn!(error = %error, "database not reachable yet; retrying migrations");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error).context("cannot apply migrations"),
        }
    }
}

/// Applies the `[queues.NAME]` and `[types.NAME]` tables of `taskq.toml`: the file
/// wins over an API change at every start.
async fn apply_file_settings(store: &dyn Store, config: &Config) -> anyhow::Result<()> {
    for (name, change) in &config.queue_settings {
        store.change_queue(name, *change).await.with_context(|| format!("cannot apply [queues.{name}]"))?;
    }
    for (name, change) in &config.type_settings {
        store.change_type(name, *change).await.with_context(|| format!("cannot apply [types.{name}]"))?;
    }
    Ok(())
}

fn is_transient(error: &store::StoreError) -> bool {
    match error {
        store::StoreError::Unavailable(_) => true,
        store::StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => {
            matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        }
        _ => false,
    }
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
