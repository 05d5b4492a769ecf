use std::process::ExitCode;

use clap::Parser;
use platform::{Settings, service};
use ws_gateway::Application;
use ws_gateway::auth::TokenVerifier;
use ws_gateway::cli::{Cli, Command};

/// jemalloc: about 13% less gateway CPU per connection than glibc's
/// malloc in `connections` (see the README's crate table).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::run("ws-gateway", async |settings| {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => service::serve::<Application>(&settings).await,
            Command::Healthcheck => service::healthcheck(&settings),
            Command::Token { user, ttl } => print_token(&settings, &user, ttl),
        }
    })
    .await
}

fn print_token(settings: &Settings, user: &str, ttl: u64) -> anyhow::Result<()> {
    settings.require_jwt_secret()?;
    domain::notification::validate_user_id(user).map_err(|why| anyhow::anyhow!("user id {why}"))?;
    let verifier =
        TokenVerifier::with_secret(&settings.auth.jwt_secret, settings.auth.jwt_leeway_secs);
    println!("{}", verifier.issue(user, ttl)?);
    Ok(())
}
