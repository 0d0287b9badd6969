//! Schedules and the scheduler's leadership on SQLite: the same rules as on
//! PostgreSQL, each write in one `BEGIN IMMEDIATE` transaction, times from taskq's
//! clock. One node leads; a second process on the same file waits for its lease.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, after, now};
use crate::store::schedules::{bind_spec, schedule_events};
use crate::store::{
    Advance, Hint, Leader, Pass, Result, SCHEDULER_LEADERSHIP, Schedule, ScheduleSpec, ScheduleStore, Term,
    TickTask,
};

/// A schedule with its last task's status.
const SELECT: &str = "SELECT s.*, t.status AS last_task_status FROM schedules AS s \
                      LEFT JOIN tasks AS t ON t.id = s.last_task_id";

impl SqliteStore {
    async fn write_schedule_events(
        tx: &mut Transaction<'static, Sqlite>,
        name: &str,
        events: &[&'static str],
        at: DateTime<Utc>,
    ) -> Result<()> {
        for event in events {
            sqlx::query("INSERT INTO schedule_history (schedule, event, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(*event)
                .bind(at)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn schedule_in(tx: &mut Transaction<'static, Sqlite>, name: &str) -> Result<Option<Schedule>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE s.name = $1"))
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?)
    }

    /// Whether `term` still holds the scheduler's leadership; inside a write.
    async fn holds(tx: &mut Transaction<'static, Sqlite>, term: &Term, at: DateTime<Utc>) -> Result<bool> {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM leaders WHERE name = $1 AND leader_id = $2 AND elected_at = $3 AND expires_at > $4",
        )
        .bind(SCHEDULER_LEADERSHIP)
        .bind(&term.leader_id)
        .bind(term.elected_at)
        .bind(at)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(held.is_some())
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn clock(&self) -> Result<DateTime<Utc>> {
        Ok(now())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>> {
        Ok(sqlx::query_as(&format!("{SELECT} ORDER BY s.name")).fetch_all(&self.pool).await?)
    }

    async fn schedule(&self, name: &str) -> Result<Option<Schedule>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE s.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_schedule(
        &self,
        spec: &ScheduleSpec,
        next_tick: DateTime<Utc>,
    ) -> Result<Option<Schedule>> {
        let mut tx = self.write().await?;
        let at = now();
        let created = sqlx::query(
            r#"
            INSERT INTO schedules (name, cron, timezone, task, catch_up, paused, next_tick, from_file,
                                   created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
            ON CONFLICT (name) DO NOTHING
            "#,
        );
        let created = bind_spec!(created, spec, next_tick).bind(at).execute(&mut *tx).await?;
        if created.rows_affected() == 0 {
            return Ok(None);
        }
        Self::write_schedule_events(&mut tx, &spec.name, &schedule_events(None, spec), at).await?;
        let schedule = Self::schedule_in(&mut tx, &spec.name).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    async fn update_schedule(
        &self,
        spec: &ScheduleSpec,
        revision: i64,
        next_tick: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>> {
        let mut tx = self.write().await?;
        let at = now();
        let Some(before) = Self::schedule_in(&mut tx, &spec.name).await? else {
            return Ok(None);
        };
        let updated = sqlx::query(
            r#"
            UPDATE schedules SET cron = $2, timezone = $3, task = $4, catch_up = $5, paused = $6,
                next_tick = coalesce($7, next_tick), from_file = $8, revision = revision + 1,
                resumed_at = CASE WHEN paused AND NOT $6 THEN $10 ELSE resumed_at END,
                updated_at = $10
            WHERE name = $1 AND revision = $9
            "#,
        );
        let updated = bind_spec!(updated, spec, next_tick).bind(revision).bind(at).execute(&mut *tx).await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        Self::write_schedule_events(&mut tx, &spec.name, &schedule_events(Some(&before), spec), at).await?;
        let schedule = Self::schedule_in(&mut tx, &spec.name).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<Option<Schedule>> {
        let mut tx = self.write().await?;
        let at = now();
        let changed = sqlx::query(
            r#"
            UPDATE schedules SET paused = $2, revision = revision + 1, updated_at = $3,
                resumed_at = CASE WHEN NOT $2 THEN $3 ELSE resumed_at END
            WHERE name = $1 AND paused <> $2
            "#,
        )
        .bind(name)
        .bind(paused)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() > 0 {
            Self::write_schedule_events(&mut tx, name, &[if paused { "paused" } else { "resumed" }], at)
                .await?;
        }
        let schedule = Self::schedule_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let deleted =
            sqlx::query("DELETE FROM schedules WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if deleted.rows_affected() > 0 {
            Self::write_schedule_events(&mut tx, name, &["deleted"], now()).await?;
        }
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn scheduler_pass(
        &self,
        candidate: &str,
        term: Option<DateTime<Utc>>,
        ttl: Duration,
        limit: u32,
    ) -> Result<Option<Pass>> {
        let mut tx = self.write().await?;
        let at = now();
        let held: Option<Leader> =
            sqlx::query_as("SELECT leader_id, elected_at, expires_at FROM leaders WHERE name = $1")
                .bind(SCHEDULER_LEADERSHIP)
                .fetch_optional(&mut *tx)
                .await?;
        let mine = held.as_ref().is_some_and(|l| l.leader_id == candidate && Some(l.elected_at) == term);
        if held.as_ref().is_some_and(|l| !mine && l.expires_at >= at) {
            return Ok(None);
        }
        // A renewal keeps its term; a lease that ran out starts a new one.
        let elected_at = match &held {
            Some(l) if mine && l.expires_at >= at => l.elected_at,
            _ => at,
        };
        let expires_at = after(ttl);
        sqlx::query(
            r#"
            INSERT INTO leaders (name, leader_id, elected_at, expires_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE SET leader_id = excluded.leader_id,
                elected_at = excluded.elected_at, expires_at = excluded.expires_at
            "#,
        )
        .bind(SCHEDULER_LEADERSHIP)
        .bind(candidate)
        .bind(elected_at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if elected_at == at {
            let ttl = chrono::Duration::from_std(ttl).unwrap_or_default();
            sqlx::query(
                r#"
                INSERT INTO leader_terms (name, leader_id, elected_at, previous_leader_id, previous_renewed_at)
                VALUES ($1, $2, $3, $4, $5)
                "#,
            )
            .bind(SCHEDULER_LEADERSHIP)
            .bind(candidate)
            .bind(elected_at)
            .bind(held.as_ref().map(|l| l.leader_id.as_str()))
            .bind(held.as_ref().map(|l| l.expires_at - ttl))
            .execute(&mut *tx)
            .await?;
        }
        let due: Vec<Schedule> = sqlx::query_as(&format!(
            "{SELECT} WHERE NOT s.paused AND s.next_tick <= $1 ORDER BY s.next_tick LIMIT $2"
        ))
        .bind(at)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let next_due: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(next_tick) FROM schedules WHERE NOT paused AND next_tick > $1")
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(Pass { elected_at, expires_at, now: at, next_due, due }))
    }

    async fn enqueue_ticks(
        &self,
        term: Option<&Term>,
        advances: &[Advance],
        ticks: &[TickTask],
    ) -> Result<Vec<(String, i64)>> {
        let mut tx = self.write().await?;
        let at = now();
        if let Some(term) = term
            && !Self::holds(&mut tx, term, at).await?
        {
            return Ok(Vec::new());
        }
        let mut enqueued = Vec::new();
        let mut woken = Vec::new();
        for advance in advances {
            let moved = sqlx::query(
                r#"
                UPDATE schedules SET next_tick = $4, last_tick = coalesce($5, last_tick),
                    last_task_id = coalesce($6, last_task_id)
                WHERE name = $1 AND revision = $2 AND next_tick = $3 AND ($7 OR NOT paused)
                "#,
            )
            .bind(&advance.name)
            .bind(advance.revision)
            .bind(advance.expected)
            .bind(advance.next_tick)
            .bind(advance.last_tick)
            .bind(advance.last_task_id)
            .bind(term.is_none())
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                continue;
            }
            let mut count = 0;
            for tick in ticks.iter().filter(|t| t.schedule == advance.name) {
                let new = &tick.task;
                Self::ensure_queue(&mut tx, &new.queue, at).await?;
                let task = Self::insert_task(&mut tx, new, at, Some(&tick.schedule), tick.tick_at).await?;
                if let Some(task) = task {
                    woken.push(task.queue);
                    count += 1;
                }
            }
            enqueued.push((advance.name.clone(), count));
        }
        tx.commit().await?;
        if !woken.is_empty() {
            woken.sort_unstable();
            woken.dedup();
            self.wake_workers(Hint::Runnable(Some(woken)));
        }
        Ok(enqueued)
    }

    async fn resign(&self, term: &Term) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM leaders WHERE name = $1 AND leader_id = $2 AND elected_at = $3")
            .bind(SCHEDULER_LEADERSHIP)
            .bind(&term.leader_id)
            .bind(term.elected_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn leader(&self) -> Result<Option<Leader>> {
        Ok(sqlx::query_as(
            "SELECT leader_id, elected_at, expires_at FROM leaders WHERE name = $1 AND expires_at > $2",
        )
        .bind(SCHEDULER_LEADERSHIP)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?)
    }
}
