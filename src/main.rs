//! The `taskq` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use taskq::app::{Application, open_store};
use taskq::config::{Config, Role};
use taskq::handlers::Registry;

#[derive(Parser)]
#[command(
    name = "taskq",
    version,
    about = "Distributed background task processing backed by PostgreSQL or SQLite"
)]
struct Cli {
    /// Overrides ROLE.
    #[arg(long, global = true, value_enum, ignore_case = true)]
    role: Option<Role>,
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
    Bench(Box<taskq::bench::BenchArgs>),
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
        Command::Bench(args) => actix_web::rt::System::new().block_on(taskq::bench::run(*args)),
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

fn load_config(role: Option<Role>) -> anyhow::Result<Config> {
    let mut raw = taskq::config::RawSettings::load()?;
    if role.is_some() {
        // `--role` wins: ROLE is neither read nor checked.
        raw.role = None;
    }
    let mut config = Config::from_raw(raw)?;
    if let Some(role) = role {
        config.role = role;
    }
    Ok(config)
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Role};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn role_takes_one_of_the_three_roles_and_nothing_else() {
        for (given, role) in
            [("server", Role::Server), ("worker", Role::Worker), ("all", Role::All), ("Worker", Role::Worker)]
        {
            let cli = Cli::try_parse_from(["taskq", "--role", given]).unwrap();
            assert_eq!(cli.role, Some(role), "{given}");
        }
        let cli = Cli::try_parse_from(["taskq", "migrate", "--role", "worker"]).unwrap();
        assert_eq!(cli.role, Some(Role::Worker), "global: also after a subcommand");
        assert_eq!(Cli::try_parse_from(["taskq"]).unwrap().role, None);
        let error = Cli::try_parse_from(["taskq", "--role", "boss"]).err().expect("boss is refused");
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(error.to_string().contains("[possible values: server, worker, all]"), "{error}");
    }
}
