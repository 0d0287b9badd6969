//! The test suite: one binary, each test on its own fresh database, and every store,
//! engine and API test run against both PostgreSQL and SQLite (rstest cases).

mod api;
mod engine;
mod enqueue_sql;
mod flow;
mod group;
mod helpers;
mod import;
mod long_work;
mod oversized;
mod queues;
mod schedules;
mod search;
mod store;
#[path = "../common/wait.rs"]
mod wait;
