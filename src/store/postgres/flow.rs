//! Flow control on PostgreSQL: the planned claim, and the task types' flow settings.
//!
//! A planned claim is one transaction of a few statements that holds the queue's
//! advisory lock exclusively, so no two claims of the queue plan at once and each reads
//! the rate state and the running keys as the last one left them. The type rows are
//! locked in name order, so that claims of different queues take a shared type bucket
//! one after another (and never deadlock). [`super::super::flow`] decides; this module
//! reads and writes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PgStore, QUEUE_LOCK_CLASS};
use crate::store::flow::{
    CANDIDATES, CANDIDATES_SQL, Candidate, FlowState, HoldReason, Plan, QUEUE_FLOW_AT, QueueFlowRow,
    RUNNING_BY_KEY, RateLimit, TYPE_FLOWS, TypeFlowRow, first_look, hold_reason,
};
use crate::store::{Claim, NewTask, Result, TYPE_COLUMNS, Task, TypeChange, TypeRow, TypeSettings};

/// Takes the planned tasks: running from their slots (the start and its event carry the
/// slot's time, as a head-of-queue claim's carry the claim's), leased for their timeout
/// plus `$4` seconds after them. Returns them in no particular order.
const TAKE: &str = r#"
    WITH input AS MATERIALIZED (
        SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS i (id, at)
    )
    UPDATE tasks AS t SET
        status = 'running',
        worker_id = $3,
        attempt = t.attempt + 1,
        started_at = i.at,
        updated_at = i.at,
        locked_until = i.at + make_interval(secs => t.timeout_seconds + $4),
        started_event_id = nextval('task_history_id_seq')
    FROM input AS i
    WHERE t.id = i.id AND t.status = 'queued'
    RETURNING t.*
"#;

impl PgStore {
    /// Whether claims of `queue` must be planned (a rate limit, keyed tasks, or type
    /// settings). Asked only when a head-of-queue claim came back empty.
    pub(super) async fn claims_are_planned(&self, queue: &str) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT taskq_claim_planned($1)").bind(queue).fetch_one(&self.pool).await?)
    }

    /// A planned claim of up to `limit` tasks; `None` when the queue's claims need no
    /// planning (any more), so the caller claims from the head of the queue.
    pub(super) async fn planned_claim(
        &self,
        worker_id: &str,
        queue: &str,
        limit: u32,
        lease_grace: Duration,
    ) -> Result<Option<Claim>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(QUEUE_LOCK_CLASS)
            .bind(queue)
            .execute(&mut *tx)
            .await?;
        let Some(mut settings): Option<QueueFlowRow> = sqlx::query_as(
            "SELECT paused, max_running, rate_max, rate_per_ms, rate_tat, max_per_key, keyed, \
             clock_timestamp() AS now FROM queues WHERE name = $1",
        )
        .bind(queue)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Some(Claim::default())); // no task was ever created in it
        };
        if settings.paused {
            return Ok(Some(Claim::default()));
        }
        let types: Vec<TypeFlowRow> =
            sqlx::query_as(&format!("{TYPE_FLOWS} ORDER BY name FOR UPDATE")).fetch_all(&mut *tx).await?;
        if !settings.needs_plan(&types) {
            return Ok(None);
        }
        let running = sqlx::query_as(RUNNING_BY_KEY).bind(queue).fetch_all(&mut *tx).await?;
        // The claim's time is read after the running tasks were counted: every attempt
        // the count saw end had ended before it, so no recorded start of this claim
        // precedes the end of an attempt it did not count.
        settings.now = sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&mut *tx).await?;
        let now = settings.now;
        let state = FlowState::read(&settings, types, running, limit);
        let mut look = first_look(state.free);
        let plan = loop {
            let candidates: Vec<Candidate> =
                sqlx::query_as(CANDIDATES_SQL).bind(queue).bind(now).bind(look).fetch_all(&mut *tx).await?;
            let plan = state.clone().plan(&candidates);
            if !plan.wants_more(candidates.len(), look) {
                break plan;
            }
            look = CANDIDATES;
        };
        let tasks = take(&mut tx, worker_id, lease_grace, &plan).await?;
        write_buckets(&mut tx, queue, &plan).await?;
        tx.commit().await?;
        Ok(Some(Claim::planned(tasks, &plan, now)))
    }

    /// Marks the queues of keyed tasks as keyed, before the tasks are inserted: a
    /// head-of-queue claim, which counts no keys, must never see a keyed task. The mark
    /// stays (a queue that had keyed tasks is claimed by plan from then on); a batch
    /// without keys writes nothing.
    pub(super) async fn mark_keyed(&self, tasks: &[NewTask]) -> Result<()> {
        let keyed = super::super::distinct(
            tasks.iter().filter(|t| t.concurrency_key.is_some()).map(|t| t.queue.as_str()),
        );
        if keyed.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO queues (name, keyed) SELECT unnest($1::text[]), true              ON CONFLICT (name) DO UPDATE SET keyed = true WHERE NOT queues.keyed",
        )
        .bind(&keyed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn read_hold_reason(&self, task: &Task) -> Result<Option<HoldReason>> {
        let queue: Option<QueueFlowRow> = sqlx::query_as(QUEUE_FLOW_AT)
            .bind(&task.queue)
            .bind(Utc::now())
            .fetch_optional(&self.pool)
            .await?;
        let Some(queue) = queue else { return Ok(None) };
        let task_type: Option<TypeFlowRow> = sqlx::query_as(&format!("{TYPE_FLOWS} WHERE name = $1"))
            .bind(&task.task_type)
            .fetch_optional(&self.pool)
            .await?;
        let running: Vec<(Option<String>, i64)> =
            sqlx::query_as(RUNNING_BY_KEY).bind(&task.queue).fetch_all(&self.pool).await?;
        Ok(hold_reason(task, &queue, task_type.as_ref(), &running))
    }

    pub(super) async fn read_type_settings(&self) -> Result<Vec<TypeSettings>> {
        let rows: Vec<TypeRow> =
            sqlx::query_as(&format!("SELECT {TYPE_COLUMNS} FROM task_types ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Changes a type's flow settings. The row lock orders the change after every
    /// planned claim that holds the old row and before every one after.
    pub(super) async fn write_type_settings(&self, name: &str, change: TypeChange) -> Result<TypeSettings> {
        let mut tx = self.pool.begin().await?;
        let row: TypeRow = sqlx::query_as(&format!(
            r#"
            INSERT INTO task_types (name, rate_max, rate_per_ms, max_per_key)
            VALUES ($1, $3, $4, $6)
            ON CONFLICT (name) DO UPDATE SET
                rate_max = CASE WHEN $2 THEN $3 ELSE task_types.rate_max END,
                rate_per_ms = CASE WHEN $2 THEN $4 ELSE task_types.rate_per_ms END,
                rate_tat = CASE WHEN $2 THEN NULL ELSE task_types.rate_tat END,
                max_per_key = CASE WHEN $5 THEN $6 ELSE task_types.max_per_key END,
                updated_at = now()
            RETURNING {TYPE_COLUMNS}
            "#
        ))
        .bind(name)
        .bind(change.rate_limit.is_some())
        .bind(change.rate_limit.flatten().map(|l| l.max))
        .bind(change.rate_limit.flatten().map(|l| l.per_ms))
        .bind(change.max_per_key.is_some())
        .bind(change.max_per_key.flatten())
        .fetch_one(&mut *tx)
        .await?;
        let settings = TypeSettings::from(row);
        record_flow(&mut tx, "type", name, settings.rate_limit, settings.max_per_key).await?;
        if settings.rate_limit.is_none() && settings.max_per_key.is_none() {
            sqlx::query("DELETE FROM task_types WHERE name = $1").bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(settings)
    }
}

/// Records flow settings after a change, for `taskq check`.
pub(super) async fn record_flow(
    tx: &mut Transaction<'_, Postgres>,
    scope: &str,
    name: &str,
    rate_limit: Option<RateLimit>,
    max_per_key: Option<i32>,
) -> Result<()> {
    sqlx::query("INSERT INTO flow_history (scope, name, rate_max, rate_per_ms, max_per_key) VALUES ($1, $2, $3, $4, $5)")
        .bind(scope)
        .bind(name)
        .bind(rate_limit.map(|l| l.max))
        .bind(rate_limit.map(|l| l.per_ms))
        .bind(max_per_key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Claims the planned tasks; returns them in the plan's order.
async fn take(
    tx: &mut Transaction<'_, Postgres>,
    worker_id: &str,
    lease_grace: Duration,
    plan: &Plan,
) -> Result<Vec<Task>> {
    if plan.picks.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, starts): (Vec<Uuid>, Vec<DateTime<Utc>>) = plan.picks.iter().copied().unzip();
    let taken: Vec<Task> = sqlx::query_as(TAKE)
        .bind(&ids)
        .bind(&starts)
        .bind(worker_id)
        .bind(lease_grace.as_secs_f64())
        .fetch_all(&mut **tx)
        .await?;
    let mut by_id: HashMap<Uuid, Task> = taken.into_iter().map(|task| (task.id, task)).collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// Writes the buckets the plan moved.
async fn write_buckets(tx: &mut Transaction<'_, Postgres>, queue: &str, plan: &Plan) -> Result<()> {
    if let Some(next) = plan.queue_next {
        sqlx::query("UPDATE queues SET rate_tat = $2 WHERE name = $1")
            .bind(queue)
            .bind(next)
            .execute(&mut **tx)
            .await?;
    }
    if !plan.type_next.is_empty() {
        let (names, next): (Vec<&str>, Vec<DateTime<Utc>>) =
            plan.type_next.iter().map(|(name, at)| (name.as_str(), *at)).unzip();
        sqlx::query(
            "UPDATE task_types AS t SET rate_tat = i.next FROM unnest($1::text[], $2::timestamptz[]) AS i (name, next) \
             WHERE t.name = i.name",
        )
        .bind(&names)
        .bind(&next)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
