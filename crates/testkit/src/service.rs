//! Herald's services run inside a test process, as their binaries run them
//! (built from settings, serving on a port, stopped by a token).

use platform::Settings;
use platform::service::Service;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A service running in this test; stopped when dropped.
pub struct Running {
    pub port: u16,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Builds and runs `S`; panics (failing the test) when it cannot start.
pub async fn start<S: Service + Send + 'static>(settings: &Settings) -> Running {
    match try_start::<S>(settings).await {
        Ok(running) => running,
        Err(err) => panic!("{} does not start: {err:#}", std::any::type_name::<S>()),
    }
}

/// Builds and runs `S`, or answers why it could not start.
pub async fn try_start<S: Service + Send + 'static>(
    settings: &Settings,
) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let service = S::build(settings, shutdown.clone()).await?;
    let port = service.port();
    Ok(Running {
        port,
        shutdown,
        task: Some(tokio::spawn(service.run_until_stopped())),
    })
}

impl Running {
    /// Cancels its token and waits until it has drained and stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
