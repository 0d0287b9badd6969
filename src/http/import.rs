//! `POST /api/tasks/import`: many tasks as NDJSON, one `POST /api/tasks` body per line,
//! streamed into the database in chunks.
//!
//! The body is read as it arrives, never whole: each complete line is checked as the
//! task API checks a body, and every [`CHUNK`] good lines are inserted with one
//! statement and one commit, so an import of a million tasks holds a chunk in memory,
//! not the file. By default a bad line is answered in the report (its number and the
//! error) and the good lines around it are stored; `?atomic=true` stores nothing unless
//! every line is good (422 with the report otherwise), and then stores all of them in
//! one transaction (at most [`ATOMIC_LINES`] lines, which it must hold in memory).

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::validate::CreateTask;
use crate::metrics;
use crate::store::{NewTask, Store};

/// Good lines inserted per statement.
pub const CHUNK: usize = 1_000;
/// The most lines an atomic import takes.
pub const ATOMIC_LINES: usize = 100_000;
/// The longest line: a task of the largest payload (1 MiB) with room for its fields.
const MAX_LINE: usize = 2 * 1024 * 1024;
/// Line errors listed in the answer; the rest are counted.
const MAX_ERRORS: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Store nothing unless every line is good (at most 100,000 lines).
    #[serde(default)]
    pub atomic: bool,
}

/// What an import stored and refused.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Lines read (blank lines are skipped and not counted).
    pub lines: u64,
    /// Tasks inserted.
    pub created: u64,
    /// Lines whose idempotency key an earlier task holds: not inserted again.
    pub existing: u64,
    /// Lines refused.
    pub failed: u64,
    /// The first 1,000 refused lines, with their number (from 1) and why.
    pub errors: Vec<LineError>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineError {
    pub line: u64,
    pub error: String,
}

impl ImportReport {
    fn refuse(&mut self, line: u64, error: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(LineError { line, error });
        }
    }
}

/// Import tasks from NDJSON: one task per line, as the body of `POST /api/tasks`.
#[utoipa::path(post, path = "/api/tasks/import", tag = "tasks", params(ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson",
                 description = "One JSON task per line, as the body of POST /api/tasks"),
    responses((status = 200, description = "Every good line stored; bad ones listed", body = ImportReport),
              (status = 400, description = "A malformed query or an unreadable body", body = super::tasks::ErrorBody),
              (status = 413, description = "A line over 2 MiB, or an atomic import over 100,000 lines", body = super::tasks::ErrorBody),
              (status = 415, description = "The body is not NDJSON", body = super::tasks::ErrorBody),
              (status = 422, description = "An atomic import with a bad line: nothing stored", body = ImportReport),
              (status = 503, description = "Database unavailable: the chunks before it are stored", body = super::tasks::ErrorBody)))]
pub(super) async fn import(
    state: web::Data<AppState>,
    query: web::Query<ImportQuery>,
    request: HttpRequest,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        essence,
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" | "text/plain"
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/x-ndjson (one JSON task per line), got {content_type:?}"
        )));
    }
    let mut import =
        Import { state: &state, atomic: query.atomic, report: ImportReport::default(), pending: Vec::new() };
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(bytes) = body.next().await {
        let bytes: Bytes = bytes.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        buffer.extend_from_slice(&bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            import.line(&line[..line.len() - 1]).await?;
        }
        if buffer.len() > MAX_LINE {
            return Err(ApiError::PayloadTooLarge(format!(
                "line {} is longer than {MAX_LINE} bytes",
                import.report.lines + 1
            )));
        }
    }
    if !buffer.is_empty() {
        import.line(&buffer).await?;
    }
    import.finish().await
}

struct Import<'a> {
    state: &'a AppState,
    atomic: bool,
    report: ImportReport,
    /// Good lines not inserted yet.
    pending: Vec<NewTask>,
}

impl Import<'_> {
    async fn line(&mut self, line: &[u8]) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.report.lines += 1;
        let number = self.report.lines;
        if self.atomic && number > ATOMIC_LINES as u64 {
            return Err(ApiError::PayloadTooLarge(format!(
                "an atomic import takes at most {ATOMIC_LINES} lines; import without atomic=true"
            )));
        }
        let task = serde_json::from_slice::<CreateTask>(line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|request| {
                request
                    .validate(&self.state.registry, self.state.default_timeout, "")
                    .map_err(|e| e.to_string())
            });
        match task {
            Ok(task) => self.pending.push(task),
            Err(error) => self.report.refuse(number, error),
        }
        if !self.atomic && self.pending.len() >= CHUNK {
            self.insert().await?;
        }
        Ok(())
    }

    async fn insert(&mut self) -> Result<(), ApiError> {
        let tasks = std::mem::take(&mut self.pending);
        if tasks.is_empty() {
            return Ok(());
        }
        let created = insert(&*self.state.store, &tasks).await?;
        self.report.created += created.0;
        self.report.existing += created.1;
        Ok(())
    }

    async fn finish(mut self) -> Result<HttpResponse, ApiError> {
        if self.atomic && self.report.failed > 0 {
            return Ok(HttpResponse::UnprocessableEntity().json(self.report));
        }
        self.insert().await?;
        Ok(HttpResponse::Ok().json(self.report))
    }
}

/// Inserts `tasks` in one transaction; returns how many were inserted and how many an
/// earlier task's idempotency key held.
async fn insert(store: &dyn Store, tasks: &[NewTask]) -> Result<(u64, u64), ApiError> {
    let created = store.create_tasks(tasks).await?;
    let inserted = created.iter().filter(|c| c.inserted).count() as u64;
    for task in created.iter().filter(|c| c.inserted) {
        metrics::task_created(&task.task.task_type);
    }
    Ok((inserted, created.len() as u64 - inserted))
}
