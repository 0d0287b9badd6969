//! What one pass of the leader does with one due schedule: which ticks it enqueues,
//! how many it skips, and where the schedule's next tick moves.
//!
//! A due tick lies in `[next_tick, now]` (`now` is the database's). It is **on time**
//! when it came at or after `since`, the moment from which this leader has been
//! watching the schedule without a break (the end of its previous complete pass, its
//! election, or the schedule's resumption, whichever is latest). Every on-time tick
//! is enqueued. The ticks before `since` were **missed**: they fell while no process
//! led or while the schedule was paused, and its `catch_up` decides what becomes of
//! them: `skip` drops them all, `latest` enqueues the most recent one, `all` enqueues
//! each of them, the most recent [`CATCH_UP_ALL_MAX`] at most.

use chrono::{DateTime, Utc};

use super::Cadence;
use crate::store::CatchUp;

/// The most missed ticks `catch_up = "all"` enqueues for one schedule; older ones are
/// skipped (a schedule every second, down for a day, would otherwise enqueue 86,400).
pub const CATCH_UP_ALL_MAX: usize = 100;

/// The most on-time ticks one pass enqueues for one schedule (a pass covers about a
/// second, so this only binds after a long stall of the leader).
const ON_TIME_MAX: usize = 1_000;

/// Skipped ticks are counted up to this many per pass; the metric is a count of ticks,
/// and counting the seconds of a year would cost more than it says.
const COUNT_MAX: usize = 100_000;

/// The outcome for one schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The ticks to enqueue, oldest first.
    pub ticks: Vec<DateTime<Utc>>,
    /// Due ticks dropped (missed ones that `catch_up` does not keep).
    pub skipped: usize,
    /// The first tick after `now`.
    pub next_tick: Option<DateTime<Utc>>,
}

pub fn plan(
    cadence: &Cadence,
    catch_up: CatchUp,
    next_tick: DateTime<Utc>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Plan {
    let mut on_time = cadence.between(next_tick.max(since), now, ON_TIME_MAX + COUNT_MAX);
    let mut skipped = on_time.len().saturating_sub(ON_TIME_MAX);
    on_time.drain(..skipped);

    let missed_until = since;
    let kept = match catch_up {
        CatchUp::Skip => 0,
        CatchUp::Latest => 1,
        CatchUp::All => CATCH_UP_ALL_MAX,
    };
    let mut caught_up = Vec::new();
    let mut cursor = missed_until;
    while caught_up.len() < kept {
        match cadence.before(cursor).filter(|tick| *tick >= next_tick) {
            Some(tick) => {
                caught_up.push(tick);
                cursor = tick;
            }
            None => break,
        }
    }
    if let Some(oldest_kept) = caught_up.last().copied().or(Some(missed_until)) {
        let before_kept = oldest_kept - chrono::Duration::nanoseconds(1);
        if next_tick <= before_kept {
            skipped += cadence.between(next_tick, before_kept, COUNT_MAX).len();
        }
    }
    caught_up.reverse();
    caught_up.extend(on_time);
    Plan { ticks: caught_up, skipped, next_tick: cadence.after(now) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a valid time").with_timezone(&Utc)
    }

    fn every_minute() -> Cadence {
        Cadence::parse("* * * * *", "UTC").expect("a valid cadence")
    }

    /// Down from 10:00:30 to 10:05:30: ticks 10:01 to 10:05 were missed; the leader
    /// elected at 10:05:30 passes at 10:06:00.5.
    fn after_downtime(catch_up: CatchUp) -> Plan {
        plan(
            &every_minute(),
            catch_up,
            at("2026-12-01T10:01:00Z"),
            at("2026-12-01T10:05:30Z"),
            at("2026-12-01T10:06:00.5Z"),
        )
    }

    #[test]
    fn on_time_ticks_are_all_enqueued() {
        let plan = plan(
            &every_minute(),
            CatchUp::Skip,
            at("2026-12-01T10:01:00Z"),
            at("2026-12-01T10:00:59Z"),
            at("2026-12-01T10:02:00Z"),
        );
        assert_eq!(plan.ticks, [at("2026-12-01T10:01:00Z"), at("2026-12-01T10:02:00Z")]);
        assert_eq!(plan.skipped, 0);
        assert_eq!(plan.next_tick, Some(at("2026-12-01T10:03:00Z")));
    }

    #[test]
    fn skip_drops_every_missed_tick() {
        let plan = after_downtime(CatchUp::Skip);
        assert_eq!(plan.ticks, [at("2026-12-01T10:06:00Z")]);
        assert_eq!(plan.skipped, 5);
        assert_eq!(plan.next_tick, Some(at("2026-12-01T10:07:00Z")));
    }

    #[test]
    fn latest_enqueues_the_most_recent_missed_tick() {
        let plan = after_downtime(CatchUp::Latest);
        assert_eq!(plan.ticks, [at("2026-12-01T10:05:00Z"), at("2026-12-01T10:06:00Z")]);
        assert_eq!(plan.skipped, 4);
    }

    #[test]
    fn all_enqueues_every_missed_tick_up_to_its_bound() {
        let plan = after_downtime(CatchUp::All);
        assert_eq!(plan.ticks.len(), 6);
        assert_eq!(plan.skipped, 0);
        let long = plan_all_after_hours(3);
        // 180 missed (10:00 to 12:59), the latest 100 kept, and 13:00 on time.
        assert_eq!(long.ticks.len(), CATCH_UP_ALL_MAX + 1);
        assert_eq!(long.skipped, 180 - CATCH_UP_ALL_MAX);
        assert_eq!(long.ticks.first(), Some(&at("2026-12-01T11:20:00Z")));
        assert_eq!(long.ticks.last(), Some(&at("2026-12-01T13:00:00Z")));
    }

    fn plan_all_after_hours(hours: i64) -> Plan {
        let start = at("2026-12-01T10:00:00Z");
        let back = start + chrono::Duration::hours(hours);
        plan(&every_minute(), CatchUp::All, start, back - chrono::Duration::seconds(30), back)
    }

    #[test]
    fn nothing_due_changes_nothing_but_the_next_tick() {
        let plan = plan(
            &every_minute(),
            CatchUp::Latest,
            at("2026-12-01T10:01:00Z"),
            at("2026-12-01T10:00:10Z"),
            at("2026-12-01T10:00:20Z"),
        );
        assert!(plan.ticks.is_empty());
        assert_eq!(plan.skipped, 0);
    }
}
