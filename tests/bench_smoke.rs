//! `taskq bench` and the scripts of `bench/` at a tiny size, so they cannot rot: each
//! runs once against a fresh database (which it creates and drops itself) and reports
//! its figures. Nothing here looks at the values: benchmarks measure, tests only check
//! that they can.

use clap::Parser;
use taskq::bench::{BenchArgs, Report, Scenario};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn pg_admin_url() -> String {
    std::env::var("TASKQ_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `taskq bench ARGS` once, on the server of the tests, with this build as the taskq
/// processes and without the peer.
fn bench_once(args: &[&str]) -> Report {
    let url = pg_admin_url();
    let common = ["bench", "--database-url", &url, "--taskq-bin", env!("CARGO_BIN_EXE_taskq"), "--runs", "1"];
    let cli = Cli::parse_from(common.iter().chain(args).chain(&["--no-peer"]));
    actix_rt::System::new().block_on(taskq::bench::measure(cli.bench)).expect("the benchmark runs")
}

#[test]
fn every_bench_scenario_runs_at_a_tiny_size_and_reports_its_figures() {
    #[rustfmt::skip]
    let report = bench_once(&[
        "--drain-tasks", "200", "--concurrency", "5", "--batch", "100",
        "--latency-tasks", "5", "--latency-interval", "5ms",
        "--enqueue-tasks", "20", "--enqueue-connections", "2", "--enqueue-batch-tasks", "200",
        "--http-connections", "2", "--http-duration", "1s",
        "--stats-tasks", "1000", "--stats-requests", "5", "--search-tasks", "2000", "--search-requests", "1",
        "--scale-workers", "1,2", "--scale-concurrency", "5", "--scale-tasks", "200",
        "--ratelimit-tasks", "50", "--ratelimit-max", "50", "--ratelimit-workers", "2",
        "--schedules-idle", "2s", "--schedules-ticking", "2s", "--schedules-every-second", "5",
        "--memory-concurrency", "5", "--memory-settle", "100ms",
    ]);

    for scenario in Scenario::ALL {
        let figures: Vec<_> = report.figures.iter().filter(|f| f.scenario == scenario.name()).collect();
        assert!(!figures.is_empty(), "{} reported nothing", scenario.name());
        for figure in figures {
            assert_eq!(figure.runs.len(), 1, "{} / {}: one value per run", figure.scenario, figure.name);
            assert!(figure.runs[0].is_finite(), "{} / {} is not a number", figure.scenario, figure.name);
        }
    }
    let with_baseline = report.figures.iter().filter(|f| f.raw_sql.is_some()).count();
    assert!(with_baseline > 0, "the raw-SQL baselines ran");
    assert!(report.table().contains("drain"));
    serde_json::to_string(&report).expect("the report serialises");
}

/// The rate-limited drain alone, with its default four worker processes: a limit of
/// 50/s and 100 tasks, two seconds of draining. Only that it reports is checked.
#[test]
fn the_rate_limited_drain_runs_four_worker_processes_and_reports_its_figures() {
    #[rustfmt::skip]
    let report = bench_once(&[
        "ratelimit", "--no-baseline", "--ratelimit-tasks", "100", "--ratelimit-max", "50", "--ratelimit-per", "1s",
    ]);
    let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for figure in &report.figures {
        assert_eq!(figure.scenario, "ratelimit");
        assert!(figure.name.contains("100 tasks, 50 per 1s, 4 processes"), "{}", figure.name);
        assert_eq!(figure.runs.len(), 1, "{}: one value per run", figure.name);
        assert!(figure.runs[0].is_finite(), "{} is not a number", figure.name);
        assert!(figure.target.is_some(), "{} has the limit's promise as target", figure.name);
    }
    assert!(report.table().contains("ratelimit"));
}

#[test]
fn the_raw_sql_scale_experiment_runs_and_prints_its_table() {
    let output = std::process::Command::new("bash")
        .arg("bench/scale-sql.sh")
        .arg("1")
        .env("DATABASE_URL", pg_admin_url())
        .env("TASKQ", env!("CARGO_BIN_EXE_taskq"))
        .env("TASKS", "800")
        .output()
        .expect("bash runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}{}", String::from_utf8_lossy(&output.stderr));
    for shape in ["plain", "gated-1", "gated-2", "one-commit"] {
        let row = table
            .lines()
            .find(|line| line.starts_with(shape))
            .unwrap_or_else(|| panic!("no {shape} row: {table}"));
        assert_eq!(row.split_whitespace().count(), 9, "a median and range for 1, 2, 4 and 8 clients: {row}");
    }
}

#[test]
fn the_a_b_script_alternates_two_binaries_and_prints_their_ratio() {
    let out = std::env::temp_dir().join(format!("taskq-ab-{}", std::process::id()));
    let bin = env!("CARGO_BIN_EXE_taskq");
    let output = std::process::Command::new("bash")
        .args([
            "bench/ab.sh",
            bin,
            bin,
            "1",
            "--",
            "drain",
            "--no-baseline",
            "--no-peer",
            "--drain-tasks",
            "300",
        ])
        .args(["--concurrency", "5"])
        .env("DATABASE_URL", pg_admin_url())
        .env("AB_OUT", &out)
        .output()
        .expect("bash runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}{}", String::from_utf8_lossy(&output.stderr));
    let row = table
        .lines()
        .find(|line| line.contains("completed tasks/s, concurrency 5"))
        .unwrap_or_else(|| panic!("no drain row: {table}"));
    let ratio: f64 = row.split_whitespace().last().unwrap().parse().expect("a ratio ends the row");
    assert!(ratio > 0.0, "{row}");
    for side in ["a-1.json", "b-1.json"] {
        assert!(out.join(side).exists(), "{side} kept");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// The peer columns come from the peer's driver: a stand-in here, answering what
/// `../shared/peers/graphile-worker/run.sh` answers, so the plumbing is tested on any
/// machine whether graphile-worker is installed or not.
#[test]
fn the_peer_runs_between_taskq_runs_and_fills_its_columns() {
    let dir = std::env::temp_dir().join(format!("taskq-peer-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("qbench/graphile-worker/node_modules/graphile-worker")).unwrap();
    std::fs::write(
        dir.join("run.sh"),
        r#"case $1 in
            w1) echo '{"completed_per_s": 1000}' ;;
            w2) echo '{"p50_ms": 2.0, "p99_ms": 4.0, "max_ms": 8.0}' ;;
            w3) echo '{"jobs_per_s": 100}' ;;
        esac"#,
    )
    .unwrap();
    let url = pg_admin_url();
    let (peer, home) =
        (dir.to_string_lossy().into_owned(), dir.join("qbench").to_string_lossy().into_owned());
    #[rustfmt::skip]
    let cli = Cli::parse_from([
        "bench", "drain", "latency", "enqueue", "--database-url", &url, "--runs", "1", "--no-baseline",
        "--peer", &peer, "--peer-home", &home, "--drain-tasks", "200", "--concurrency", "5", "--batch", "100",
        "--latency-tasks", "5", "--latency-interval", "5ms",
        "--enqueue-tasks", "20", "--enqueue-connections", "2", "--enqueue-batch-tasks", "200",
    ]);
    let report =
        actix_rt::System::new().block_on(taskq::bench::measure(cli.bench)).expect("the benchmark runs");
    std::fs::remove_dir_all(&dir).unwrap();
    let peered: Vec<(&str, f64)> =
        report.figures.iter().filter_map(|f| Some((f.name.as_str(), f.peer_median()?))).collect();
    assert_eq!(
        peered,
        [
            ("completed tasks/s, concurrency 5", 1000.0),
            ("commit → handler start, p50", 2.0),
            ("commit → handler start, p99", 4.0),
            ("commit → handler start, max", 8.0),
            ("single-task inserts/s, 1 connection", 100.0),
        ]
    );
    assert!(report.figures.iter().all(|f| f.peer.is_none() || f.peer_ratio().is_some()));
    assert!(report.table().contains("× peer"));
}

#[test]
fn the_cost_script_counts_wal_and_index_writes_per_task_of_each_phase() {
    // A private PostgreSQL of the script's own: only initdb and pg_waldump are needed.
    let output = std::process::Command::new("bash")
        .args(["bench/per-task-cost.sh", env!("CARGO_BIN_EXE_taskq"), "2000"])
        .env("QBENCH_DIR", "/nonexistent")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let phases: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("JSON lines")).collect();
    let names: Vec<&str> = phases.iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(names, ["enqueue", "drain", "retention"]);
    for phase in &phases {
        assert_eq!((phase["system"].as_str(), phase["tasks"].as_i64()), (Some("taskq"), Some(2000)));
        let bytes = phase["wal_bytes"].as_f64().unwrap_or_default();
        assert!(
            (50.0..100_000.0).contains(&bytes),
            "{phase}: {bytes} bytes a task is no count of this workload"
        );
    }
    // A run updates its task twice (the claim, the success) and writes four index
    // entries (docs/design.md, "Task model"): the counts docs/benchmarks.md reports.
    let drain = &phases[1];
    assert!((1.9..=2.1).contains(&drain["heap_updates"].as_f64().unwrap()), "{drain}");
    assert!((3.9..=4.3).contains(&drain["index_inserts"].as_f64().unwrap()), "{drain}");
}
