//! The README's quick start, run as a newcomer would: from a fresh clone, with a
//! clean environment, using the exact commands the README shows.
//!
//! It shares the build directory, so nothing compiles twice, and lives in its own
//! test binary so its release build does not compete with the timing of the suite.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shell lines of the first fenced `sh` block under a README heading, comments
/// dropped and continued lines joined.
fn section_commands(readme: &str, heading: &str) -> Vec<String> {
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("README has a {heading} section"));
    let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            commands.push(current.trim().to_owned());
            current.clear();
        }
    }
    commands
}

fn curl(command: &str, port: u16) -> String {
    let command = command.replace("localhost:8080", &format!("127.0.0.1:{port}"));
    let output = Command::new("bash").arg("-c").arg(&command).output().unwrap();
    assert!(output.status.success(), "{command} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_readme_run_command_serves_a_working_queue_from_a_fresh_clone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let commands = section_commands(&readme, "## Quick start");
    assert_eq!(commands[0], "cargo run --release", "the first command runs taskq");
    let curls: Vec<_> = commands[1..].iter().filter(|c| c.starts_with("curl")).collect();
    assert!(curls.len() >= 2, "the quick start creates a task and reads it back");

    let scratch = std::env::temp_dir().join(format!("taskq-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let status = Command::new("git").args(["clone", "--quiet"]).arg(repo).arg(&scratch).status().unwrap();
    assert!(status.success(), "git clone");

    let port = free_port();
    let target =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| repo.join("target").display().to_string());
    let mut run = Command::new("bash");
    run.arg("-c")
        .arg(format!("exec {}", commands[0]))
        .current_dir(&scratch)
        .env_clear()
        .env("CARGO_TARGET_DIR", target)
        .env("SERVER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for keep in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME"] {
        if let Some(value) = std::env::var_os(keep) {
            run.env(keep, value);
        }
    }
    let mut child = run.spawn().unwrap();

    wait_until_answering(port, "/health", &mut child, Duration::from_secs(900));

    // The README's curl commands: the first creates a task, the next reads it back.
    let created: serde_json::Value = serde_json::from_str(&curl(curls[0], port)).unwrap();
    let id = created["id"].as_str().expect("the create answer has an id").to_owned();
    assert_eq!(created["type"], "noop");
    let read_back = curls[1].replace("<id>", &id).replace("$ID", &id);
    wait_until_succeeded(&read_back, port);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "taskq exited with {exit} after SIGTERM");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Polls `path` until it answers 2xx, failing if the process exits or time runs out.
fn wait_until_answering(port: u16, path: &str, child: &mut std::process::Child, deadline: Duration) {
    let started = Instant::now();
    while Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(started.elapsed() < deadline, "nothing answered {path} on {port}");
        assert!(child.try_wait().unwrap().is_none(), "the process exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the read-back `curl` until the task it returns has succeeded; returns it.
fn wait_until_succeeded(read_back: &str, port: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let task: serde_json::Value = serde_json::from_str(&curl(read_back, port)).unwrap();
        if task["status"] == "succeeded" {
            return task;
        }
        assert!(Instant::now() < deadline, "the task did not succeed: {task}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// "Running on PostgreSQL": migrate, then a server process and a worker process that
/// share only the database; a task created on the server is run by the worker.
#[test]
fn the_readme_postgresql_commands_run_a_separate_server_and_worker() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let commands = section_commands(&readme, "## Running on PostgreSQL");
    let admin = std::env::var("TASKQ_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("taskq_readme_{}", std::process::id());
    let psql = |sql: &str| Command::new("psql").arg(&admin).args(["-qc", sql]).status().unwrap();
    assert!(psql(&format!("CREATE DATABASE {name}")).success(), "PostgreSQL at {admin} is required");
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let binary = env!("CARGO_BIN_EXE_taskq");

    let (mut server_port, mut worker_port) = (free_port(), free_port());
    let mut processes = Vec::new();
    for command in &commands {
        let command = command.replace("taskq", binary);
        if command.starts_with("export DATABASE_URL=") {
            continue; // replaced by the test database below
        }
        let port = if command.contains("ROLE=server") { &mut server_port } else { &mut worker_port };
        let line = format!("export DATABASE_URL={url} SERVER_PORT={port} DEMO_TIME_SCALE=0.01; {command}");
        if command.contains("ROLE=") {
            let mut child = Command::new("bash")
                .arg("-c")
                .arg(format!("exec env {}", line.replace("export ", "").replace("; ", " ")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_until_answering(*port, "/livez", &mut child, Duration::from_secs(60));
            processes.push(child);
        } else {
            let status = Command::new("bash").arg("-c").arg(&line).status().unwrap();
            assert!(status.success(), "{command} failed");
        }
    }
    assert_eq!(processes.len(), 2, "the section starts a server and a worker");

    let created = curl(
        &format!(
            "curl -s -X POST http://localhost:{server_port}/api/tasks -H 'Content-Type: application/json' -d '{{\"name\": \"split\", \"type\": \"noop\"}}'"
        ),
        server_port,
    );
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();
    let read_back = format!("curl -s http://localhost:{server_port}/api/tasks/{id}");
    let task = wait_until_succeeded(&read_back, server_port);
    assert!(task["worker_id"].as_str().is_some(), "run by the worker");
    for mut child in processes {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        assert!(child.wait().unwrap().success(), "exit 0 after SIGTERM");
    }
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
