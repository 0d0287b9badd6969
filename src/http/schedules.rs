//! The schedule API: create, list, read, change, delete, pause, resume and run now;
//! and the declaration of the schedules of `taskq.toml`, which goes through the same
//! validation.
//!
//! A schedule's first tick is computed from the database's clock, as every later one
//! is by the leader: a server whose clock is off neither moves nor repeats a tick.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::validate::CreateTask;
use super::{AppState, only};
use crate::handlers::Registry;
use crate::metrics;
use crate::schedule::Cadence;
use crate::store::{
    self, Advance, CatchUp, Leader, Schedule, ScheduleSpec, Store, Task, TaskTemplate, TickTask,
};

/// How often a write that lost a race with a concurrent change of the same schedule is
/// tried again before the client is told to retry.
const ATTEMPTS: usize = 3;

pub fn routes(cfg: &mut web::ServiceConfig) {
    fn action(path: &str, route: actix_web::Route) -> actix_web::Resource {
        web::resource(path).route(route).default_service(only("POST"))
    }
    cfg.service(
        web::resource("/schedules")
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(only("GET, POST")),
    )
    .service(
        web::resource("/schedules/{name}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(only("GET, PATCH, DELETE")),
    )
    .service(action("/schedules/{name}/pause", web::post().to(pause)))
    .service(action("/schedules/{name}/resume", web::post().to(resume)))
    .service(action("/schedules/{name}/trigger", web::post().to(trigger)));
}

/// `POST /api/schedules`, and a `[[schedules]]` table of `taskq.toml`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Unique: 1 to 64 characters of `[a-z0-9_.-]`.
    #[schema(value_type = String, required = true, pattern = "^[a-z0-9_.-]{1,64}$", example = "nightly-report")]
    pub name: Option<String>,
    /// Five fields (minute hour day-of-month month day-of-week), an optional leading
    /// seconds field, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schema(value_type = String, required = true, example = "0 3 * * *")]
    pub cron: Option<String>,
    /// The IANA time zone the expression is read in; default `UTC`.
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// The task each tick enqueues (as `POST /api/tasks` takes it, without `run_at`,
    /// `delay_seconds` and `idempotency_key`).
    #[schema(value_type = CreateTask, required = true)]
    pub task: Option<CreateTask>,
    /// Ticks missed while no process led or while paused: `skip`, `latest` (default:
    /// one task for the most recent) or `all` (one each, the most recent 100 at most).
    #[serde(default, deserialize_with = "catch_up_field")]
    pub catch_up: Option<CatchUp>,
    /// Created paused; default false.
    pub paused: Option<bool>,
}

/// `PATCH /api/schedules/{name}`: the fields given replace the schedule's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    pub cron: Option<String>,
    pub timezone: Option<String>,
    #[schema(value_type = Option<CreateTask>)]
    pub task: Option<CreateTask>,
    #[serde(default, deserialize_with = "catch_up_field")]
    pub catch_up: Option<CatchUp>,
    pub paused: Option<bool>,
}

/// `catch_up` as given, with its name in the message when it is not one of the three.
fn catch_up_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CatchUp>, D::Error> {
    use serde::de::Error as _;
    Option::<CatchUp>::deserialize(d).map_err(|e| D::Error::custom(format!("catch_up: {e}")))
}

/// Every schedule, and the process that leads the scheduler.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
    /// `null` while no process leads (a new leader is elected within seconds).
    pub leader: Option<Leader>,
}

/// What validating a request needs besides the request.
struct Rules<'a> {
    registry: &'a Registry,
    default_timeout: i64,
}

impl Rules<'_> {
    /// A task request as a schedule's template.
    fn template(&self, task: CreateTask) -> Result<TaskTemplate, ApiError> {
        let fixed = [
            ("run_at", task.run_at.is_some()),
            ("delay_seconds", task.delay_seconds.is_some()),
            ("idempotency_key", task.idempotency_key.is_some()),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, set)| *set) {
            return Err(ApiError::BadRequest(format!(
                "task.{field} cannot be set on a schedule's task: each tick runs its task at once"
            )));
        }
        Ok(TaskTemplate::of(&task.validate(self.registry, self.default_timeout, "task.")?))
    }
}

/// A parsed definition: the spec to store and its cadence.
fn definition(
    name: String,
    cron: String,
    timezone: String,
    task: TaskTemplate,
    catch_up: CatchUp,
    paused: bool,
) -> Result<(ScheduleSpec, Cadence), ApiError> {
    let cadence = Cadence::parse(&cron, &timezone).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((ScheduleSpec { name, cron, timezone, task, catch_up, paused, from_file: false }, cadence))
}

impl CreateSchedule {
    fn validate(self, rules: &Rules) -> Result<(ScheduleSpec, Cadence), ApiError> {
        let required = |field: &str| ApiError::BadRequest(format!("{field} is required"));
        let name = self.name.ok_or_else(|| required("name"))?;
        store::check_schedule_name(&name).map_err(|why| ApiError::BadRequest(format!("name: {why}")))?;
        let cron = self.cron.ok_or_else(|| required("cron"))?;
        let task = rules.template(self.task.ok_or_else(|| required("task"))?)?;
        let timezone = self.timezone.unwrap_or_else(|| "UTC".into());
        definition(
            name,
            cron,
            timezone,
            task,
            self.catch_up.unwrap_or_default(),
            self.paused.unwrap_or(false),
        )
    }
}

/// The first tick of a new or changed cadence: the first after the database's now.
async fn first_tick(store: &dyn Store, cadence: &Cadence) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let now = store.clock().await?;
    cadence.after(now).ok_or_else(|| ApiError::BadRequest("cron never matches again".into()))
}

fn schedule_name(raw: &str) -> Result<&str, ApiError> {
    store::check_schedule_name(raw).map_err(|_| ApiError::NotFound("schedule not found"))?;
    Ok(raw)
}

fn rules(state: &AppState) -> Rules<'_> {
    Rules { registry: &state.registry, default_timeout: state.default_timeout }
}

/// Create a schedule.
#[utoipa::path(post, path = "/api/schedules", tag = "schedules", request_body = CreateSchedule,
    responses((status = 201, body = Schedule),
              (status = 400, description = "Invalid request: the message names the field, expression or zone", body = super::tasks::ErrorBody),
              (status = 409, description = "A schedule of that name exists", body = super::tasks::ErrorBody),
              (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateSchedule>,
) -> Result<HttpResponse, ApiError> {
    let (spec, cadence) = body.into_inner().validate(&rules(&state))?;
    let next_tick = first_tick(&*state.store, &cadence).await?;
    let created = state.store.create_schedule(&spec, next_tick).await?;
    let created = created.ok_or_else(|| ApiError::Clash(format!("schedule {:?} exists", spec.name)))?;
    Ok(HttpResponse::Created().json(created))
}

/// Every schedule with its next and last tick, its last task, and the leader.
#[utoipa::path(get, path = "/api/schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList), (status = 503, body = super::tasks::ErrorBody)))]
pub(super) async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let schedules = state.store.schedules().await?;
    let leader = state.store.leader().await?;
    Ok(HttpResponse::Ok().json(ScheduleList { schedules, leader }))
}

/// One schedule.
#[utoipa::path(get, path = "/api/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = Schedule), (status = 404, body = super::tasks::ErrorBody)))]
pub(super) async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule = state.store.schedule(schedule_name(&name)?).await?;
    Ok(HttpResponse::Ok().json(schedule.ok_or(ApiError::NotFound("schedule not found"))?))
}

/// Change a schedule: a new expression or zone restarts its ticks from now.
#[utoipa::path(patch, path = "/api/schedules/{name}", tag = "schedules", request_body = UpdateSchedule,
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = Schedule), (status = 400, body = super::tasks::ErrorBody),
              (status = 404, body = super::tasks::ErrorBody),
              (status = 409, description = "Changed concurrently; try again", body = super::tasks::ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<UpdateSchedule>,
) -> Result<HttpResponse, ApiError> {
    let name = schedule_name(&name)?;
    let change = body.into_inner();
    let task = change.task.map(|task| rules(&state).template(task)).transpose()?;
    for _ in 0..ATTEMPTS {
        let current = state.store.schedule(name).await?.ok_or(ApiError::NotFound("schedule not found"))?;
        let (mut spec, cadence) = definition(
            current.name.clone(),
            change.cron.clone().unwrap_or_else(|| current.cron.clone()),
            change.timezone.clone().unwrap_or_else(|| current.timezone.clone()),
            task.clone().unwrap_or_else(|| current.task.clone()),
            change.catch_up.unwrap_or(current.catch_up),
            change.paused.unwrap_or(current.paused),
        )?;
        spec.from_file = current.from_file;
        if let Some(updated) = write_over(&*state.store, &current, &spec, &cadence).await? {
            return Ok(HttpResponse::Ok().json(updated));
        }
    }
    Err(ApiError::Clash(format!("schedule {name:?} kept changing while being updated; try again")))
}

/// Writes `spec` over `current` if it is still at its revision; a new expression or
/// zone restarts the ticks from the database's now.
async fn write_over(
    store: &dyn Store,
    current: &Schedule,
    spec: &ScheduleSpec,
    cadence: &Cadence,
) -> Result<Option<Schedule>, ApiError> {
    let restart = (&spec.cron, &spec.timezone) != (&current.cron, &current.timezone);
    let next_tick = if restart { Some(first_tick(store, cadence).await?) } else { None };
    Ok(store.update_schedule(spec, current.revision, next_tick).await?)
}

/// Delete a schedule; its tasks stay.
#[utoipa::path(delete, path = "/api/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = super::tasks::ErrorBody)))]
pub(super) async fn delete(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.store.delete_schedule(schedule_name(&name)?).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("schedule not found"))
    }
}

/// Pause a schedule: once answered, none of its ticks is enqueued until it is resumed.
#[utoipa::path(post, path = "/api/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = Schedule), (status = 404, body = super::tasks::ErrorBody)))]
pub(super) async fn pause(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true).await
}

/// Resume a schedule; the ticks missed while paused follow its `catch_up`.
#[utoipa::path(post, path = "/api/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = Schedule), (status = 404, body = super::tasks::ErrorBody)))]
pub(super) async fn resume(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, false).await
}

async fn set_paused(state: &AppState, name: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    let schedule = state.store.pause_schedule(schedule_name(name)?, paused).await?;
    Ok(HttpResponse::Ok().json(schedule.ok_or(ApiError::NotFound("schedule not found"))?))
}

/// Run now: enqueue the schedule's task at once, paused or not. The task carries the
/// schedule and no `tick_at`; the ticks go on as before.
#[utoipa::path(post, path = "/api/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 201, body = Task), (status = 404, body = super::tasks::ErrorBody),
              (status = 409, description = "Changed concurrently; try again", body = super::tasks::ErrorBody)))]
pub(super) async fn trigger(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = schedule_name(&name)?;
    for _ in 0..ATTEMPTS {
        let schedule = state.store.schedule(name).await?.ok_or(ApiError::NotFound("schedule not found"))?;
        let run =
            TickTask { schedule: schedule.name.clone(), tick_at: None, task: schedule.task.instantiate() };
        let id = run.task.id;
        let advance = Advance {
            name: schedule.name.clone(),
            revision: schedule.revision,
            expected: schedule.next_tick,
            next_tick: schedule.next_tick,
            last_tick: None,
            last_task_id: Some(id),
        };
        // The leader may move the schedule on between the read and this write.
        if state.store.enqueue_ticks(None, &[advance], &[run]).await?.is_empty() {
            continue;
        }
        let task = state.store.get_task(id).await?.ok_or(ApiError::NotFound("task not found"))?;
        metrics::task_created(&task.task_type);
        return Ok(HttpResponse::Created().json(task));
    }
    Err(ApiError::Clash(format!("schedule {name:?} kept changing while being run; try again")))
}

/// Applies the `[[schedules]]` of `taskq.toml` at start: each is created, or written
/// over the schedule of its name (the file wins over API edits). A schedule's pause
/// is kept unless the file sets `paused`. Any invalid entry stops the start with a
/// message naming it.
pub async fn declare(
    store: &dyn Store,
    registry: &Registry,
    default_timeout: i64,
    declared: &[Value],
) -> anyhow::Result<()> {
    let rules = Rules { registry, default_timeout };
    for (index, raw) in declared.iter().enumerate() {
        let label = raw["name"]
            .as_str()
            .map_or(format!("[[schedules]] #{}", index + 1), |n| format!("[[schedules]] {n:?}"));
        let request: CreateSchedule =
            serde_json::from_value(raw.clone()).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        let explicit_pause = request.paused;
        let (mut spec, cadence) = request.validate(&rules).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        spec.from_file = true;
        declare_one(store, spec, explicit_pause, &cadence)
            .await
            .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    }
    Ok(())
}

async fn declare_one(
    store: &dyn Store,
    mut spec: ScheduleSpec,
    explicit_pause: Option<bool>,
    cadence: &Cadence,
) -> Result<(), ApiError> {
    for _ in 0..ATTEMPTS {
        match store.schedule(&spec.name).await? {
            None => {
                if store.create_schedule(&spec, first_tick(store, cadence).await?).await?.is_some() {
                    return Ok(());
                }
            }
            Some(current) => {
                spec.paused = explicit_pause.unwrap_or(current.paused);
                if write_over(store, &current, &spec, cadence).await?.is_some() {
                    return Ok(());
                }
            }
        }
    }
    Err(ApiError::Clash("kept changing while being applied".into()))
}
