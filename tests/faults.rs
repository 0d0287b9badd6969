//! The fault-injection suite: real `taskq-testbed` processes on a throwaway
//! PostgreSQL (or an SQLite file) are killed, terminated, frozen, starved of their
//! database, poisoned and flooded, and after each fault the invariant checker
//! (`taskq::check`) proves over every task and its history that nothing was lost and
//! nothing ran where it should not have.
//!
//! `cargo test` runs the bounded part (a few minutes on two cores); `TASKQ_SOAK=1`
//! runs every fault longer and harder (`scripts/faults.sh --soak`). Each test prints
//! its measured figures as `FIGURE | test | name | value` lines, and appends them to
//! the file `TASKQ_FIGURES` names, from which `docs/reliability.md` is filled.
//!
//! Tests that only wait for leases and timers run two at a time; the ones that load
//! the machine (contention, flood) run alone, so the others' timings stay honest.

// Each test holds the harness's gate (a std RwLock) for its whole body, across its
// awaits: every test has a runtime of its own on a thread of its own, so the guard
// only ever blocks another test's thread, which is the point.
#![allow(clippy::await_holding_lock)]

#[path = "faults/harness.rs"]
mod harness;
#[path = "common/wait.rs"]
mod wait;

#[path = "faults/contention.rs"]
mod contention;
#[path = "faults/flood.rs"]
mod flood;
#[path = "faults/flow.rs"]
mod flow;
#[path = "faults/freeze.rs"]
mod freeze;
#[path = "faults/hostile.rs"]
mod hostile;
#[path = "faults/kill.rs"]
mod kill;
#[path = "faults/poison.rs"]
mod poison;
#[path = "faults/postgres.rs"]
mod postgres;
#[path = "faults/queues.rs"]
mod queues;
#[path = "faults/schedules.rs"]
mod schedules;
#[path = "faults/sigterm.rs"]
mod sigterm;
#[path = "faults/sqlite.rs"]
mod sqlite;
#[path = "faults/stream.rs"]
mod stream;
