//! The task search shared by `GET /api/tasks` and bulk actions: what each filter of
//! [`ListFilter`] means, and the id range that keeps every search on the primary key.
//!
//! Task ids are UUID v7, whose first 48 bits are the millisecond they were made at
//! (just before the insert), so ids sort by creation time. A created-time range is
//! therefore also an id range, and a search walks the primary key backwards from its
//! upper end, newest first, as the list does without a filter: no index beyond the
//! primary key is needed, and none is added to the tasks table (docs/benchmarks.md,
//! "Search without new indexes"). The SQL of each backend is in
//! `postgres/search.rs` and `sqlite/search.rs`.
//!
//! A payload filter reads every task in its range, so its range is bounded: at most
//! [`PAYLOAD_SPAN`] of creation time (the API defaults `created_after` to that span
//! before `created_before`, or before now, and refuses a longer one).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ListFilter;

/// The longest created-time range a payload filter may read.
pub const PAYLOAD_SPAN: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// How far a task's id time may be from its `created_at`: the id comes from the
/// clock of the process that made it, `created_at` from the database's (PostgreSQL)
/// at the insert. Clocks of a cluster agree far better; the slack only widens the
/// id range, and `created_at` itself is still compared exactly.
const CLOCK_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Binds a search's parameters in the order both backends' statements number them:
/// the id range, the cursor, then each filter, then the limit.
macro_rules! bind_search {
    ($query:expr, $filter:expr) => {{
        let filter = $filter;
        let (low, high) = $crate::store::search::id_range(filter);
        $query
            .bind(low)
            .bind(high)
            .bind(filter.before)
            .bind(filter.status)
            .bind(filter.task_type.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.name.as_deref())
            .bind(filter.created_after)
            .bind(filter.created_before)
            .bind(filter.finished_after)
            .bind(filter.finished_before)
            .bind(filter.payload.as_ref().map(|p| p.key.as_str()))
            .bind(filter.payload.as_ref().map(|p| p.value.as_str()))
            .bind(i64::from(filter.limit))
            .bind(filter.schedule.as_deref())
    }};
}
pub(crate) use bind_search;

/// The ids a search can match, both bounds included: the intersection of its id
/// filter and the ids its created-time range can have.
pub(crate) fn id_range(filter: &ListFilter) -> (Uuid, Uuid) {
    let (mut low, mut high) = filter.ids.unwrap_or((Uuid::nil(), Uuid::max()));
    if let Some(after) = filter.created_after {
        low = low.max(v7_bound(after - CLOCK_SLACK, 0x00));
    }
    if let Some(before) = filter.created_before {
        high = high.min(v7_bound(before + CLOCK_SLACK, 0xff));
    }
    (low, high)
}

/// The smallest (`fill` 0x00) or largest (0xff) UUID v7 of the millisecond `at`.
fn v7_bound(at: DateTime<Utc>, fill: u8) -> Uuid {
    let ms = at.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [fill; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The ids that start with `prefix` (hex digits, hyphens ignored), both included.
pub fn prefix_range(prefix: &str) -> Option<(Uuid, Uuid)> {
    let hex: String = prefix.chars().filter(|c| *c != '-').collect();
    if hex.is_empty() || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let bound = |fill: &str| Uuid::parse_str(&format!("{hex}{}", fill.repeat(32 - hex.len()))).ok();
    Some((bound("0")?, bound("f")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_covers_exactly_the_ids_that_start_with_it() {
        let id = Uuid::now_v7();
        let (low, high) = prefix_range(&id.to_string()[..13]).unwrap();
        assert!(low <= id && id <= high);
        assert_eq!(prefix_range(&id.to_string()), Some((id, id)));
        assert_eq!(prefix_range("0g"), None);
        assert_eq!(prefix_range(""), None);
    }

    #[test]
    fn a_created_range_bounds_the_ids_made_within_it() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let filter = ListFilter {
            created_after: Some(now - chrono::TimeDelta::seconds(1)),
            created_before: Some(now + chrono::TimeDelta::seconds(1)),
            ..Default::default()
        };
        let (low, high) = id_range(&filter);
        assert!(low <= id && id <= high);
        let later =
            ListFilter { created_after: Some(now + chrono::TimeDelta::hours(1)), ..Default::default() };
        assert!(id < id_range(&later).0);
    }
}
