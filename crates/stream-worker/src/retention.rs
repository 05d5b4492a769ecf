//! Retention: notifications stored more than `retention.days` ago are
//! deleted for good, user by user, the users holding the oldest first, a
//! chunk per transaction under the user's lock (see
//! `platform::storage::inbox::retention`); each chunk's unread ones leave
//! the counts and its `trimmed` frame reaches every device of the user.
//!
//! Any number of workers may run it: two finding the same user take turns
//! on the user's lock, and the second finds nothing left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use platform::db::{DbError, DbPool};
use platform::inbox_changes;
use platform::redis::RedisStore;
use platform::storage::inbox;
use tokio_util::sync::CancellationToken;

use crate::metrics::WorkerMetrics;

/// Oldest notifications one look reads to find their users.
const LOOK: i64 = 1_000;

pub struct Retention {
    pub db: DbPool,
    pub redis: RedisStore,
    /// Notifications stored longer ago than this go.
    pub period: chrono::Duration,
    pub interval: Duration,
    pub metrics: Arc<WorkerMetrics>,
}

impl Retention {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // Each look deletes what it found; the next finds the next users.
            while !shutdown.is_cancelled() {
                match self.pass().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(%err, "retention pass failed; trying again next interval");
                        break;
                    }
                }
            }
        }
    }

    /// Deletes every notification stored before the cutoff of the users
    /// holding the [`LOOK`] oldest ones; answers how many rows went.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let cutoff = Utc::now() - self.period;
        let users = {
            let mut conn = self.db.get().await?;
            inbox::users_with_old(&mut conn, cutoff, LOOK).await?
        };
        let mut deleted = 0;
        for user in &users {
            loop {
                let started = Instant::now();
                let trimmed = inbox_changes::trim(&self.db, &self.redis, user, cutoff).await?;
                self.metrics
                    .retention_chunk_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .retention_deleted
                    .inc_by(trimmed.deleted as u64);
                deleted += trimmed.deleted;
                if !trimmed.more() {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}
