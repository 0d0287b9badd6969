//! The task search on PostgreSQL (`src/store/search.rs` says what each filter means).
//! One statement: every filter not given is bound as NULL and folds away in the
//! statement's plan, made for each search's values, and the id range keeps the walk
//! on the primary key.

use sqlx::PgPool;

use super::super::search::bind_search;
use super::super::{ListFilter, Result, Task};

const SEARCH: &str = r#"
    SELECT * FROM tasks
    WHERE id BETWEEN $1 AND $2
      AND ($3::uuid IS NULL OR id < $3)
      AND ($4::task_status IS NULL OR status = $4)
      AND ($5::text IS NULL OR type = $5)
      AND ($6::text IS NULL OR queue = $6)
      AND ($7::text IS NULL OR strpos(lower(name), lower($7)) > 0)
      AND ($8::timestamptz IS NULL OR created_at >= $8)
      AND ($9::timestamptz IS NULL OR created_at < $9)
      AND ($10::timestamptz IS NULL OR completed_at >= $10)
      AND ($11::timestamptz IS NULL OR completed_at < $11)
      AND ($12::text IS NULL OR payload ->> $12 = $13)
      AND ($15::text IS NULL OR schedule = $15)
    ORDER BY id DESC
    LIMIT $14
"#;

pub(super) async fn search(pool: &PgPool, filter: &ListFilter) -> Result<Vec<Task>> {
    // Unprepared, so that every search is planned with its values: a prepared
    // statement goes over to a generic plan after five runs, which cannot use the
    // indexes of the filters given (a partial index, the cursor's bound) and walks the
    // table from its newest task instead.
    Ok(bind_search!(sqlx::query_as(SEARCH).persistent(false), filter).fetch_all(pool).await?)
}
