use std::process::ExitCode;

use clap::Parser;
use platform::{Settings, shutdown, telemetry};
use tokio_util::sync::CancellationToken;
use ws_gateway::Application;
use ws_gateway::auth::TokenVerifier;
use ws_gateway::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("ws-gateway: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init("ws-gateway", &settings.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&settings).await,
        Command::Token { user, ttl } => print_token(&settings, &user, ttl),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "ws-gateway failed");
            eprintln!("ws-gateway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let app = Application::build(settings, token).await?;
    app.run_until_stopped().await?;
    Ok(())
}

fn print_token(settings: &Settings, user: &str, ttl: u64) -> anyhow::Result<()> {
    settings.require_jwt_secret()?;
    domain::notification::validate_user_id(user).map_err(|why| anyhow::anyhow!("user id {why}"))?;
    let verifier = TokenVerifier::new(&settings.auth.jwt_secret, settings.auth.jwt_leeway_secs);
    println!("{}", verifier.issue(user, ttl)?);
    Ok(())
}
