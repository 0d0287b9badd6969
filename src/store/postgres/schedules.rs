//! Schedules and the scheduler's leadership on PostgreSQL.
//!
//! The leader's pass is one statement whatever the number of schedules: it renews
//! (or wins) the lease, records a new term in `leader_terms`, and reads the due
//! schedules and the earliest next tick through `schedules_due_idx`. With nothing due
//! that statement is all the leader sends, once a second. The enqueue that follows is
//! one statement too, fenced on the term and on each schedule's revision and next tick.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{FromRow, Row};
use uuid::Uuid;

use super::PgStore;
use crate::store::schedules::{bind_spec, schedule_events};
use crate::store::{
    Advance, Leader, Pass, Result, SCHEDULER_LEADERSHIP, Schedule, ScheduleSpec, ScheduleStore, Term,
    TickTask,
};

/// A schedule with its last task's status.
const SELECT: &str = "SELECT s.*, t.status AS last_task_status FROM schedules AS s \
                      LEFT JOIN tasks AS t ON t.id = s.last_task_id";

/// Wins or renews the lease, records a new term, and reads what is due (see
/// [`ScheduleStore::scheduler_pass`]). A renewal must name the term it renews (`$3`);
/// a lease that ran out goes to whoever asks first, its old holder included (as a new
/// term). `elected_at = now()` only for a term won by this very statement.
const PASS: &str = r#"
WITH previous AS (
    SELECT leader_id, expires_at FROM leaders WHERE name = $1
), held AS (
    INSERT INTO leaders AS l (name, leader_id, elected_at, expires_at)
    VALUES ($1, $2, now(), now() + make_interval(secs => $4))
    ON CONFLICT (name) DO UPDATE SET
        leader_id = excluded.leader_id,
        elected_at = CASE WHEN l.leader_id = excluded.leader_id AND l.elected_at = $3
                               AND l.expires_at >= now()
                          THEN l.elected_at ELSE excluded.elected_at END,
        expires_at = excluded.expires_at
    WHERE (l.leader_id = excluded.leader_id AND l.elected_at = $3) OR l.expires_at < now()
    RETURNING l.elected_at, l.expires_at
), term AS (
    INSERT INTO leader_terms (name, leader_id, elected_at, previous_leader_id, previous_renewed_at)
    SELECT $1, $2, h.elected_at, p.leader_id, p.expires_at - make_interval(secs => $4)
    FROM held AS h LEFT JOIN previous AS p ON true
    WHERE h.elected_at = now()
)
SELECT h.elected_at, h.expires_at, now() AS now,
       (SELECT min(next_tick) FROM schedules WHERE NOT paused AND next_tick > now()) AS next_due,
       d.*
FROM held AS h
LEFT JOIN LATERAL (
    SELECT s.*, t.status AS last_task_status FROM schedules AS s
    LEFT JOIN tasks AS t ON t.id = s.last_task_id
    WHERE NOT s.paused AND s.next_tick <= now()
    ORDER BY s.next_tick
    LIMIT $5
) AS d ON true
"#;

/// Moves schedules on and inserts their tasks with their first events, in one
/// statement. Without a term (`$3` null: a manual run) there is no leadership fence
/// and a paused schedule runs too.
const ENQUEUE: &str = r#"
WITH leader AS (
    SELECT 1 FROM leaders
    WHERE name = $1 AND leader_id = $2 AND elected_at = $3 AND expires_at > now()
), advanced AS (
    UPDATE schedules AS s SET
        next_tick = a.next_tick,
        last_tick = coalesce(a.last_tick, s.last_tick),
        last_task_id = coalesce(a.last_task_id, s.last_task_id)
    FROM unnest($4::text[], $5::int8[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::uuid[])
        AS a (name, revision, expected, next_tick, last_tick, last_task_id)
    WHERE s.name = a.name AND s.revision = a.revision AND s.next_tick = a.expected
      AND ($3::timestamptz IS NULL OR (NOT s.paused AND EXISTS (SELECT 1 FROM leader)))
    RETURNING s.name
), input AS (
    SELECT * FROM unnest($10::uuid[], $11::text[], $12::timestamptz[], $13::text[], $14::text[],
                         $15::text[], $16::int[], $17::int[], $18::int[], $19::int[], $20::text[],
                         $21::int[])
        AS i (id, schedule, tick_at, name, type, payload, priority, max_retries, backoff_seconds,
              timeout_seconds, queue, max_snoozes)
    WHERE i.schedule IN (SELECT name FROM advanced)
), known AS (
    INSERT INTO queues (name) SELECT DISTINCT queue FROM input
    ON CONFLICT (name) DO NOTHING
), inserted AS (
    INSERT INTO tasks (id, name, type, payload, priority, max_retries, backoff_seconds,
                       timeout_seconds, queue, schedule, tick_at, max_snoozes)
    SELECT id, name, type, payload::jsonb, priority, max_retries, backoff_seconds,
           timeout_seconds, queue, schedule, tick_at, max_snoozes
    FROM input
    ON CONFLICT (id) DO NOTHING
    RETURNING id, schedule, created_at
), history AS (
    INSERT INTO task_history (task_id, event_type, status, retry_count, created_at)
    SELECT id, 'task_queued', 'queued', 0, created_at FROM inserted
)
SELECT a.name, (SELECT count(*) FROM inserted AS i WHERE i.schedule = a.name) AS enqueued
FROM advanced AS a
"#;

impl PgStore {
    async fn write_schedule_events(
        tx: &mut sqlx::PgConnection,
        name: &str,
        events: &[&'static str],
    ) -> Result<()> {
        sqlx::query("INSERT INTO schedule_history (schedule, event) SELECT $1, unnest($2::text[])")
            .bind(name)
            .bind(events)
            .execute(tx)
            .await?;
        Ok(())
    }

    async fn schedule_in(tx: &mut sqlx::PgConnection, name: &str) -> Result<Option<Schedule>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE s.name = $1")).bind(name).fetch_optional(tx).await?)
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn clock(&self) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()").fetch_one(&self.pool).await?)
    }

    async fn schedules(&self) -> Result<Vec<Schedule>> {
        Ok(sqlx::query_as(&format!("{SELECT} ORDER BY s.name")).fetch_all(&self.pool).await?)
    }

    async fn schedule(&self, name: &str) -> Result<Option<Schedule>> {
        let mut conn = self.pool.acquire().await?;
        Self::schedule_in(&mut conn, name).await
    }

    async fn create_schedule(
        &self,
        spec: &ScheduleSpec,
        next_tick: DateTime<Utc>,
    ) -> Result<Option<Schedule>> {
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            r#"
            INSERT INTO schedules (name, cron, timezone, task, catch_up, paused, next_tick, from_file)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (name) DO NOTHING
            "#,
        );
        let created = bind_spec!(created, spec, next_tick).execute(&mut *tx).await?;
        if created.rows_affected() == 0 {
            return Ok(None);
        }
        Self::write_schedule_events(&mut tx, &spec.name, &schedule_events(None, spec)).await?;
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
        let mut tx = self.pool.begin().await?;
        let Some(before) = Self::schedule_in(&mut tx, &spec.name).await? else {
            return Ok(None);
        };
        let updated = sqlx::query(
            r#"
            UPDATE schedules SET cron = $2, timezone = $3, task = $4, catch_up = $5, paused = $6,
                next_tick = coalesce($7, next_tick), from_file = $8, revision = revision + 1,
                resumed_at = CASE WHEN paused AND NOT $6 THEN now() ELSE resumed_at END,
                updated_at = now()
            WHERE name = $1 AND revision = $9
            "#,
        );
        let updated = bind_spec!(updated, spec, next_tick).bind(revision).execute(&mut *tx).await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        Self::write_schedule_events(&mut tx, &spec.name, &schedule_events(Some(&before), spec)).await?;
        let schedule = Self::schedule_in(&mut tx, &spec.name).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    async fn pause_schedule(&self, name: &str, paused: bool) -> Result<Option<Schedule>> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            r#"
            UPDATE schedules SET paused = $2, revision = revision + 1, updated_at = now(),
                resumed_at = CASE WHEN NOT $2 THEN now() ELSE resumed_at END
            WHERE name = $1 AND paused <> $2
            "#,
        )
        .bind(name)
        .bind(paused)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() > 0 {
            Self::write_schedule_events(&mut tx, name, &[if paused { "paused" } else { "resumed" }]).await?;
        }
        let schedule = Self::schedule_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM schedules WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if deleted.rows_affected() > 0 {
            Self::write_schedule_events(&mut tx, name, &["deleted"]).await?;
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
        let rows = sqlx::query(PASS)
            .bind(SCHEDULER_LEADERSHIP)
            .bind(candidate)
            .bind(term)
            .bind(ttl.as_secs_f64())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut due = Vec::with_capacity(rows.len());
        for row in rows.iter().filter(|row| row.get::<Option<String>, _>("name").is_some()) {
            due.push(Schedule::from_row(row)?);
        }
        Ok(Some(Pass {
            elected_at: first.get("elected_at"),
            expires_at: first.get("expires_at"),
            now: first.get("now"),
            next_due: first.get("next_due"),
            due,
        }))
    }

    async fn enqueue_ticks(
        &self,
        term: Option<&Term>,
        advances: &[Advance],
        ticks: &[TickTask],
    ) -> Result<Vec<(String, i64)>> {
        let column = |f: fn(&TickTask) -> String| ticks.iter().map(f).collect::<Vec<String>>();
        let number = |f: fn(&TickTask) -> i32| ticks.iter().map(f).collect::<Vec<i32>>();
        let rows = sqlx::query(ENQUEUE)
            .bind(SCHEDULER_LEADERSHIP)
            .bind(term.map(|t| t.leader_id.as_str()))
            .bind(term.map(|t| t.elected_at))
            .bind(advances.iter().map(|a| a.name.as_str()).collect::<Vec<_>>())
            .bind(advances.iter().map(|a| a.revision).collect::<Vec<_>>())
            .bind(advances.iter().map(|a| a.expected).collect::<Vec<_>>())
            .bind(advances.iter().map(|a| a.next_tick).collect::<Vec<_>>())
            .bind(advances.iter().map(|a| a.last_tick).collect::<Vec<_>>())
            .bind(advances.iter().map(|a| a.last_task_id).collect::<Vec<Option<Uuid>>>())
            .bind(ticks.iter().map(|t| t.task.id).collect::<Vec<_>>())
            .bind(column(|t| t.schedule.clone()))
            .bind(ticks.iter().map(|t| t.tick_at).collect::<Vec<_>>())
            .bind(column(|t| t.task.name.clone()))
            .bind(column(|t| t.task.task_type.clone()))
            .bind(column(|t| t.task.payload.to_string()))
            .bind(number(|t| t.task.priority))
            .bind(number(|t| t.task.max_retries))
            .bind(number(|t| t.task.backoff_seconds))
            .bind(number(|t| t.task.timeout_seconds))
            .bind(column(|t| t.task.queue.clone()))
            .bind(number(|t| t.task.max_snoozes))
            .fetch_all(&self.pool)
            .await?;
        let enqueued: Vec<(String, i64)> =
            rows.iter().map(|row| (row.get("name"), row.get("enqueued"))).collect();
        let woken: Vec<&str> = ticks
            .iter()
            .filter(|t| enqueued.iter().any(|(name, n)| *n > 0 && *name == t.schedule))
            .map(|t| t.task.queue.as_str())
            .collect();
        if !woken.is_empty() {
            self.wake_workers(Some(crate::store::distinct(woken.into_iter())));
        }
        Ok(enqueued)
    }

    async fn resign(&self, term: &Term) -> Result<()> {
        sqlx::query("DELETE FROM leaders WHERE name = $1 AND leader_id = $2 AND elected_at = $3")
            .bind(SCHEDULER_LEADERSHIP)
            .bind(&term.leader_id)
            .bind(term.elected_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn leader(&self) -> Result<Option<Leader>> {
        Ok(sqlx::query_as(
            "SELECT leader_id, elected_at, expires_at FROM leaders WHERE name = $1 AND expires_at > now()",
        )
        .bind(SCHEDULER_LEADERSHIP)
        .fetch_optional(&self.pool)
        .await?)
    }
}
