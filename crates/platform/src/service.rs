//! What every binary's `main` does around its command: load settings (exit
//! code 2 naming the bad key), start logging and tracing, run, flush traces, and turn the outcome into
//! an exit code with the error chain on stderr and in the log.

use std::process::ExitCode;

use crate::settings::Settings;
use crate::telemetry;

pub async fn run<F, Fut>(service: &'static str, command: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{service}: {err}");
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(service, &settings.log);
    let code = match command(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "{service} failed");
            eprintln!("{service}: {err:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown().await;
    code
}
