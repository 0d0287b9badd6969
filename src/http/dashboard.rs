//! The dashboard: the files under `static/`, embedded in the binary so it works
//! offline and from any directory; and `/docs`, the API reference page.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "static/"]
struct Assets;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/docs", web::get().to(api_docs))
        .route("/static/{path:.*}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    serve("index.html")
}

/// The API reference, rendered in the browser from `/api/openapi.json`.
async fn api_docs() -> HttpResponse {
    serve("docs.html")
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    serve(&path)
}

fn serve(path: &str) -> HttpResponse {
    match Assets::get(path) {
        Some(file) => HttpResponse::Ok()
            .content_type(file.metadata.mimetype())
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(file.data.into_owned()),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "not found" })),
    }
}
