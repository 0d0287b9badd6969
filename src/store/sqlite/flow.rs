//! Flow control on SQLite: the claim, planned or not, and the task types' flow
//! settings. Every claim holds the file's write lock, so what it reads (the rate state,
//! the running tasks per key) is what the last claim left; [`crate::store::flow`]
//! decides what a planned claim takes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, now};
use crate::store::flow::{
    CANDIDATES, CANDIDATES_SQL, Candidate, FlowState, HoldReason, Plan, QUEUE_FLOW_AT, QueueFlowRow,
    RUNNING_BY_KEY, RateLimit, TYPE_FLOWS, TypeFlowRow, first_look, hold_reason,
};
use crate::store::{Claim, EventType, Result, TYPE_COLUMNS, Task, TypeChange, TypeRow, TypeSettings};

impl SqliteStore {
    pub(super) async fn claim_in(
        &self,
        worker_id: &str,
        queue: &str,
        limit: u32,
        lease_grace: Duration,
    ) -> Result<Claim> {
        let mut tx = self.write().await?;
        let settings: Option<QueueFlowRow> =
            sqlx::query_as(QUEUE_FLOW_AT).bind(queue).bind(now()).fetch_optional(&mut *tx).await?;
        let Some(settings) = settings.filter(|s| !s.paused) else {
            return Ok(Claim::default()); // unknown or paused
        };
        let types: Vec<TypeFlowRow> = sqlx::query_as(
            "SELECT name, rate_max, rate_per_ms, rate_tat, max_per_key FROM task_types ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let planned = settings.needs_plan(&types);
        let running = if planned || settings.max_running.is_some() {
            sqlx::query_as(RUNNING_BY_KEY).bind(queue).fetch_all(&mut *tx).await?
        } else {
            Vec::new()
        };
        let at = settings.now;
        let state = FlowState::read(&settings, types, running, limit);
        let mut look = if planned { first_look(state.free) } else { state.free as i64 };
        let (candidates, plan) = loop {
            let candidates: Vec<Candidate> =
                sqlx::query_as(CANDIDATES_SQL).bind(queue).bind(at).bind(look).fetch_all(&mut *tx).await?;
            let plan = if planned { state.clone().plan(&candidates) } else { Plan::at_once(&candidates, at) };
            if !plan.wants_more(candidates.len(), look) {
                break (candidates, plan);
            }
            look = CANDIDATES;
        };
        let timeouts: HashMap<Uuid, i32> = candidates.iter().map(|c| (c.id, c.timeout_seconds)).collect();
        let mut claimed = Vec::with_capacity(plan.picks.len());
        for (id, start) in &plan.picks {
            let lease = Duration::from_secs(timeouts[id].max(0) as u64) + lease_grace;
            let task: Task = sqlx::query_as(
                r#"
                UPDATE tasks SET status = 'running', worker_id = $2, attempt = attempt + 1,
                                 started_at = $3, updated_at = $3, locked_until = $4
                WHERE id = $1
                RETURNING *
                "#,
            )
            .bind(id)
            .bind(worker_id)
            .bind(start)
            .bind(*start + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX))
            .fetch_one(&mut *tx)
            .await?;
            Self::insert_event(&mut tx, &task, EventType::TaskStarted, None, None).await?;
            claimed.push(task);
        }
        write_buckets(&mut tx, queue, &plan).await?;
        tx.commit().await?;
        Ok(Claim::planned(claimed, &plan, at))
    }

    /// Marks `queue` as having keyed tasks; inside the inserting transaction.
    pub(super) async fn mark_keyed(tx: &mut Transaction<'static, Sqlite>, queue: &str) -> Result<()> {
        sqlx::query("UPDATE queues SET keyed = 1 WHERE name = $1 AND keyed = 0")
            .bind(queue)
            .execute(&mut **tx)
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

    /// Changes a type's flow settings; the write lock orders it against every claim.
    pub(super) async fn write_type_settings(&self, name: &str, change: TypeChange) -> Result<TypeSettings> {
        let mut tx = self.write().await?;
        let at = now();
        let row: TypeRow = sqlx::query_as(&format!(
            r#"
            INSERT INTO task_types (name, rate_max, rate_per_ms, max_per_key, updated_at)
            VALUES ($1, $3, $4, $6, $7)
            ON CONFLICT (name) DO UPDATE SET
                rate_max = CASE WHEN $2 THEN $3 ELSE task_types.rate_max END,
                rate_per_ms = CASE WHEN $2 THEN $4 ELSE task_types.rate_per_ms END,
                rate_tat = CASE WHEN $2 THEN NULL ELSE task_types.rate_tat END,
                max_per_key = CASE WHEN $5 THEN $6 ELSE task_types.max_per_key END,
                updated_at = $7
            RETURNING {TYPE_COLUMNS}
            "#
        ))
        .bind(name)
        .bind(change.rate_limit.is_some())
        .bind(change.rate_limit.flatten().map(|l| l.max))
        .bind(change.rate_limit.flatten().map(|l| l.per_ms))
        .bind(change.max_per_key.is_some())
        .bind(change.max_per_key.flatten())
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let settings = TypeSettings::from(row);
        record_flow(&mut tx, "type", name, settings.rate_limit, settings.max_per_key, at).await?;
        if settings.rate_limit.is_none() && settings.max_per_key.is_none() {
            sqlx::query("DELETE FROM task_types WHERE name = $1").bind(name).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(settings)
    }
}

/// Records flow settings after a change, for `taskq check`.
pub(super) async fn record_flow(
    tx: &mut Transaction<'static, Sqlite>,
    scope: &str,
    name: &str,
    rate_limit: Option<RateLimit>,
    max_per_key: Option<i32>,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO flow_history (scope, name, rate_max, rate_per_ms, max_per_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(scope)
    .bind(name)
    .bind(rate_limit.map(|l| l.max))
    .bind(rate_limit.map(|l| l.per_ms))
    .bind(max_per_key)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the buckets the plan moved.
async fn write_buckets(tx: &mut Transaction<'static, Sqlite>, queue: &str, plan: &Plan) -> Result<()> {
    if let Some(next) = plan.queue_next {
        sqlx::query("UPDATE queues SET rate_tat = $2 WHERE name = $1")
            .bind(queue)
            .bind(next)
            .execute(&mut **tx)
            .await?;
    }
    for (name, next) in &plan.type_next {
        sqlx::query("UPDATE task_types SET rate_tat = $2 WHERE name = $1")
            .bind(name)
            .bind(next)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
