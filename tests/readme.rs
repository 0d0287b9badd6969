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

/// The shell lines of the README's quick start: the fenced `sh` block under
/// "## Quick start".
fn quick_start_commands(readme: &str) -> Vec<String> {
    let section = readme.split("## Quick start").nth(1).expect("README has a Quick start section");
    let block = section.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
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
    let commands = quick_start_commands(&readme);
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

    let started = Instant::now();
    while Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/health")])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(started.elapsed() < Duration::from_secs(900), "taskq did not answer /health");
        assert!(child.try_wait().unwrap().is_none(), "taskq exited early");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The README's curl commands: the first creates a task, the next reads it back.
    let created: serde_json::Value = serde_json::from_str(&curl(curls[0], port)).unwrap();
    let id = created["id"].as_str().expect("the create answer has an id").to_owned();
    assert_eq!(created["type"], "noop");
    let read_back = curls[1].replace("<id>", &id).replace("$ID", &id);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let task: serde_json::Value = serde_json::from_str(&curl(&read_back, port)).unwrap();
        if task["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the task did not succeed: {task}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "taskq exited with {exit} after SIGTERM");
    let _ = std::fs::remove_dir_all(&scratch);
}
