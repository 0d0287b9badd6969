//! taskq: distributed background task processing for Rust, backed by PostgreSQL
//! (or an embedded SQLite file), with an HTTP API and a live dashboard.
//!
//! # Layout
//!
//! - [`store`]: the only way to read or change the queue (PostgreSQL and SQLite);
//! - [`handlers`]: the [`Handler`](handlers::Handler) trait, the registry, built-ins;
//! - [`actors`]: the worker (Dispatcher, Executors, Retry, Completer, Rescuer,
//!   Pruner) and the StatsBroadcaster;
//! - [`http`]: the JSON API, the live stream and the dashboard;
//! - [`schedule`]: periodic tasks: when a cron expression ticks, and what a pass of
//!   the leader enqueues;
//! - [`app`]: [`Application`](app::Application), which wires a process's roles;
//! - [`config`], [`backoff`], [`metrics`], [`telemetry`]: the rest.
//!
//! Dependencies point one way: `app` → `http`, `actors` → `store`, `handlers`.
//!
//! # Running taskq with your own handlers
//!
//! ```no_run
//! use taskq::{app::Application, config::Config, handlers::Registry};
//!
//! #[actix_web::main]
//! async fn main() -> anyhow::Result<()> {
//!     let config = Config::load()?;
//!     let mut registry = Registry::with_builtins(config.demo_time_scale);
//!     // registry.register("resize_image", ResizeImage);
//!     let app = Application::build(config, registry).await?;
//!     app.run_until_stopped().await
//! }
//! ```

pub mod actors;
pub mod app;
pub mod backoff;
pub mod bench;
pub mod check;
pub mod config;
pub mod handlers;
pub mod http;
pub mod metrics;
mod runtime;
pub mod schedule;
pub mod store;
pub mod telemetry;
