//! The consume loop: read a batch, store it, publish it, acknowledge it.
//!
//! Promise: an entry is acknowledged only after its notification committed
//! in PostgreSQL (or, for an entry that can never be processed, after it was
//! copied to the dead-letter stream). Storing is idempotent by id, so an
//! entry delivered twice (crash between commit and ack) is stored once and
//! published again; clients drop a frame whose `seq` they already have.
//!
//! After any failure the loop re-reads this consumer's own pending entries
//! before taking new ones, so nothing delivered to it is left behind.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use domain::{NewNotification, Notification, ServerFrame};
use platform::db::DbPool;
use platform::redis::{ReadFrom, RedisStore, StreamEntry};
use platform::storage::notifications;
use tokio_util::sync::CancellationToken;

pub struct Consumer {
    pub name: String,
    pub db: DbPool,
    /// Serves acks, publishes and dead letters.
    pub redis: RedisStore,
    /// Its own connection: the blocking read must not stall `redis`.
    pub reader: RedisStore,
    pub batch_size: usize,
    pub block: Duration,
}

/// A batch after decoding: what can be stored, and what never can.
struct Decoded {
    notifications: Vec<NewNotification>,
    poison: Vec<(StreamEntry, String)>,
}

impl Consumer {
    /// Runs until `shutdown` is cancelled; the batch in hand is finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.name, "consuming");
        let mut from = ReadFrom::OwnPending;
        let mut read_backoff = backoff();
        while !shutdown.is_cancelled() {
            let entries = match self
                .reader
                .read_group(&self.name, from, self.batch_size, self.block)
                .await
            {
                Ok(entries) => entries,
                Err(err) => {
                    let delay = read_backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%err, retry_in = ?delay, "cannot read the streams");
                    sleep_or_cancel(delay, &shutdown).await;
                    continue;
                }
            };
            read_backoff = backoff();
            if entries.is_empty() {
                from = ReadFrom::New;
                continue;
            }
            from = match self.process(entries, &shutdown).await {
                Ok(()) if from == ReadFrom::OwnPending => ReadFrom::OwnPending,
                Ok(()) => ReadFrom::New,
                Err(err) => {
                    tracing::warn!(%err, "batch not acknowledged; it will be re-read");
                    ReadFrom::OwnPending
                }
            };
        }
        tracing::info!(consumer = %self.name, "stopped consuming");
    }

    /// Stores, publishes and acknowledges one batch.
    async fn process(
        &self,
        entries: Vec<StreamEntry>,
        shutdown: &CancellationToken,
    ) -> Result<(), platform::redis::RedisError> {
        let Decoded {
            notifications,
            poison,
        } = decode(&entries);
        for (entry, error) in &poison {
            tracing::error!(entry = %entry.id, priority = %entry.priority, %error, "undecodable entry moved to the dead-letter stream");
            self.redis.dead_letter(entry, error).await?;
        }
        let Some(stored) = self.store(&notifications, shutdown).await else {
            // Cancelled while the database was unavailable: leave the batch pending.
            return Ok(());
        };
        let frames: Vec<(&str, String)> = stored
            .iter()
            .map(|n| {
                (
                    n.user_id.as_str(),
                    ServerFrame::Notification(n.clone()).to_json(),
                )
            })
            .collect();
        self.redis.publish_to_users(&frames).await?;
        self.redis.ack(&entries).await?;
        tracing::debug!(stored = stored.len(), dead = poison.len(), "batch done");
        Ok(())
    }

    /// Stores the batch, retrying transient failures with backoff until it
    /// commits; `None` if shutdown came first.
    async fn store(
        &self,
        batch: &[NewNotification],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Notification>> {
        let mut retry = backoff();
        loop {
            let attempt = async {
                let mut conn = self.db.get().await?;
                notifications::store_batch(&mut conn, batch).await
            };
            match attempt.await {
                Ok(stored) => return Some(stored),
                Err(err) => {
                    let delay = retry.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%err, retry_in = ?delay, batch = batch.len(), "cannot store batch");
                    if sleep_or_cancel(delay, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }
}

fn decode(entries: &[StreamEntry]) -> Decoded {
    let mut decoded = Decoded {
        notifications: Vec::with_capacity(entries.len()),
        poison: Vec::new(),
    };
    for entry in entries {
        let result = match &entry.payload {
            Some(payload) => {
                NewNotification::decode_entry(payload.as_bytes()).map_err(|e| match e {
                    domain::RequestError::InvalidFields(errors) => errors
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                })
            }
            None => Err("entry has no notification field".to_owned()),
        };
        match result {
            Ok(notification) => decoded.notifications.push(notification),
            Err(error) => decoded.poison.push((entry.clone(), error)),
        }
    }
    decoded
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps, or returns `true` early when shutdown is requested.
async fn sleep_or_cancel(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = shutdown.cancelled() => true,
    }
}
