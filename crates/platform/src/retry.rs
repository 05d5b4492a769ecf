//! Herald's one backoff policy, and retrying with it: services waiting for
//! PostgreSQL or Redis at start, and the worker retrying a round's step
//! after a transient failure, all wait 100 ms doubling to 5 s, with jitter
//! so that processes restarted together do not retry in step.

use std::fmt::Display;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

const MAX_DELAY: Duration = Duration::from_secs(5);

/// The policy: exponential from 100 ms to 5 s, jittered (up to as much
/// again), never giving up.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// Sleeps `delay`, or returns `true` early when `shutdown` is cancelled.
pub async fn sleep_or_cancel(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = shutdown.cancelled() => true,
    }
}

/// The waits between the attempts of one step: each failure is logged,
/// counted (when given a counter) and followed by the next delay of
/// [`backoff`], unless shutdown comes first.
pub struct Retry<'a> {
    delays: ExponentialBackoff,
    shutdown: &'a CancellationToken,
    counter: Option<&'a Counter>,
}

/// Shutdown was requested while waiting to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl<'a> Retry<'a> {
    pub fn new(shutdown: &'a CancellationToken) -> Self {
        Self {
            delays: backoff().build(),
            shutdown,
            counter: None,
        }
    }

    /// Counts every retry in `counter` too.
    pub fn counting(mut self, counter: &'a Counter) -> Self {
        self.counter = Some(counter);
        self
    }

    /// After a failed attempt (`what`, because of `err`): waits for the next
    /// try, or answers [`Cancelled`] when shutdown comes first.
    pub async fn after(&mut self, what: &str, err: &(dyn Display + Sync)) -> Result<(), Cancelled> {
        if let Some(counter) = self.counter {
            counter.inc();
        }
        let delay = self.delays.next().unwrap_or(MAX_DELAY);
        tracing::warn!(%err, retry_in = ?delay, "{what}");
        if sleep_or_cancel(delay, self.shutdown).await {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_after_each_failure_and_counts_it() {
        let shutdown = CancellationToken::new();
        let counter = Counter::default();
        let mut retry = Retry::new(&shutdown).counting(&counter);
        let started = std::time::Instant::now();
        for _ in 0..2 {
            retry.after("flaky", &"not yet").await.unwrap();
        }
        assert_eq!(counter.get(), 2);
        // 100 ms, then 200 ms, each with up to as much jitter again.
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn shutdown_stops_the_wait() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut retry = Retry::new(&shutdown);
        assert_eq!(retry.after("down", &"down").await, Err(Cancelled));
    }

    #[test]
    fn delays_grow_to_five_seconds_and_never_stop() {
        let delays: Vec<Duration> = backoff().build().take(20).collect();
        assert_eq!(delays.len(), 20);
        assert!(delays.iter().all(|d| *d <= 2 * MAX_DELAY));
        assert!(delays[19] >= MAX_DELAY);
    }
}
