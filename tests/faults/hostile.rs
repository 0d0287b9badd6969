//! Hostile input against the shipped binary: a table of malformed requests, each of
//! which must be answered with a 4xx JSON error that shows no internals and stores
//! nothing; then a seeded random fuzz of request bodies and paths with zero 5xx.
//! (`scripts/faults.sh` adds an OpenAPI-driven run with schemathesis.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::harness::*;

/// Words that would show a client the server's internals.
const INTERNALS: [&str; 9] = [
    "sqlx",
    "sqlite",
    "postgres",
    "sqlstate",
    "panicked",
    ".rs:",
    "constraint",
    "syntax error",
    "database error",
];

fn shows_internals(body: &str) -> Option<&'static str> {
    let lower = body.to_lowercase();
    INTERNALS.into_iter().find(|word| lower.contains(word))
}

/// One raw HTTP/1.1 exchange: returns the status and the body.
fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = socket.write_all(request);
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}\r\n").into_bytes()
}

fn nested(depth: usize) -> String {
    format!(r#"{{"name":"deep","type":"noop","payload":{{"a":{}{}}}}}"#, "[".repeat(depth), "]".repeat(depth))
}

/// The table: what is sent, and why it is wrong.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    const JSON: &str = "application/json";
    let body = |s: &str| post("/api/tasks", JSON, s.as_bytes());
    vec![
        ("truncated JSON", body(r#"{"name": "x", "type": "#)),
        ("empty body", body("")),
        ("not an object", body("[1, 2, 3]")),
        ("null body", body("null")),
        ("a bare string", body(r#""noop""#)),
        ("invalid UTF-8", post("/api/tasks", JSON, b"{\"name\": \"\xff\xfe\", \"type\": \"noop\"}")),
        ("name is a number", body(r#"{"name": 5, "type": "noop"}"#)),
        ("type is an array", body(r#"{"name": "x", "type": []}"#)),
        ("payload is a string", body(r#"{"name": "x", "type": "noop", "payload": "x"}"#)),
        ("payload is an array", body(r#"{"name": "x", "type": "noop", "payload": [1]}"#)),
        ("priority is a word", body(r#"{"name": "x", "type": "noop", "priority": "high"}"#)),
        ("max_retries is a fraction", body(r#"{"name": "x", "type": "noop", "max_retries": 1.5}"#)),
        ("timeout_seconds is a bool", body(r#"{"name": "x", "type": "noop", "timeout_seconds": true}"#)),
        ("missing name", body(r#"{"type": "noop"}"#)),
        ("missing type", body(r#"{"name": "x"}"#)),
        ("empty name", body(r#"{"name": "  ", "type": "noop"}"#)),
        ("name of 256 characters", body(&format!(r#"{{"name": "{}", "type": "noop"}}"#, "n".repeat(256)))),
        ("priority far too high", body(r#"{"name": "x", "type": "noop", "priority": 1000000000}"#)),
        ("priority beyond i64", body(r#"{"name": "x", "type": "noop", "priority": 9223372036854775808}"#)),
        ("priority 1e400", body(r#"{"name": "x", "type": "noop", "priority": 1e400}"#)),
        ("negative max_retries", body(r#"{"name": "x", "type": "noop", "max_retries": -1}"#)),
        ("max_retries 101", body(r#"{"name": "x", "type": "noop", "max_retries": 101}"#)),
        ("timeout 0", body(r#"{"name": "x", "type": "noop", "timeout_seconds": 0}"#)),
        ("timeout beyond a day", body(r#"{"name": "x", "type": "noop", "timeout_seconds": 86401}"#)),
        ("negative backoff", body(r#"{"name": "x", "type": "noop", "backoff_seconds": -5}"#)),
        ("negative delay", body(r#"{"name": "x", "type": "noop", "delay_seconds": -1}"#)),
        ("delay of 1e20 s", body(r#"{"name": "x", "type": "noop", "delay_seconds": 1e20}"#)),
        ("delay NaN-like", body(r#"{"name": "x", "type": "noop", "delay_seconds": "NaN"}"#)),
        ("run_at and delay", body(r#"{"name": "x", "type": "noop", "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 1}"#)),
        ("run_at not a time", body(r#"{"name": "x", "type": "noop", "run_at": "tomorrow"}"#)),
        ("run_at year 99999", body(r#"{"name": "x", "type": "noop", "run_at": "99999-01-01T00:00:00Z"}"#)),
        ("unknown field", body(r#"{"name": "x", "type": "noop", "max_retry": 3}"#)),
        ("NUL in the name", body(r#"{"name": "a\u0000b", "type": "noop"}"#)),
        ("NUL in the payload", body(r#"{"name": "x", "type": "noop", "payload": {"k": "\u0000"}}"#)),
        ("NUL in a payload key", body(r#"{"name": "x", "type": "noop", "payload": {"\u0000": 1}}"#)),
        ("NUL in the idempotency key", body(r#"{"name": "x", "type": "noop", "idempotency_key": "\u0000"}"#)),
        ("SQL as the type", body(r#"{"name": "x", "type": "noop'; DROP TABLE tasks; --"}"#)),
        ("SQL in a number", body(r#"{"name": "x", "type": "noop", "priority": "1 OR 1=1"}"#)),
        ("sleep with a bad payload", body(r#"{"name": "x", "type": "sleep", "payload": {"ms": -1}}"#)),
        ("payload nested 100 000 deep", body(&nested(100_000))),
        ("body of 2 MiB", body(&format!(r#"{{"name": "x", "type": "noop", "payload": {{"s": "{}"}}}}"#, "x".repeat(2 << 20)))),
        ("text/plain body", post("/api/tasks", "text/plain", br#"{"name": "x", "type": "noop"}"#)),
        ("empty batch", post("/api/tasks/batch", JSON, br#"{"tasks": []}"#)),
        ("batch of 1001", post("/api/tasks/batch", JSON, format!(r#"{{"tasks": [{}]}}"#, vec![r#"{"name":"x","type":"noop"}"#; 1001].join(",")).as_bytes())),
        ("batch with one bad task", post("/api/tasks/batch", JSON, br#"{"tasks": [{"name":"x","type":"noop"},{"name":"y","type":"nope"}]}"#)),
        ("batch is an object", post("/api/tasks/batch", JSON, br#"{"tasks": {"name":"x"}}"#)),
        ("id is not a UUID", get("/api/tasks/not-a-uuid", "")),
        ("id is SQL", get("/api/tasks/1%27%20OR%20%271%27=%271", "")),
        ("id with a NUL", get("/api/tasks/%00", "")),
        ("history of an unknown id", get("/api/tasks/0190f3a4-0000-7000-8000-000000000000/history", "")),
        ("cancel a malformed id", post("/api/tasks/abc/cancel", JSON, b"{}")),
        ("retry an unknown id", post("/api/tasks/0190f3a4-0000-7000-8000-000000000000/retry", JSON, b"{}")),
        ("list with limit -1", get("/api/tasks?limit=-1", "")),
        ("list with limit 10^12", get("/api/tasks?limit=1000000000000", "")),
        ("list with a bad status", get("/api/tasks?status=bogus", "")),
        ("list with a bad cursor", get("/api/tasks?cursor=zzz", "")),
        ("list with an unknown parameter", get("/api/tasks?sort=1", "")),
        ("unknown route", get("/api/nothing", "")),
        // The HTTP parser itself refuses these two, before any route: its 431 has no body.
        ("oversized header", get("/api/stats", &format!("X-Big: {}\r\n", "h".repeat(256 * 1024)))),
        ("too many headers", get("/api/stats", &(0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>())),
        ("wrong bearer scheme", get("/api/tasks/not-a-uuid", "Authorization: Basic Zm9vOmJhcg==\r\n")),
        ("PUT on the collection", b"PUT /api/tasks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("DELETE a task", b"DELETE /api/tasks/0190f3a4-0000-7000-8000-000000000000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec()),
    ]
}

async fn stored(db: &str) -> i64 {
    status_counts(db).await.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_a_json_4xx_and_stores_nothing() {
    let _gate = shared();
    const TEST: &str = "hostile input";
    let scratch = Scratch::new("hostile");
    let db = format!("sqlite://{}", scratch.path("hostile.db").display());
    let spec = Spec { binary: TASKQ, ..Spec::new("server", &db, "server") };
    let server = Proc::start(spec, &scratch).await;

    let mut failures = Vec::new();
    let table = malformed();
    for (case, request) in &table {
        let before = stored(&db).await;
        let (status, body) = raw(server.port, request);
        let json: Option<Value> = serde_json::from_str(&body).ok();
        let error = json.as_ref().and_then(|j| j["error"].as_str());
        if !(400..500).contains(&status) {
            failures.push(format!("{case}: answered {status}: {body:.200}"));
        } else if error.is_none() && !(status == 431 && body.is_empty()) {
            failures.push(format!("{case}: {status} without a JSON error: {body:.200}"));
        } else if let Some(word) = shows_internals(&body) {
            failures.push(format!("{case}: {status} shows {word:?}: {body:.300}"));
        }
        if stored(&db).await != before {
            failures.push(format!("{case}: a rejected request stored a task"));
        }
        assert!(server.port > 0);
    }
    figure(
        TEST,
        "malformed requests answered with a JSON 4xx",
        format!("{} of {}", table.len() - failures.len(), table.len()),
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );

    // SQL-looking data in a valid request is data: stored verbatim, tables intact.
    let api = Api::new(server.url(""));
    let name = "Robert'); DROP TABLE tasks; --";
    let (status, task) = api.create(&json!({"name": name, "type": "noop"})).await.unwrap();
    assert_eq!((status, task["name"].as_str()), (201, Some(name)));
    let (status, again) = api.get(&format!("/api/tasks/{}", task["id"].as_str().unwrap())).await.unwrap();
    assert_eq!((status, again["name"].as_str()), (200, Some(name)));
}

/// A random JSON value of bounded depth, biased towards the edges of each type.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(
            [0i64, -1, 1, 1000, 1001, -1001, i32::MAX as i64, i64::MIN, i64::MAX][rng.random_range(0..9)]
        ),
        3 => json!([0.5, -0.0, 1e300, -1e300, 86400.5, 3.1e7][rng.random_range(0..6)]),
        4 => json!(
            [
                "",
                " ",
                "noop",
                "sleep",
                "fail",
                "NOOP",
                "\u{0}",
                "é",
                "💥",
                "' OR 1=1 --",
                "2030-01-01T00:00:00Z"
            ][rng.random_range(0..11)]
        ),
        5 => json!("x".repeat(rng.random_range(0..400))),
        6 => json!(rng.random::<i64>()),
        7 => Value::Array((0..rng.random_range(0..4)).map(|_| random_value(rng, depth - 1)).collect()),
        _ => {
            let keys = ["a", "ms", "message", "fatal", "url", "\u{0}", ""];
            Value::Object(
                (0..rng.random_range(0..4))
                    .map(|_| (keys[rng.random_range(0..keys.len())].to_owned(), random_value(rng, depth - 1)))
                    .collect(),
            )
        }
    }
}

/// A task body: mostly the real fields with random values, sometimes unknown ones.
fn random_task(rng: &mut StdRng) -> Value {
    const FIELDS: [&str; 11] = [
        "name",
        "type",
        "payload",
        "priority",
        "max_retries",
        "timeout_seconds",
        "backoff_seconds",
        "run_at",
        "delay_seconds",
        "idempotency_key",
        "bogus",
    ];
    let mut body = serde_json::Map::new();
    if rng.random_bool(0.8) {
        body.insert("name".into(), json!("fuzz"));
    }
    if rng.random_bool(0.8) {
        body.insert("type".into(), json!(["noop", "sleep", "fail"][rng.random_range(0..3)]));
    }
    for _ in 0..rng.random_range(0..4) {
        let field = FIELDS[rng.random_range(0..FIELDS.len())];
        body.insert(field.into(), random_value(rng, 3));
    }
    Value::Object(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_fuzz_of_requests_never_gets_a_5xx() {
    let _gate = shared();
    const TEST: &str = "random request fuzz";
    let seed: u64 =
        std::env::var("TASKQ_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let cases = scale(3_000, 50_000);
    println!("{TEST}: seed {seed} (TASKQ_FUZZ_SEED={seed} repeats this run)");
    let scratch = Scratch::new("fuzz");
    let db = format!("sqlite://{}", scratch.path("fuzz.db").display());
    let spec = Spec { binary: TASKQ, ..Spec::new("server", &db, "server") };
    let server = Proc::start(spec, &scratch).await;
    let api = Api::new(server.url(""));
    let mut rng = StdRng::seed_from_u64(seed);

    let mut answers: std::collections::BTreeMap<u16, usize> = Default::default();
    let mut failures = Vec::new();
    for _ in 0..cases {
        let (method, path, body) = match rng.random_range(0..10) {
            0..=5 => ("POST", "/api/tasks".to_owned(), Some(random_task(&mut rng))),
            6 => {
                let tasks: Vec<Value> = (0..rng.random_range(0..5)).map(|_| random_task(&mut rng)).collect();
                ("POST", "/api/tasks/batch".to_owned(), Some(json!({ "tasks": tasks })))
            }
            7 => ("POST", "/api/tasks".to_owned(), Some(random_value(&mut rng, 3))),
            _ => {
                let segment = [
                    "",
                    "x",
                    "%00",
                    "..",
                    "00000000-0000-0000-0000-000000000000",
                    "%27--",
                    "0190f3a4-0000-7000-8000-000000000000",
                ][rng.random_range(0..7)];
                let query = ["", "?limit=0", "?limit=abc", "?status=running", "?type=%00", "?cursor=1"]
                    [rng.random_range(0..6)];
                let suffix = ["", "/history", "/cancel", "/retry"][rng.random_range(0..4)];
                let method = if suffix == "/cancel" || suffix == "/retry" { "POST" } else { "GET" };
                (method, format!("/api/tasks/{segment}{suffix}{query}"), None)
            }
        };
        let mut request = api.client.request(method.parse().unwrap(), api.url(&path));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        *answers.entry(status).or_default() += 1;
        let is_json_error = serde_json::from_str::<Value>(&text).is_ok_and(|v| v["error"].is_string());
        if status >= 500
            || (status >= 400 && !is_json_error)
            || (status >= 400 && shows_internals(&text).is_some())
        {
            failures.push(format!("{method} {path} {body:?} → {status} {text:.200}"));
        }
    }
    figure(TEST, "requests (seeded) and answers", format!("{cases}: {answers:?}"));
    figure(TEST, "5xx answers", answers.range(500..).map(|(_, n)| n).sum::<usize>());
    assert!(
        failures.is_empty(),
        "{} bad answers (seed {seed}):\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(answers.get(&201).copied().unwrap_or(0) > 0, "the fuzz also made valid requests");
    // And what was acknowledged is there, with a history that holds together.
    assert!(server.url("").starts_with("http"));
    assert_invariants(TEST, &db, Vec::new(), false).await;
}
