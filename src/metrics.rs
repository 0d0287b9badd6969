//! Prometheus metrics: one recorder per process, rendered by `GET /metrics`.
//!
//! The rest of taskq calls the small functions here rather than naming metrics
//! itself, so every metric's name, labels and meaning are listed in one place.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Gauge, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Task;

/// Buckets of the execution-time histogram, in seconds: from a no-op to a long job.
const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Buckets of the HTTP request-time histogram, in seconds.
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("taskq_task_duration_seconds".into()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("taskq_http_request_duration_seconds".into()),
                    HTTP_BUCKETS,
                )
            })
            .expect("bucket lists are static and non-empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process")
    })
}

/// `taskq_tasks_created_total{type}`: tasks accepted by the API.
pub fn task_created(task_type: &str) {
    counter!("taskq_tasks_created_total", "type" => task_type.to_owned()).increment(1);
}

/// `taskq_task_attempts_total{type, queue, outcome}`: finished attempts by outcome
/// (`succeeded`, `failed`, `fatal`, `timed_out`, `snoozed`, `cancelled`). A worker only runs the
/// queues of its `WORKER_QUEUES`, which bounds the `queue` label.
pub fn attempt_finished(task: &Task, outcome: &'static str) {
    counter!(
        "taskq_task_attempts_total",
        "type" => task.task_type.clone(),
        "queue" => task.queue.clone(),
        "outcome" => outcome
    )
    .increment(1);
}

/// `taskq_task_duration_seconds{type, queue}`: how long handlers ran.
pub fn attempt_duration(task: &Task, elapsed: Duration) {
    histogram!("taskq_task_duration_seconds", "type" => task.task_type.clone(), "queue" => task.queue.clone())
        .record(elapsed.as_secs_f64());
}

/// `taskq_task_retries_total{type}`: retries scheduled.
pub fn retry_scheduled(task_type: &str) {
    counter!("taskq_task_retries_total", "type" => task_type.to_owned()).increment(1);
}

/// `taskq_task_snoozes_total{type}`: snoozes that put a task back in the queue
/// (`HandlerError::Snooze`), not counting one past `max_snoozes` (which fails it).
pub fn snoozed(task_type: &str) {
    counter!("taskq_task_snoozes_total", "type" => task_type.to_owned()).increment(1);
}

/// `taskq_progress_reports_total`: progress reports handlers made
/// (`TaskContext::progress`), and `taskq_progress_writes_total`: those written to the
/// database. Reports are coalesced to one write per attempt every 500 ms, so a handler
/// reporting in a tight loop raises the first and barely the second.
pub fn progress_reported() {
    counter!("taskq_progress_reports_total").increment(1);
}

/// See [`progress_reported`].
pub fn progress_written(reports: usize) {
    counter!("taskq_progress_writes_total").increment(reports as u64);
}

/// `taskq_cancelled_attempts_total{stopped}`: running attempts stopped after their
/// task's cancel was requested, by how: `handler` (it stopped within the grace),
/// `grace` (aborted when the grace ran out), `timeout`.
pub fn cancel_stopped(stopped: &'static str) {
    counter!("taskq_cancelled_attempts_total", "stopped" => stopped).increment(1);
}

/// `taskq_tasks_claimed_total`: tasks claimed by this process.
pub fn claimed(tasks: usize) {
    counter!("taskq_tasks_claimed_total").increment(tasks as u64);
}

/// `taskq_tasks_released_total{reason}`: claimed tasks handed back to the queue
/// unstarted or unfinished (`shutdown`, `not_started`). Many `not_started` mean the
/// prefetch misjudged the tasks' duration: lower `WORKER_PREFETCH`.
pub fn released(reason: &'static str, tasks: usize) {
    counter!("taskq_tasks_released_total", "reason" => reason).increment(tasks as u64);
}

/// `taskq_tasks_rescued_total`: attempts recovered from workers that were gone.
pub fn rescued(tasks: usize) {
    counter!("taskq_tasks_rescued_total").increment(tasks as u64);
}

/// `taskq_schedule_ticks_enqueued_total{schedule}`: tasks enqueued for ticks.
pub fn ticks_enqueued(schedule: &str, ticks: u64) {
    counter!("taskq_schedule_ticks_enqueued_total", "schedule" => schedule.to_owned()).increment(ticks);
}

/// `taskq_schedule_ticks_skipped_total{schedule}`: due ticks dropped by `catch_up`
/// (missed while no process led or while the schedule was paused).
pub fn ticks_skipped(schedule: &str, ticks: u64) {
    counter!("taskq_schedule_ticks_skipped_total", "schedule" => schedule.to_owned()).increment(ticks);
}

/// `taskq_scheduler_leader{worker_id}`: 1 in the process that leads the scheduler, 0
/// in the others.
pub fn scheduler_leader(worker_id: &str, leads: bool) {
    gauge!("taskq_scheduler_leader", "worker_id" => worker_id.to_owned()).set(if leads { 1.0 } else { 0.0 });
}

/// `taskq_scheduler_statements_total`: statements the Scheduler sent (its passes and
/// enqueues): its cost on the database.
pub fn scheduler_statements(statements: u64) {
    counter!("taskq_scheduler_statements_total").increment(statements);
}

/// A worker's gauges, looked up once: the Dispatcher sets them for every task it
/// hands out or gets back, too often to build labels and search the registry each
/// time. Handles taken before the recorder is installed record nothing, so
/// processes install it first (`Application::build`).
pub struct WorkerGauges {
    busy: Gauge,
    total: Gauge,
    utilization: Gauge,
    prefetched: Gauge,
    rate_limited: Gauge,
    waiting_for_key: Gauge,
}

impl WorkerGauges {
    /// `taskq_executors_busy`, `taskq_executors`, `taskq_executor_utilization` (busy /
    /// total) and `taskq_tasks_prefetched` (claimed tasks waiting in the worker's local
    /// queue for an executor), each labelled `worker_id` and `queue` (one Dispatcher's
    /// pool); and `taskq_tasks_held_back{reason}` (`rate_limited`, `waiting_for_key`):
    /// the runnable tasks the Dispatcher's last claim left queued for flow control,
    /// among those it looked at.
    pub fn new(worker_id: &str, queue: &str) -> Self {
        let gauge = |name: &'static str| gauge!(name, "worker_id" => worker_id.to_owned(), "queue" => queue.to_owned());
        let held = |reason: &'static str| gauge!("taskq_tasks_held_back", "worker_id" => worker_id.to_owned(), "queue" => queue.to_owned(), "reason" => reason);
        Self {
            busy: gauge("taskq_executors_busy"),
            total: gauge("taskq_executors"),
            utilization: gauge("taskq_executor_utilization"),
            prefetched: gauge("taskq_tasks_prefetched"),
            rate_limited: held("rate_limited"),
            waiting_for_key: held("waiting_for_key"),
        }
    }

    pub fn held(&self, held: &crate::store::flow::Held) {
        self.rate_limited.set(f64::from(held.rate_limited));
        self.waiting_for_key.set(f64::from(held.waiting_for_key));
    }

    pub fn set(&self, busy: usize, total: usize, prefetched: usize) {
        self.busy.set(busy as f64);
        self.total.set(total as f64);
        self.utilization.set(if total == 0 { 0.0 } else { busy as f64 / total as f64 });
        self.prefetched.set(prefetched as f64);
    }
}

/// `taskq_stats_queries_total`: statistics snapshots computed (by the broadcaster and
/// `/api/stats`): the cost of dashboards on the database.
pub fn stats_query() {
    counter!("taskq_stats_queries_total").increment(1);
}

/// `taskq_stream_clients`: live-stream clients connected to this process.
pub fn stream_clients(clients: usize) {
    gauge!("taskq_stream_clients").set(clients as f64);
}

/// Queues with series of their own in the per-queue gauges; the rest are summed under
/// `queue="(other)"` (not a valid queue name, so it never collides), which keeps the
/// label's cardinality bounded however many queues clients create.
pub const MAX_QUEUE_SERIES: usize = 100;

/// The per-queue label of the shape gauges, `(other)` past the first
/// [`MAX_QUEUE_SERIES`] queues by name.
const OTHER_QUEUES: &str = "(other)";

/// `taskq_queue_depth{queue, status}`, `taskq_oldest_runnable_task_age_seconds{queue}`:
/// each queue's shape, refreshed at each scrape (sum by `status` for the totals), and
/// `taskq_unserved_tasks` (queued in queues no live worker serves).
pub fn queue_shape(stats: &crate::store::Stats) {
    let mut depth: std::collections::BTreeMap<(&str, &'static str), i64> = Default::default();
    let mut oldest: std::collections::BTreeMap<&str, f64> = Default::default();
    for (index, queue) in stats.queues.iter().enumerate() {
        let label = if index < MAX_QUEUE_SERIES { queue.name.as_str() } else { OTHER_QUEUES };
        for (status, count) in [
            ("queued", queue.queued),
            ("running", queue.running),
            ("scheduled", queue.scheduled),
            ("succeeded", queue.succeeded),
            ("failed", queue.failed),
            ("cancelled", queue.cancelled),
        ] {
            *depth.entry((label, status)).or_default() += count;
        }
        let age = oldest.entry(label).or_default();
        *age = age.max(queue.oldest_runnable_age_seconds.unwrap_or(0.0));
    }
    for ((queue, status), count) in depth {
        gauge!("taskq_queue_depth", "queue" => queue.to_owned(), "status" => status).set(count as f64);
    }
    for (queue, age) in oldest {
        gauge!("taskq_oldest_runnable_task_age_seconds", "queue" => queue.to_owned()).set(age);
    }
    gauge!("taskq_unserved_tasks").set(stats.unserved_tasks as f64);
    gauge!("taskq_live_workers").set(stats.live_workers as f64);
}

/// `taskq_http_requests_total{method, route, status}` and
/// `taskq_http_request_duration_seconds{method, route}`.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    counter!(
        "taskq_http_requests_total",
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!("taskq_http_request_duration_seconds", "method" => method.to_owned(), "route" => route.to_owned())
        .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{QueueStats, Stats, Throughput};

    fn queue(name: String) -> QueueStats {
        QueueStats {
            name,
            max_running: None,
            paused: false,
            rate_limit: None,
            max_per_key: None,
            queued: 1,
            running: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            scheduled: 0,
            oldest_runnable_age_seconds: Some(1.0),
            throughput: Throughput { window_minutes: 15, per_minute: Vec::new() },
            workers: Vec::new(),
        }
    }

    #[test]
    fn queue_gauges_keep_a_bounded_number_of_queue_labels() {
        let queues: Vec<QueueStats> = (0..150).map(|i| queue(format!("bounded-{i:03}"))).collect();
        let stats = Stats {
            total_tasks: 150,
            queued_tasks: 150,
            running_tasks: 0,
            succeeded_tasks: 0,
            failed_tasks: 0,
            avg_retry_count: 0.0,
            tasks_with_retries: 0,
            cancelled_tasks: 0,
            scheduled_tasks: 0,
            oldest_runnable_age_seconds: Some(1.0),
            throughput: Throughput { window_minutes: 15, per_minute: Vec::new() },
            live_workers: 0,
            workers: Vec::new(),
            queues,
            unserved_tasks: 150,
            generated_at: chrono::Utc::now(),
        };
        let recorder = handle(); // installed first: a recorder sees only what follows
        queue_shape(&stats);
        let rendered = recorder.render();
        let depth: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("taskq_queue_depth{") && l.contains("status=\"queued\""))
            .collect();
        let own = depth.iter().filter(|l| l.contains("queue=\"bounded-")).count();
        assert_eq!(own, MAX_QUEUE_SERIES, "one series per queue up to the bound");
        let other = depth.iter().find(|l| l.contains("queue=\"(other)\"")).expect("the rest are summed");
        assert!(other.ends_with(" 50"), "the 50 queues past the bound hold one task each: {other}");
    }
}
