//! A body over the limit is answered with its JSON 413 whatever the client: Node's
//! fetch and Python's requests write the whole body before they read the answer, curl
//! reads while it writes (`src/http/body.rs`).

use rstest::rstest;
use serde_json::Value;
use taskq::store::Backend;

use crate::helpers::*;

/// Well over the 1 MiB payload limit, and over what socket buffers absorb.
const OVERSIZED: usize = 8 * 1024 * 1024;

fn client(name: &str, url: &str) -> tokio::process::Command {
    let script = |file: &str| format!("{}/tests/clients/{file}", env!("CARGO_MANIFEST_DIR"));
    let size = OVERSIZED.to_string();
    let (program, args) = match name {
        "node" => ("node", vec![script("oversized.mjs"), url.to_owned(), size]),
        "python" => ("python3", vec![script("oversized.py"), url.to_owned(), size]),
        _ => {
            // A file, so curl sends the body as it is (no `-d @-` newline stripping).
            let body = std::env::temp_dir().join(format!("taskq-oversized-{}.json", uuid::Uuid::now_v7()));
            let blob = "x".repeat(OVERSIZED);
            std::fs::write(
                &body,
                format!("{{\"name\":\"big\",\"type\":\"noop\",\"payload\":{{\"blob\":\"{blob}\"}}}}"),
            )
            .unwrap();
            let args = ["-s", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json"];
            let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            args.extend(["--data-binary".to_owned(), format!("@{}", body.display()), url.to_owned()]);
            ("curl", args)
        }
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    command
}

#[rstest]
#[case::node("node")]
#[case::python("python")]
#[case::curl("curl")]
#[actix_rt::test]
async fn an_oversized_body_gets_its_json_413_with_every_client(#[case] name: &str) {
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.url("/api/tasks");
    let output = client(name, &url).output().await.expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let (status, body) = if name == "curl" {
        let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        (status.to_owned(), body.to_owned())
    } else {
        let (status, body) = stdout.split_once(' ').unwrap_or((&stdout, ""));
        (status.to_owned(), body.to_owned())
    };
    assert_eq!(status, "413", "{name}: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: not JSON: {body}"));
    assert!(error["error"].as_str().unwrap().contains("larger than"), "{name}: {error}");
    // The connection was left clean: the server goes on answering.
    assert_eq!(app.get("/livez").await.status(), 200);
    app.stop().await;
}
