//! `GET /api/openapi.json`: the API's OpenAPI 3.1 document, generated from the handlers'
//! annotations and types, so it cannot drift from the code. `docs/openapi.json` is a
//! committed copy that a test keeps current; `/docs` renders it offline.

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{ops, queues, stream, tasks, validate};
use crate::store;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskq",
        description = "Distributed background task processing. Every error is JSON `{\"error\": \"...\"}`. \
                       When the server has API_TOKEN set, every /api route needs `Authorization: Bearer <token>`.",
        license(name = "MIT")
    ),
    paths(
        tasks::create, tasks::create_batch, tasks::list, tasks::get, tasks::history,
        tasks::cancel, tasks::retry, tasks::task_types, ops::stats, stream::stream,
        queues::list, queues::get, queues::update, queues::pause, queues::resume
    ),
    components(schemas(
        validate::CreateTask, validate::CreateBatch, tasks::TaskList, tasks::ErrorBody, tasks::TaskTypes,
        store::Task, store::HistoryEvent, store::TaskEvent, store::TaskStatus, store::EventType,
        store::Stats, store::Throughput, store::MinuteThroughput, store::WorkerInfo,
        store::QueueStats, store::QueueSettings, queues::QueueList, queues::UpdateQueue
    )),
    modifiers(&BearerAuth),
    tags((name = "tasks", description = "Create, inspect, cancel and retry tasks"),
         (name = "queues", description = "Named queues: figures, global limits, pause and resume"),
         (name = "stats", description = "Statistics and the live stream"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The document as served and as committed in `docs/openapi.json`.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}
