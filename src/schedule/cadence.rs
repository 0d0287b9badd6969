//! When a schedule ticks: a cron expression read in an IANA time zone.
//!
//! Expressions have the standard five fields (minute to weekday), an optional leading
//! seconds field, or one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`
//! (and `@annually`, `@midnight`); croner parses them and walks the calendar. Ticks
//! are instants (UTC); the zone only decides which instants the wall clock names.
//!
//! Daylight-saving changes follow croner, which follows Vixie cron:
//! - **spring forward** (a wall-clock hour is skipped): a tick whose fixed time falls
//!   in the skipped hour runs once, at the first instant after the gap (02:30 in
//!   Europe/Berlin on the last Sunday of March runs at 03:00 CEST); expressions that
//!   repeat within the hour (`*/15 * * * *`) just have no ticks in it;
//! - **fall back** (a wall-clock hour is repeated): a tick at a fixed time runs once,
//!   at the first of the two instants (02:30 CEST, not again at 02:30 CET), while
//!   expressions that repeat within the hour tick in both passes of it.

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression and its time zone.
#[derive(Debug, Clone)]
pub struct Cadence {
    cron: Cron,
    zone: Tz,
}

/// Why an expression or a zone was refused, naming which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CadenceError {
    #[error("cron {expression:?} is not a valid cron expression: {reason}")]
    Cron { expression: String, reason: String },
    #[error("timezone {0:?} is not an IANA time zone (such as UTC or Europe/Berlin)")]
    Zone(String),
}

impl Cadence {
    pub fn parse(expression: &str, zone: &str) -> Result<Self, CadenceError> {
        let refused = |reason: String| CadenceError::Cron { expression: expression.to_owned(), reason };
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| refused(e.to_string()))?;
        let zone: Tz = zone.parse().map_err(|_| CadenceError::Zone(zone.to_owned()))?;
        let cadence = Self { cron, zone };
        // An expression that never matches (`0 0 31 2 *`) would leave a schedule
        // without a next tick.
        cadence.after(Utc::now()).ok_or_else(|| refused("it never matches".into()))?;
        Ok(cadence)
    }

    /// The first tick strictly after `t`.
    pub fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.find(t.trunc_subsecs(0), false, true)
    }

    /// The first tick at or after `t`.
    pub fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = t.trunc_subsecs(0);
        if whole == t { self.find(t, true, true) } else { self.find(whole, false, true) }
    }

    /// The last tick strictly before `t`.
    pub fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = t.trunc_subsecs(0);
        if whole == t { self.find(t, false, false) } else { self.find(whole, true, false) }
    }

    /// Ticks from `from` (inclusive) to `to` (inclusive), oldest first, at most `cap`.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>, cap: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut next = self.at_or_after(from);
        while let Some(tick) = next.filter(|tick| *tick <= to && ticks.len() < cap) {
            ticks.push(tick);
            next = self.after(tick);
        }
        ticks
    }

    fn find(&self, t: DateTime<Utc>, inclusive: bool, forward: bool) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        let found = if forward {
            self.cron.find_next_occurrence(&local, inclusive)
        } else {
            self.cron.find_previous_occurrence(&local, inclusive)
        };
        found.ok().map(|tick| tick.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a valid time").with_timezone(&Utc)
    }

    fn ticks(cron: &str, zone: &str, from: &str, to: &str) -> Vec<String> {
        let cadence = Cadence::parse(cron, zone).expect("a valid cadence");
        cadence.between(at(from), at(to), 100).iter().map(|t| t.to_rfc3339()).collect()
    }

    #[test]
    fn five_fields_an_optional_seconds_field_and_nicknames_parse() {
        for expression in
            ["*/5 * * * *", "30 */5 * * * *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"]
        {
            Cadence::parse(expression, "UTC").unwrap_or_else(|e| panic!("{expression}: {e}"));
        }
        assert_eq!(
            ticks("*/20 * * * * *", "UTC", "2026-12-01T10:00:00Z", "2026-12-01T10:00:59Z"),
            ["2026-12-01T10:00:00+00:00", "2026-12-01T10:00:20+00:00", "2026-12-01T10:00:40+00:00"]
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_by_name() {
        for expression in ["", "* * *", "61 * * * *", "@fortnightly", "0 0 0 1 1 * 2030", "0 0 31 2 *"] {
            let error = Cadence::parse(expression, "UTC").expect_err(expression);
            assert!(matches!(error, CadenceError::Cron { .. }), "{expression}: {error}");
            assert!(error.to_string().contains(&format!("{expression:?}")), "{error}");
        }
        let error = Cadence::parse("@daily", "Mars/Olympus").expect_err("an unknown zone");
        assert_eq!(error, CadenceError::Zone("Mars/Olympus".into()));
    }

    #[test]
    fn a_daily_tick_follows_its_zone_across_both_daylight_saving_changes() {
        // 09:00 in Berlin: 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            ticks("0 9 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
            ["2026-03-28T08:00:00+00:00", "2026-03-29T07:00:00+00:00"]
        );
        assert_eq!(
            ticks("0 9 * * *", "Europe/Berlin", "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z"),
            ["2026-10-24T07:00:00+00:00", "2026-10-25T08:00:00+00:00"]
        );
    }

    #[test]
    fn spring_forward_runs_a_skipped_fixed_time_once_after_the_gap() {
        // Berlin skips 02:00–03:00 CET on 2026-03-29 (01:00 UTC): 02:30 does not exist.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z"),
            // Runs at 03:00 CEST (01:00 UTC) on the day of the change, at 02:30 after it.
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        // An expression repeating within the hour has no ticks in the missing hour.
        assert_eq!(
            ticks("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"),
            ["2026-03-29T00:30:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-29T01:30:00+00:00"]
        );
    }

    #[test]
    fn fall_back_runs_a_fixed_time_once_and_an_interval_in_both_passes() {
        // Berlin repeats 02:00–03:00 on 2026-10-25: first CEST (00:00 UTC), then CET (01:00 UTC).
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
            ["2026-10-25T00:30:00+00:00"]
        );
        assert_eq!(
            ticks("30 * * * *", "Europe/Berlin", "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z"),
            ["2026-10-24T23:30:00+00:00", "2026-10-25T00:30:00+00:00", "2026-10-25T01:30:00+00:00"]
        );
    }

    #[test]
    fn ticks_around_an_instant_with_a_fraction_of_a_second() {
        let cadence = Cadence::parse("* * * * * *", "UTC").expect("every second");
        let t = at("2026-12-01T10:00:05.250Z");
        assert_eq!(cadence.after(t), Some(at("2026-12-01T10:00:06Z")));
        assert_eq!(cadence.at_or_after(t), Some(at("2026-12-01T10:00:06Z")));
        assert_eq!(cadence.before(t), Some(at("2026-12-01T10:00:05Z")));
        assert_eq!(cadence.before(at("2026-12-01T10:00:05Z")), Some(at("2026-12-01T10:00:04Z")));
        assert_eq!(cadence.at_or_after(at("2026-12-01T10:00:05Z")), Some(at("2026-12-01T10:00:05Z")));
    }
}
