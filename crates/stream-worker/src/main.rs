use std::process::ExitCode;

use clap::Parser;
use platform::redis::RedisStore;
use platform::storage::dead_letters;
use platform::{Settings, db, dlq, service};
use stream_worker::Worker;
use stream_worker::cli::{Cli, Command, DlqCommand};

/// One thread: the consumers mostly wait on Redis and PostgreSQL, and on one
/// runtime thread their I/O completes where they run, with no wake-up of
/// another thread per round trip (measured with `make bench`'s e2e-latency:
/// 250-266 ms of worker CPU per 1,000 notifications against 363-371 on the
/// multi-threaded runtime). A worker process uses at most one core for its
/// consumers; scale with replicas (KEDA).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::run("stream-worker", async |settings| {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => service::serve::<Worker>(&settings).await,
            Command::Migrate => migrate(&settings).await,
            Command::Healthcheck => service::healthcheck(&settings),
            Command::Dlq { action } => dead_letter_command(&settings, action).await,
        }
    })
    .await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    // Straight to PostgreSQL (`database.migration_url`), not through a pooler.
    let direct = settings.database.for_migrations();
    let pool = db::pool(&direct, db::Planning::EachExecution)?;
    db::wait_until_reachable(&pool).await;
    let applied = db::run_migrations(&direct).await?;
    if applied.is_empty() {
        tracing::info!("database schema is up to date");
    } else {
        tracing::info!(?applied, "migrations applied");
    }
    Ok(())
}

/// `dlq list` prints JSON lines on stdout; `dlq replay` prints the new entry
/// id (or the report of `--all`) on stdout.
async fn dead_letter_command(settings: &Settings, action: DlqCommand) -> anyhow::Result<()> {
    let pool = db::pool(&settings.database, db::Planning::EachExecution)?;
    match action {
        DlqCommand::List { all, limit } => {
            let letters = dead_letters::list(&mut *pool.get().await?, all, limit).await?;
            for letter in letters {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DlqCommand::Replay {
            id,
            all,
            payload_file,
        } => {
            let redis = RedisStore::connect(&settings.redis).await?;
            // A replay appends to the shard its settings name.
            redis.check_stream_shards().await?;
            if all {
                let report = dlq::replay_all(&pool, &redis).await?;
                println!("{}", serde_json::to_string(&report)?);
                if !report.failed.is_empty() {
                    anyhow::bail!(
                        "{} dead letter(s) could not be replayed",
                        report.failed.len()
                    );
                }
            } else if let Some(id) = id {
                let replacement = payload_file.map(std::fs::read_to_string).transpose()?;
                let entry = dlq::replay(&pool, &redis, id, replacement.as_deref()).await?;
                println!("{entry}");
            }
        }
    }
    Ok(())
}
