//! The `taskq` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use taskq::app::{Application, open_store};
use taskq::config::Config;
use taskq::handlers::Registry;

#[derive(Parser)]
#[command(
    name = "taskq",
    version,
    about = "Distributed background task processing backed by PostgreSQL or SQLite"
)]
struct Cli {
    /// Overrides ROLE: server, worker or all.
    #[arg(long, global = true)]
    role: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the configured role (the default).
    Serve,
    /// Applies pending migrations and exits; `taskq migrate down` reverts the last one.
    Migrate {
        #[arg(value_parser = ["up", "down"], default_value = "up")]
        direction: String,
    },
    /// Exits 0 when this machine's taskq answers GET /livez on SERVER_PORT (for
    /// container health checks without curl).
    Healthcheck,
    /// Verifies the queue's invariants over every task and its history (see
    /// docs/reliability.md); exits 1 when one is broken.
    Check(taskq::check::CheckArgs),
    /// Measures taskq against DATABASE_URL (in a database of its own) beside raw SQL;
    /// see docs/benchmarks.md.
    Bench(taskq::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(cli.role) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("taskq: {error:#}");
            return ExitCode::from(2);
        }
    };
    taskq::telemetry::init(config.log_format);
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => actix_web::rt::System::new().block_on(serve(config)),
        Command::Migrate { direction } => actix_web::rt::System::new().block_on(migrate(config, &direction)),
        Command::Healthcheck => healthcheck(&config),
        Command::Check(args) => actix_web::rt::System::new().block_on(taskq::check::command(config, args)),
        Command::Bench(args) => actix_web::rt::System::new().block_on(taskq::bench::run(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "taskq failed");
            eprintln!("taskq: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(role: Option<String>) -> anyhow::Result<Config> {
    let mut raw = taskq::config::RawSettings::load()?;
    if role.is_some() {
        raw.role = role;
    }
    Ok(Config::from_raw(raw)?)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = Registry::with_builtins(config.demo_time_scale);
    Application::build(config, registry).await?.run_until_stopped().await
}

async fn migrate(config: Config, direction: &str) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    if direction == "down" {
        store.migrate_down().await.context("cannot revert the last migration")?;
        tracing::info!("reverted the last migration");
    } else {
        tracing::info!("migrations applied");
    }
    store.close().await;
    Ok(())
}

/// A minimal HTTP/1.1 GET over a plain socket: the runtime image has no curl.
fn healthcheck(config: &Config) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], config.server_port));
    let timeout = std::time::Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("nothing listens on {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default();
    anyhow::ensure!(status.contains(" 200 "), "unhealthy: {status}");
    Ok(())
}
