//! `GET /api/openapi.json`: the API's OpenAPI 3.1 document, generated from the handlers'
//! annotations and types, so it cannot drift from the code. `docs/openapi.json` is a
//! committed copy that a test keeps current; `/docs` renders it offline.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::{AppState, bulk, import, ops, queues, schedules, search, stream, tasks, validate};
use crate::store;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskq",
        description = "Distributed background task processing. Every error is JSON `{\"error\": \"...\"}`. \
                       A server with API_TOKEN set serves this document with bearer authentication on \
                       every operation (and 401 among the answers); this document itself stays open.",
        license(name = "MIT")
    ),
    paths(
        tasks::create, tasks::create_batch, tasks::list, tasks::get, tasks::history,
        tasks::cancel, tasks::retry, import::import, bulk::bulk, tasks::task_types, ops::stats, stream::stream,
        queues::list, queues::get, queues::update, queues::update_type, queues::pause, queues::resume,
        schedules::create, schedules::list, schedules::get, schedules::update, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger
    ),
    components(schemas(
        validate::CreateTask, validate::CreateBatch, validate::CancelRequest, tasks::TaskList, tasks::ErrorBody, tasks::TaskTypes,
        store::Task, store::HistoryEvent, store::TaskEvent, store::TaskStatus, store::EventType,
        store::Progress, store::TaskProgress,
        store::Stats, store::Throughput, store::MinuteThroughput, store::WorkerInfo,
        store::QueueStats, store::QueueSettings, queues::QueueList, queues::UpdateQueue, queues::UpdateType,
        store::TypeSettings, store::flow::RateLimitJson, import::ImportReport, import::LineError, store::flow::HoldReason, tasks::TaskDetail,
        bulk::BulkRequest, search::TaskQuery, store::BulkAction, store::BulkOutcome,
        store::Schedule, store::TaskTemplate, store::CatchUp, store::Leader, schedules::CreateSchedule,
        schedules::UpdateSchedule, schedules::ScheduleList
    )),
    tags((name = "tasks", description = "Create, inspect, search, cancel and retry tasks, one or in bulk"),
         (name = "queues", description = "Named queues: figures, global limits, pause and resume"),
         (name = "schedules", description = "Periodic tasks: cron schedules, pause, resume and run now"),
         (name = "stats", description = "Statistics and the live stream"))
)]
pub struct ApiDoc;

/// The document a server serves: with `auth` (API_TOKEN set), every operation needs a
/// bearer token and may answer 401; without, none does. `docs/openapi.json` is the
/// document with `auth`.
pub fn document(auth: bool, task_types: &[&str]) -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    refine(&mut document, auth, task_types);
    serde_json::to_string_pretty(&document).expect("the OpenAPI document serialises")
}

/// What the annotations cannot say.
fn refine(document: &mut Value, auth: bool, task_types: &[&str]) {
    let create = &mut document["components"]["schemas"]["CreateTask"];
    // A request may schedule with `run_at` or with `delay_seconds`, not both.
    create["not"] = json!({ "required": ["run_at", "delay_seconds"] });
    for text in ["name", "idempotency_key"] {
        create["properties"][text]["pattern"] = json!(validate::text_pattern());
    }
    // The types this server's registry has (matched without regard to case).
    create["properties"]["type"]["enum"] = json!(task_types);

    // A filter given empty is no filter.
    if let Some(parameters) = document["paths"]["/api/tasks"]["get"]["parameters"].as_array_mut() {
        for parameter in parameters {
            let schema = match parameter["name"].as_str() {
                Some("status") => {
                    json!({ "anyOf": [{ "$ref": "#/components/schemas/TaskStatus" }, { "const": "" }] })
                }
                Some("queue" | "schedule") => {
                    json!({ "type": "string", "pattern": "^([a-z0-9_.-]{1,64})?$" })
                }
                Some("cursor") => {
                    json!({ "anyOf": [{ "type": "string", "format": "uuid" }, { "const": "" }] })
                }
                Some("created_after" | "created_before" | "finished_after" | "finished_before") => {
                    json!({ "anyOf": [{ "type": "string", "format": "date-time" }, { "const": "" }] })
                }
                Some("id") => json!({ "type": "string", "pattern": "^[0-9a-fA-F-]{0,36}$" }),
                Some("payload") => json!({ "type": "string", "pattern": "^([A-Za-z0-9_.-]{1,64}=.*)?$" }),
                _ => continue,
            };
            parameter["schema"] = schema;
        }
    }
    // Each Server-Sent Event of the stream, as an object of its fields (without
    // `itemSchema`, OpenAPI 3.1 has `schema` describe one event): `data` is JSON.
    let event = |name: &str, schema: &str, id: bool| {
        let mut event = json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": { "const": name },
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": { "$ref": format!("#/components/schemas/{schema}") },
                },
                "id": { "type": "string", "description": "The id of the last `task` event sent" },
                "retry": { "type": "integer" },
            },
        });
        if id {
            event["required"] = json!(["event", "data", "id"]);
        }
        event
    };
    document["paths"]["/api/tasks/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"] = json!({ "oneOf": [
            event("stats", "Stats", false),
            event("task", "TaskEvent", true),
            event("progress", "TaskProgress", false),
        ] });

    if !auth {
        return;
    }
    document["components"]["securitySchemes"] = json!({ "bearer": { "type": "http", "scheme": "bearer" } });
    document["security"] = json!([{ "bearer": [] }]);
    let unauthorized = json!({
        "description": "Missing or invalid bearer token",
        "headers": { "WWW-Authenticate": { "schema": { "type": "string", "const": "Bearer" } } },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    });
    if let Some(paths) = document["paths"].as_object_mut() {
        for operation in
            paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut())
        {
            operation["responses"]["401"] = unauthorized.clone();
        }
    }
}

/// `GET /api/openapi.json`, open even with API_TOKEN set.
pub async fn serve(state: web::Data<AppState>) -> HttpResponse {
    let document = document(!state.api_tokens.is_empty(), &state.registry.types());
    HttpResponse::Ok().content_type("application/json").body(document)
}
