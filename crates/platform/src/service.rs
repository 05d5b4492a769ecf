//! What every binary's `main` does around its command: load settings (exit
//! code 2 naming the bad key), start logging and tracing, run, flush traces, and turn the outcome into
//! an exit code with the error chain on stderr and in the log. And the
//! shape every service has ([`Service`]): built from settings and a
//! shutdown token, bound to a port, run until the token is cancelled.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{server, shutdown, telemetry};

/// A Herald service: ingest-api, stream-worker and ws-gateway all start,
/// report their port and stop the same way, so `main`, tests and tools
/// drive them alike.
pub trait Service: Sized {
    /// Connects to what the service needs (waiting for PostgreSQL and Redis
    /// at start) and binds its HTTP port; `shutdown` stops it once run.
    fn build(
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<Self>>;

    /// The HTTP port it listens on (the one picked when `http.port` is 0).
    fn port(&self) -> u16;

    /// Serves until the shutdown token is cancelled, then drains and returns.
    fn run_until_stopped(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Builds and runs `S` until SIGTERM or Ctrl-C: a binary's `serve` command.
///
/// The port answers from the first moment: while `S` waits for PostgreSQL
/// and Redis, [`server::starting`] says alive (`/healthz`) but not ready
/// (`/readyz`), so a pod started during an outage is never killed by its
/// probes; a signal then ends the wait and the process at once.
pub async fn serve<S: Service>(settings: &Settings) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let starting = server::starting(&settings.http)?.map(server::Serving::in_background);
    let built = tokio::select! {
        built = S::build(settings, token.clone()) => Some(built),
        () = token.cancelled() => None,
    };
    if let Some(starting) = starting {
        starting.stop().await;
    }
    match built {
        Some(service) => service?.run_until_stopped().await,
        None => {
            tracing::info!("stopped while starting");
            Ok(())
        }
    }
}

/// A container's healthcheck (`<binary> healthcheck`): `GET /readyz` on
/// this machine's `http.port`; Ok on 200. Plain HTTP/1.0 over a socket with
/// a deadline: the distroless image has no shell and no curl.
pub fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
    let host = match settings.http.host.as_str() {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1",
        host => host,
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, settings.http.port))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("http.host {host} resolves to no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, DEADLINE)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        anyhow::bail!("/readyz on {addr} answered {status_line:?}")
    }
}

pub async fn run<F, Fut>(service: &'static str, command: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::tls::install_crypto_provider();
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
