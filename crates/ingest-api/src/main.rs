use std::process::ExitCode;

use clap::Parser;
use ingest_api::Application;
use ingest_api::cli::{Cli, Command, KeysCommand};
use ingest_api::key_cache;
use platform::redis::RedisStore;
use platform::storage::api_keys::{self, KeyPolicy, Scopes};
use platform::{Settings, db, service};

/// jemalloc: glibc's malloc and free were about a fifth of the CPU of a
/// request under load (perf of `ingest-batch`); see the README's crate table.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const REDIS_ANNOUNCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::run("ingest-api", async |settings| {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => service::serve::<Application>(&settings).await,
            Command::Healthcheck => service::healthcheck(&settings),
            Command::Keys { action } => keys(&settings, action).await,
        }
    })
    .await
}

async fn keys(settings: &Settings, action: KeysCommand) -> anyhow::Result<()> {
    let pool = db::pool(&settings.database, db::Planning::EachExecution)?;
    let mut conn = pool.get().await?;
    match action {
        KeysCommand::Create {
            name,
            admin,
            scope,
            tenant,
            rate,
            burst,
            if_absent,
        } => {
            let scopes = match (admin, scope) {
                (true, _) => Scopes::ALL,
                (false, Some(scopes)) => scopes,
                (false, None) => Scopes::PRODUCER,
            };
            let policy = KeyPolicy {
                scopes,
                tenant,
                rate_per_sec: rate,
                burst,
            };
            match api_keys::create(&mut conn, &name, &policy).await {
                // The key is the only thing on stdout, so scripts can capture it.
                Ok(key) => println!("{key}"),
                Err(api_keys::ApiKeyError::NameTaken(_)) if if_absent => eprintln!(
                    "an active API key named `{name}` exists; nothing created \
                     (`keys revoke {name}` first for a new one)"
                ),
                Err(err) => return Err(err.into()),
            }
        }
        KeysCommand::Revoke { name } => {
            // Redis is only told so running processes evict the key from
            // their caches; do not wait for it forever.
            let redis =
                tokio::time::timeout(REDIS_ANNOUNCE_TIMEOUT, RedisStore::connect(&settings.redis))
                    .await;
            let Ok(Ok(redis)) = redis else {
                api_keys::revoke(&mut conn, &name).await?;
                eprintln!(
                    "revoked API key `{name}`; Redis did not answer, so running ingest-api \
                     processes keep accepting it for up to auth.api_key_cache_secs ({} s)",
                    settings.auth.api_key_cache_secs
                );
                return Ok(());
            };
            match key_cache::revoke(&mut conn, &redis, &name).await? {
                (_, Ok(listeners)) => {
                    eprintln!("revoked API key `{name}`; {listeners} ingest-api process(es) told")
                }
                (_, Err(err)) => eprintln!(
                    "revoked API key `{name}`; announcing it failed ({err}), so running \
                     ingest-api processes keep accepting it for up to {} s",
                    settings.auth.api_key_cache_secs
                ),
            }
        }
    }
    Ok(())
}
