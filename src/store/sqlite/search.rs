//! The task search on SQLite (`src/store/search.rs` says what each filter means).
//! Times are RFC 3339 text in UTC, which compares in time order; a payload key is
//! quoted in the JSON path, so it names one top-level key whatever it holds.

use sqlx::SqlitePool;

use super::super::search::bind_search;
use super::super::{ListFilter, Result, Task};

const SEARCH: &str = r#"
    SELECT * FROM tasks
    WHERE id BETWEEN $1 AND $2
      AND ($3 IS NULL OR id < $3)
      AND ($4 IS NULL OR status = $4)
      AND ($5 IS NULL OR type = $5)
      AND ($6 IS NULL OR queue = $6)
      AND ($7 IS NULL OR instr(lower(name), lower($7)) > 0)
      AND ($8 IS NULL OR created_at >= $8)
      AND ($9 IS NULL OR created_at < $9)
      AND ($10 IS NULL OR completed_at >= $10)
      AND ($11 IS NULL OR completed_at < $11)
      AND ($12 IS NULL OR CAST(json_extract(payload, '$."' || $12 || '"') AS TEXT) = $13)
      AND ($15 IS NULL OR schedule = $15)
    ORDER BY id DESC
    LIMIT $14
"#;

pub(super) async fn search(pool: &SqlitePool, filter: &ListFilter) -> Result<Vec<Task>> {
    Ok(bind_search!(sqlx::query_as(SEARCH), filter).fetch_all(pool).await?)
}
