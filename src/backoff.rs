//! The retry policy: when a failed attempt runs again, or whether it does at all.
//!
//! Retry number `n` (1-based) waits
//! `clamp(backoff_seconds × 2^(n−1), 1 s, max_backoff) × uniform(0.75, 1.25)`, and never
//! less than 1 s. The jitter spreads retries of tasks that failed together (one outage
//! fails many) so they do not come back as one spike.

use std::time::Duration;

use rand::Rng;

use crate::store::Task;

/// The shortest delay before any retry.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// The jitter factor's range.
const JITTER: (f64, f64) = (0.75, 1.25);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The ceiling of the exponential part (`RETRY_MAX_BACKOFF`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_backoff: Duration::from_secs(3600) }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based) of a task with `backoff_seconds`.
    pub fn delay(&self, backoff_seconds: i32, retry: i32) -> Duration {
        let base = self.base(backoff_seconds, retry);
        let factor = rand::rng().random_range(JITTER.0..=JITTER.1);
        base.mul_f64(factor).max(MIN_DELAY)
    }

    /// The smallest and largest delay `delay` can return: for tests and the checker.
    pub fn bounds(&self, backoff_seconds: i32, retry: i32) -> (Duration, Duration) {
        let base = self.base(backoff_seconds, retry);
        (base.mul_f64(JITTER.0).max(MIN_DELAY), base.mul_f64(JITTER.1).max(MIN_DELAY))
    }

    /// Whether a failed attempt of `task` is retried, and after how long: `None` when
    /// the error was fatal or the task has used all of its retries.
    pub fn decide(&self, task: &Task, fatal: bool) -> Option<Duration> {
        (!fatal && task.retry_count < task.max_retries)
            .then(|| self.delay(task.backoff_seconds, task.retry_count + 1))
    }

    /// What a snooze of `task` for `delay` does: `Ok(delay)` (at most
    /// [`MAX_SNOOZE`](crate::handlers::MAX_SNOOZE)) puts it back in the queue for that
    /// long without spending a retry; `Err(why)` fails it for good, when it has used
    /// all of its `max_snoozes`.
    pub fn snooze(&self, task: &Task, delay: Duration) -> Result<Duration, String> {
        if task.snooze_count >= task.max_snoozes {
            return Err(format!(
                "snoozed {} times; max_snoozes is {}",
                task.snooze_count + 1,
                task.max_snoozes
            ));
        }
        Ok(delay.min(crate::handlers::MAX_SNOOZE))
    }

    fn base(&self, backoff_seconds: i32, retry: i32) -> Duration {
        let exponent = retry.saturating_sub(1).clamp(0, 62);
        let seconds = f64::from(backoff_seconds.max(0)) * 2f64.powi(exponent);
        let ceiling = self.max_backoff.max(MIN_DELAY);
        Duration::from_secs_f64(seconds.min(ceiling.as_secs_f64())).clamp(MIN_DELAY, ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_retry_within_the_jitter_bounds() {
        let policy = RetryPolicy { max_backoff: Duration::from_secs(3600) };
        for retry in 1..=5 {
            let expected = 2f64.powi(retry - 1) * 2.0;
            let (low, high) = policy.bounds(2, retry);
            assert_eq!(low, Duration::from_secs_f64((expected * 0.75).max(1.0)));
            assert_eq!(high, Duration::from_secs_f64(expected * 1.25));
            for _ in 0..100 {
                let delay = policy.delay(2, retry);
                assert!(delay >= low && delay <= high, "{delay:?} outside {low:?}..{high:?}");
            }
        }
    }

    #[test]
    fn delays_are_capped_and_never_below_one_second() {
        let policy = RetryPolicy { max_backoff: Duration::from_secs(10) };
        assert_eq!(policy.bounds(1, 30).1, Duration::from_secs_f64(12.5));
        assert_eq!(policy.bounds(0, 1), (MIN_DELAY, MIN_DELAY.mul_f64(1.25)));
        assert!(policy.delay(0, 1) >= MIN_DELAY);
    }
}
