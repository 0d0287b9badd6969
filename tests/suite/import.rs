//! `POST /api/tasks/import`: NDJSON streamed in chunks, bad lines reported beside the
//! stored good ones, or nothing stored with `atomic=true`.

use rstest::rstest;
use serde_json::{Value, json};
use taskq::store::{Backend, ListFilter};

use crate::api::json_of;
use crate::helpers::*;

async fn import(app: &TestApp, query: &str, content_type: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url(&format!("/api/tasks/import{query}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

fn lines(count: usize, prefix: &str) -> Vec<String> {
    (0..count)
        .map(|i| json!({"name": format!("{prefix}-{i}"), "type": "noop", "queue": "nobody"}).to_string())
        .collect()
}

async fn stored(app: &TestApp) -> usize {
    let filter = ListFilter { queue: Some("nobody".into()), limit: 10_000, ..Default::default() };
    let store = app.db.store().await;
    let count = store.list_tasks(&filter).await.unwrap().len();
    store.close().await;
    count
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn an_import_stores_the_good_lines_in_chunks_and_names_the_bad_ones(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = lines(2_500, "good");
    body.insert(10, "{not json".into());
    body.insert(1_500, json!({"name": "x", "type": "no_such_type"}).to_string());
    body.insert(2_000, String::new());
    let with_key = json!({"name": "keyed", "type": "noop", "queue": "nobody", "idempotency_key": "import-1"})
        .to_string();
    body.push(with_key.clone());
    body.push(with_key);
    let (status, report) = import(&app, "", "application/x-ndjson", body.join("\r\n")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["lines"], 2_504, "blank lines are not counted");
    assert_eq!(
        (report["created"].clone(), report["existing"].clone(), report["failed"].clone()),
        (json!(2_501), json!(1), json!(2))
    );
    assert_eq!(report["errors"][0]["line"], 11);
    assert!(report["errors"][0]["error"].as_str().unwrap().starts_with("invalid JSON"), "{report}");
    assert_eq!(report["errors"][1]["line"], 1_501);
    assert!(
        report["errors"][1]["error"].as_str().unwrap().contains("not a registered task type"),
        "{report}"
    );
    assert_eq!(stored(&app).await, 2_501);
    app.stop().await;
}

#[rstest]
#[case::postgres(Backend::Postgres)]
#[case::sqlite(Backend::Sqlite)]
#[actix_rt::test]
async fn an_atomic_import_stores_all_lines_or_none(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let mut bad = lines(1_200, "atomic");
    bad.push(json!({"name": "x", "type": "noop", "priority": 5000}).to_string());
    let (status, report) = import(&app, "?atomic=true", "application/x-ndjson", bad.join("\n")).await;
    assert_eq!(status, 422, "{report}");
    assert_eq!((report["created"].clone(), report["failed"].clone()), (json!(0), json!(1)));
    assert!(report["errors"][0]["error"].as_str().unwrap().contains("priority"), "{report}");
    assert_eq!(stored(&app).await, 0, "nothing stored");

    let (status, report) =
        import(&app, "?atomic=true", "application/x-ndjson", lines(1_200, "all").join("\n")).await;
    assert_eq!((status, report["created"].clone()), (200, json!(1_200)), "{report}");
    assert_eq!(stored(&app).await, 1_200);

    let (status, error) = import(&app, "", "application/json", lines(1, "x").join("\n")).await;
    assert_eq!(status, 415);
    assert!(error["error"].as_str().unwrap().contains("application/x-ndjson"), "{error}");
    let (status, error) =
        import(&app, "?atomic=maybe", "application/x-ndjson", lines(1, "x").join("\n")).await;
    assert_eq!(status, 400, "{error}");
    app.stop().await;
}
