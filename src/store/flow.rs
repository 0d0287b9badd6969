//! Flow control: which of a queue's runnable tasks a claim may start, and when, under
//! rate limits (per queue and per task type) and concurrency keys.
//!
//! Both backends read the same inputs under the queue's exclusive claim lock (the
//! settings, the rate state, the running tasks per key, the first [`CANDIDATES`]
//! runnable tasks in claim order) and hand them to [`FlowState::plan`]; what it decides
//! is written back in the same transaction. A queue without a rate limit and without
//! keyed tasks, while no task type has flow settings, never comes here: its claims take
//! the head of the queue, as fast as before.
//!
//! **Rate limits are a GCRA with no burst.** A limit of `max` starts `per` window spaces
//! starts `per / max` apart: each start takes the bucket's slot, the earliest time the
//! next may take (the "theoretical arrival time"), and moves it one step on. So no
//! window of length `per` ever holds more than `max` starts, wherever it begins (a
//! token bucket or a GCRA with a burst lets `2 × max − 1` through a window that straddles
//! a refill), and a backlog drains smoothly, never in bursts that a provider counting
//! in fixed windows would refuse. A claim may take slots up to [`LOOKAHEAD`] ahead of
//! now: its task's recorded start is the slot, and the executor waits for it, so a
//! Dispatcher that wakes a little late loses none of the rate.
//!
//! **Concurrency keys.** A task with a key starts only while fewer tasks of its queue
//! with the same key run (prefetched ones included) than its key limit: its type's
//! `max_per_key`, else its queue's, else 1. Tasks held back are skipped, not waited on:
//! tasks with other keys, and tasks without a key, pass them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How far ahead of now a claim may take rate-limit slots.
pub const LOOKAHEAD: Duration = Duration::from_millis(200);

/// How many runnable tasks, in claim order, a planned claim looks at, at most. A key
/// whose first task lies further back waits until the tasks ahead of it start.
pub const CANDIDATES: i64 = 10_000;

/// How many candidates a planned claim reads first: the tasks it may take and some
/// room for held ones. Only a plan that came up short on a full first look
/// ([`Plan::wants_more`]) reads on, up to [`CANDIDATES`]: a claim of a queue whose
/// tasks mostly may start reads a few hundred rows, not ten thousand.
pub fn first_look(free: usize) -> i64 {
    (free as i64 * 4 + 100).min(CANDIDATES)
}

/// The largest `max` and `per` of a rate limit, as the schema's CHECKs have them.
pub const RATE_MAX: i64 = 1_000_000;
pub const RATE_PER_MAX: Duration = Duration::from_secs(86_400);

/// At most `max` starts per `per`, spaced evenly (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RateLimitJson", into = "RateLimitJson")]
pub struct RateLimit {
    pub max: i32,
    pub per_ms: i64,
}

/// A rate limit as the API and `taskq.toml` spell it: `{"max": 10, "per": "1s"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RateLimit)]
pub struct RateLimitJson {
    /// Starts allowed per window, 1 to 1000000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub max: i64,
    /// The window, from 1ms to 1 day (`"1s"`, `"500ms"`, `"1m"`, `"1h"`).
    #[schema(example = "1s")]
    pub per: String,
}

impl TryFrom<RateLimitJson> for RateLimit {
    type Error = String;

    fn try_from(json: RateLimitJson) -> Result<Self, String> {
        Self::new(json.max, &json.per)
    }
}

impl From<RateLimit> for RateLimitJson {
    fn from(limit: RateLimit) -> Self {
        let per = humantime::format_duration(Duration::from_millis(limit.per_ms as u64)).to_string();
        Self { max: i64::from(limit.max), per }
    }
}

impl RateLimit {
    /// A limit from its parts as users write them, or what is wrong with them.
    pub fn new(max: i64, per: &str) -> Result<Self, String> {
        if !(1..=RATE_MAX).contains(&max) {
            return Err(format!("rate_limit.max must be from 1 to {RATE_MAX}, got {max}"));
        }
        let window = humantime::parse_duration(per.trim()).map_err(|e| {
            format!("rate_limit.per: {per:?} is not a duration like \"1s\" or \"500ms\" ({e})")
        })?;
        if window < Duration::from_millis(1) || window > RATE_PER_MAX {
            return Err(format!("rate_limit.per must be from 1ms to 1 day, got {per:?}"));
        }
        Ok(Self { max: max as i32, per_ms: window.as_millis() as i64 })
    }

    /// The limit stored as two columns, if both are set.
    pub fn from_columns(max: Option<i32>, per_ms: Option<i64>) -> Option<Self> {
        Some(Self { max: max?, per_ms: per_ms? })
    }

    /// The spacing of starts: `per / max`, to the microsecond.
    pub fn step(&self) -> chrono::Duration {
        chrono::Duration::microseconds(self.per_ms * 1000 / i64::from(self.max.max(1)))
    }
}

/// A rate limit with its state: the earliest time its next start may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub step: chrono::Duration,
    pub next: Option<DateTime<Utc>>,
}

impl Bucket {
    pub fn new(limit: Option<RateLimit>, next: Option<DateTime<Utc>>) -> Option<Self> {
        limit.map(|limit| Self { step: limit.step(), next })
    }
}

/// A task type's flow settings as a claim reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeFlow {
    pub rate: Option<Bucket>,
    pub max_per_key: Option<i32>,
}

/// A runnable task as a planned claim considers it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Candidate {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub task_type: String,
    pub concurrency_key: Option<String>,
    pub timeout_seconds: i32,
}

/// Everything a planned claim decides on, read under the queue's exclusive lock.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowState {
    /// The database's clock when the inputs were read.
    pub now: DateTime<Utc>,
    /// How many tasks the claim may take at most (wanted, capped by `max_running`).
    pub free: usize,
    pub queue_rate: Option<Bucket>,
    pub queue_max_per_key: Option<i32>,
    /// The task types with flow settings, by name.
    pub types: HashMap<String, TypeFlow>,
    /// The queue's running tasks per concurrency key.
    pub running: HashMap<String, i64>,
}

/// Runnable tasks a claim left queued, and why (among the tasks it looked at).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Held back by a rate limit of their queue or type.
    pub rate_limited: u32,
    /// Held back because their key's limit is reached.
    pub waiting_for_key: u32,
    /// When a claim can take the earliest rate-limited task; `None` when no task waits
    /// for a rate limit (a key frees when one of its tasks ends, not at a time).
    pub retry_in: Option<Duration>,
}

/// What a planned claim takes and writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The tasks taken, in claim order, each with its recorded start.
    pub picks: Vec<(Uuid, DateTime<Utc>)>,
    /// The queue bucket's new state, when it has one and the claim moved it.
    pub queue_next: Option<DateTime<Utc>>,
    /// The type buckets the claim moved, with their new state.
    pub type_next: Vec<(String, DateTime<Utc>)>,
    pub held: Held,
    /// More candidates could not change the plan: it took all it was free to, or its
    /// queue's own rate limit stopped it.
    pub settled: bool,
}

/// A queue's row as a planned claim reads it, with the database's clock (`now`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct QueueFlowRow {
    pub paused: bool,
    pub max_running: Option<i32>,
    pub rate_max: Option<i32>,
    pub rate_per_ms: Option<i64>,
    pub rate_tat: Option<DateTime<Utc>>,
    pub max_per_key: Option<i32>,
    pub keyed: bool,
    pub now: DateTime<Utc>,
}

/// A type's row as a planned claim reads it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TypeFlowRow {
    pub name: String,
    pub rate_max: Option<i32>,
    pub rate_per_ms: Option<i64>,
    pub rate_tat: Option<DateTime<Utc>>,
    pub max_per_key: Option<i32>,
}

/// Why a runnable queued task is not running, as far as its queue's and type's limits
/// say (`GET /api/tasks/{id}`, the dashboard). A task with no reason waits its turn, or
/// for a worker that serves its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HoldReason {
    /// Its queue is paused.
    QueuePaused,
    /// Its queue runs as many tasks as its `max_running` allows.
    QueueFull { max_running: i32 },
    /// The rate limit of its queue (`scope` "queue") or of its type ("type") has no
    /// slot before `until`.
    RateLimited { scope: String, until: DateTime<Utc> },
    /// As many tasks of its queue with its key run as its key limit allows.
    WaitingForKey { key: String, running: i64, max_per_key: i32 },
}

/// Why `task` waits (see [`HoldReason`]), from its queue's row, its type's row, and its
/// queue's running tasks in all and with its key.
pub(crate) fn hold_reason(
    task: &crate::store::Task,
    queue: &QueueFlowRow,
    task_type: Option<&TypeFlowRow>,
    running: &[(Option<String>, i64)],
) -> Option<HoldReason> {
    if task.status != crate::store::TaskStatus::Queued || task.run_at > queue.now {
        return None;
    }
    if queue.paused {
        return Some(HoldReason::QueuePaused);
    }
    let total: i64 = running.iter().map(|(_, n)| n).sum();
    if let Some(max_running) = queue.max_running.filter(|max| total >= i64::from(*max)) {
        return Some(HoldReason::QueueFull { max_running });
    }
    let horizon = queue.now + chrono::Duration::from_std(LOOKAHEAD).expect("a small duration");
    let queue_slot = queue.rate_max.and(queue.rate_tat).map(|at| ("queue", at));
    let type_slot = task_type.and_then(|t| t.rate_max.and(t.rate_tat)).map(|at| ("type", at));
    if let Some((scope, until)) = [queue_slot, type_slot]
        .into_iter()
        .flatten()
        .filter(|(_, at)| *at > horizon)
        .max_by_key(|(_, at)| *at)
    {
        return Some(HoldReason::RateLimited { scope: scope.to_owned(), until });
    }
    let key = task.concurrency_key.as_ref()?;
    let max_per_key = task_type.and_then(|t| t.max_per_key).or(queue.max_per_key).unwrap_or(1);
    let running = running.iter().find(|(k, _)| k.as_ref() == Some(key)).map_or(0, |(_, n)| *n);
    (running >= i64::from(max_per_key)).then(|| HoldReason::WaitingForKey {
        key: key.clone(),
        running,
        max_per_key,
    })
}

/// Queue `$1`'s row as a claim reads it, with `$2` as the time.
pub(crate) const QUEUE_FLOW_AT: &str = "SELECT paused, max_running, rate_max, rate_per_ms, rate_tat, max_per_key, keyed, \
     $2 AS now FROM queues WHERE name = $1";

/// The rows of the task types with flow settings, as a claim reads them.
pub(crate) const TYPE_FLOWS: &str =
    "SELECT name, rate_max, rate_per_ms, rate_tat, max_per_key FROM task_types";

/// The queue's running tasks per concurrency key (`NULL` for those without), `$1` the
/// queue.
pub(crate) const RUNNING_BY_KEY: &str =
    "SELECT concurrency_key, count(*) FROM tasks WHERE queue = $1 AND status = 'running' GROUP BY 1";

/// The first `$3` runnable tasks of queue `$1` at `$2`, in claim order.
pub(crate) const CANDIDATES_SQL: &str = "SELECT id, type, concurrency_key, timeout_seconds FROM tasks \
     WHERE status = 'queued' AND queue = $1 AND run_at <= $2 ORDER BY priority DESC, run_at, id LIMIT $3";

impl QueueFlowRow {
    /// Whether the queue's claims must be planned: it has a rate limit or keyed tasks,
    /// or some task type has flow settings.
    pub(crate) fn needs_plan(&self, types: &[TypeFlowRow]) -> bool {
        self.rate_max.is_some() || self.keyed || !types.is_empty()
    }
}

impl Plan {
    /// Every candidate, starting at `now`: a claim of a queue that needs no planning.
    pub(crate) fn at_once(candidates: &[Candidate], now: DateTime<Utc>) -> Self {
        Self {
            picks: candidates.iter().map(|c| (c.id, now)).collect(),
            queue_next: None,
            type_next: Vec::new(),
            held: Held::default(),
            settled: true,
        }
    }

    /// Whether the claim should plan again on more candidates: this plan came up short
    /// on a look that was full and not yet the largest.
    pub fn wants_more(&self, looked: usize, look: i64) -> bool {
        !self.settled && looked as i64 == look && look < CANDIDATES
    }
}

impl FlowState {
    /// The state a claim of at most `limit` tasks plans on, from what it read.
    pub(crate) fn read(
        queue: &QueueFlowRow,
        types: Vec<TypeFlowRow>,
        running: Vec<(Option<String>, i64)>,
        limit: u32,
    ) -> Self {
        let mut free = limit as usize;
        if let Some(max_running) = queue.max_running {
            let total: i64 = running.iter().map(|(_, n)| n).sum();
            free = free.min((i64::from(max_running) - total).max(0) as usize);
        }
        let types = types
            .into_iter()
            .map(|row| {
                let rate = Bucket::new(RateLimit::from_columns(row.rate_max, row.rate_per_ms), row.rate_tat);
                (row.name, TypeFlow { rate, max_per_key: row.max_per_key })
            })
            .collect();
        Self {
            now: queue.now,
            free,
            queue_rate: Bucket::new(
                RateLimit::from_columns(queue.rate_max, queue.rate_per_ms),
                queue.rate_tat,
            ),
            queue_max_per_key: queue.max_per_key,
            types,
            running: running.into_iter().filter_map(|(key, n)| Some((key?, n))).collect(),
        }
    }

    /// Takes candidates in claim order while `free` allows, each at the earliest slot
    /// its queue's and type's buckets give it, if that slot is at most [`LOOKAHEAD`]
    /// away and its key has room.
    pub fn plan(mut self, candidates: &[Candidate]) -> Plan {
        let horizon = self.now + chrono::Duration::from_std(LOOKAHEAD).expect("a small duration");
        let mut picks = Vec::new();
        let mut held = Held::default();
        let mut earliest_held: Option<DateTime<Utc>> = None;
        let mut moved_types: Vec<String> = Vec::new();
        let mut settled = false;
        for (index, candidate) in candidates.iter().enumerate() {
            if picks.len() >= self.free {
                settled = true;
                break;
            }
            let queue_slot = self.queue_rate.map(|bucket| slot(bucket, self.now));
            if let Some(queue_slot) = queue_slot.filter(|at| *at > horizon) {
                // Nothing of this queue can start before the queue's own slot.
                held.rate_limited += (candidates.len() - index) as u32;
                earliest_held = Some(earliest_held.map_or(queue_slot, |at| at.min(queue_slot)));
                settled = true;
                break;
            }
            let flow = self.types.get(&candidate.task_type).cloned();
            let type_slot = flow.as_ref().and_then(|f| f.rate).map(|bucket| slot(bucket, self.now));
            let at =
                [Some(self.now), queue_slot, type_slot].into_iter().flatten().max().expect("now is some");
            if at > horizon {
                held.rate_limited += 1;
                earliest_held = Some(earliest_held.map_or(at, |held_at| held_at.min(at)));
                continue;
            }
            if let Some(key) = &candidate.concurrency_key {
                let limit = flow.as_ref().and_then(|f| f.max_per_key).or(self.queue_max_per_key).unwrap_or(1);
                let running = self.running.entry(key.clone()).or_default();
                if *running >= i64::from(limit) {
                    held.waiting_for_key += 1;
                    continue;
                }
                *running += 1;
            }
            if let Some(bucket) = self.queue_rate.as_mut() {
                bucket.next = Some(at + bucket.step);
            }
            if let Some(bucket) = self.types.get_mut(&candidate.task_type).and_then(|f| f.rate.as_mut()) {
                bucket.next = Some(at + bucket.step);
                moved_types.push(candidate.task_type.clone());
            }
            picks.push((candidate.id, at));
        }
        held.retry_in = earliest_held.map(|at| {
            let lookahead = chrono::Duration::from_std(LOOKAHEAD).expect("a small duration");
            (at - lookahead - self.now).to_std().unwrap_or_default()
        });
        moved_types.sort_unstable();
        moved_types.dedup();
        let type_next = moved_types
            .into_iter()
            .filter_map(|name| {
                let next = self.types.get(&name)?.rate?.next?;
                Some((name, next))
            })
            .collect();
        let queue_next = if picks.is_empty() { None } else { self.queue_rate.and_then(|bucket| bucket.next) };
        let settled = settled || picks.len() >= self.free;
        Plan { picks, queue_next, type_next, held, settled }
    }
}

/// The earliest start a bucket allows now: its next slot, or now if that has passed
/// (an idle bucket saves up no burst).
fn slot(bucket: Bucket, now: DateTime<Utc>) -> DateTime<Utc> {
    bucket.next.map_or(now, |next| next.max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn task(n: u128, task_type: &str, key: Option<&str>) -> Candidate {
        Candidate {
            id: Uuid::from_u128(n),
            task_type: task_type.to_owned(),
            concurrency_key: key.map(str::to_owned),
            timeout_seconds: 30,
        }
    }

    fn state(free: usize) -> FlowState {
        FlowState {
            now: at(0),
            free,
            queue_rate: None,
            queue_max_per_key: None,
            types: HashMap::new(),
            running: HashMap::new(),
        }
    }

    fn per_second(max: i32) -> Option<Bucket> {
        Bucket::new(Some(RateLimit { max, per_ms: 1000 }), None)
    }

    fn starts(plan: &Plan) -> Vec<i64> {
        plan.picks.iter().map(|(_, start)| (*start - at(0)).num_milliseconds()).collect()
    }

    #[test]
    fn a_rate_limit_spaces_starts_evenly_up_to_the_lookahead() {
        let mut flow = state(100);
        flow.queue_rate = per_second(100);
        let candidates: Vec<_> = (0..50).map(|n| task(n, "noop", None)).collect();
        let plan = flow.plan(&candidates);
        assert_eq!(starts(&plan), (0..=20).map(|n| n * 10).collect::<Vec<_>>());
        assert_eq!(plan.queue_next, Some(at(210)));
        assert_eq!(plan.held.rate_limited, 29);
        assert_eq!(plan.held.retry_in, Some(Duration::from_millis(10)), "slot 210 ms, lookahead 200 ms");
    }

    #[test]
    fn a_bucket_behind_now_saves_up_no_burst() {
        let mut flow = state(10);
        flow.queue_rate = Bucket::new(Some(RateLimit { max: 1, per_ms: 1000 }), Some(at(-60_000)));
        let plan = flow.plan(&[task(1, "a", None), task(2, "a", None)]);
        assert_eq!(starts(&plan), [0]);
        assert_eq!(plan.held.retry_in, Some(Duration::from_millis(800)));
    }

    #[test]
    fn a_type_limit_holds_back_its_own_tasks_and_lets_others_pass() {
        let mut flow = state(10);
        flow.types.insert("email".into(), TypeFlow { rate: per_second(1), max_per_key: None });
        let plan = flow.plan(&[task(1, "email", None), task(2, "email", None), task(3, "report", None)]);
        assert_eq!(plan.picks.iter().map(|(id, _)| id.as_u128()).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(plan.type_next, [("email".to_owned(), at(1000))]);
        assert_eq!(
            plan.held,
            Held { rate_limited: 1, waiting_for_key: 0, retry_in: Some(Duration::from_millis(800)) }
        );
    }

    #[test]
    fn a_key_runs_one_task_at_a_time_unless_its_limit_says_more() {
        let mut flow = state(10);
        flow.running.insert("tenant-a".into(), 1);
        let candidates = [
            task(1, "import", Some("tenant-a")),
            task(2, "import", Some("tenant-b")),
            task(3, "import", Some("tenant-b")),
        ];
        let plan = flow.clone().plan(&candidates);
        assert_eq!(plan.picks.iter().map(|(id, _)| id.as_u128()).collect::<Vec<_>>(), [2]);
        assert_eq!(plan.held.waiting_for_key, 2);
        assert_eq!(plan.held.retry_in, None);

        flow.queue_max_per_key = Some(2);
        assert_eq!(flow.clone().plan(&candidates).picks.len(), 3);
        flow.types.insert("import".into(), TypeFlow { rate: None, max_per_key: Some(1) });
        assert_eq!(flow.plan(&candidates).picks.len(), 1, "the type's key limit overrides the queue's");
    }

    #[test]
    fn only_a_short_plan_on_a_full_look_reads_on() {
        let mut blocked = state(2);
        blocked.running.insert("busy".into(), 1);
        let look = first_look(2);
        assert_eq!(look, 108);
        let candidates: Vec<_> = (0..look as u128).map(|n| task(n, "noop", Some("busy"))).collect();
        assert!(
            blocked.clone().plan(&candidates).wants_more(candidates.len(), look),
            "all held: look further"
        );
        assert!(!blocked.plan(&candidates[..50]).wants_more(50, look), "the queue has no more");
        let unkeyed: Vec<_> = (0..look as u128).map(|n| task(n, "noop", None)).collect();
        assert!(!state(2).plan(&unkeyed).wants_more(unkeyed.len(), look), "took all it may");
        let mut limited = state(100);
        limited.queue_rate = per_second(1);
        assert!(!limited.plan(&candidates).wants_more(candidates.len(), look), "its queue's rate stopped it");
    }

    #[test]
    fn a_claim_takes_no_more_than_it_is_free_to() {
        let candidates: Vec<_> = (0..5).map(|n| task(n, "noop", Some("k"))).collect();
        let mut flow = state(2);
        flow.queue_max_per_key = Some(10);
        assert_eq!(flow.plan(&candidates).picks.len(), 2);
    }

    #[test]
    fn rate_limits_read_and_print_as_users_write_them() {
        let limit: RateLimit = serde_json::from_str(r#"{"max": 10, "per": "1s"}"#).unwrap();
        assert_eq!(limit, RateLimit { max: 10, per_ms: 1000 });
        assert_eq!(serde_json::to_value(limit).unwrap(), serde_json::json!({"max": 10, "per": "1s"}));
        for (json, problem) in [
            (r#"{"max": 0, "per": "1s"}"#, "rate_limit.max must be from 1"),
            (r#"{"max": 5, "per": "soon"}"#, "rate_limit.per: \"soon\" is not a duration"),
            (r#"{"max": 5, "per": "2days"}"#, "rate_limit.per must be from 1ms to 1 day"),
        ] {
            let error = serde_json::from_str::<RateLimit>(json).unwrap_err().to_string();
            assert!(error.contains(problem), "{json}: {error}");
        }
    }
}
