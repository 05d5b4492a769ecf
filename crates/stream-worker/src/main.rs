use std::process::ExitCode;

use clap::Parser;
use platform::{Settings, db, shutdown, telemetry};
use stream_worker::Worker;
use stream_worker::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("stream-worker: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init("stream-worker", &settings.log);
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&settings).await,
        Command::Migrate => migrate(&settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "stream-worker failed");
            eprintln!("stream-worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let worker = Worker::build(settings).await?;
    worker.run_until_stopped(token).await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = db::pool(&settings.database)?;
    db::wait_until_reachable(&pool).await;
    let applied = db::run_migrations(&settings.database.url).await?;
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    } else {
        tracing::info!(?applied, "migrations applied");
    }
    Ok(())
}
