//! Periodic tasks: cron schedules that enqueue exactly one task per tick, however many
//! worker processes run.
//!
//! - [`Cadence`]: when a schedule ticks (a cron expression in an IANA time zone);
//! - [`plan`]: what one pass of the leader enqueues and skips for a due schedule.
//!
//! The schedules and the leadership live in the store (`store::ScheduleStore`); the
//! Scheduler actor of every worker takes part in the election and, while it leads,
//! runs the passes. docs/design.md ("Schedules") has the whole protocol.

mod cadence;
pub mod plan;

pub use cadence::{Cadence, CadenceError};
pub use plan::{CATCH_UP_ALL_MAX, Plan, plan};
