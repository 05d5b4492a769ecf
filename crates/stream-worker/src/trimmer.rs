//! Keeps the streams bounded without ever deleting an entry the consumer
//! group still needs.
//!
//! `XADD ... MAXLEN` would cut the oldest entries whatever their state, so
//! under a backlog it deletes entries nobody has read. Instead, every
//! `trim_interval` this task looks at each lane and, when it is longer than
//! `trim_target_len`, deletes (`XTRIM MINID`) only entries below the safe
//! point: the oldest entry still pending in the group, or, with nothing
//! pending, the last entry delivered to the group. Everything below that
//! point was delivered and acknowledged. Entries not yet delivered are
//! always at or above the last delivered id, so they are never touched. If
//! the group does not exist (no worker ever ran), nothing is trimmed.
//!
//! The same pass refreshes the pending, lag and length gauges, and the
//! count of dead letters not replayed yet (`herald_dlq_entries`), and
//! deletes consumers of the group that are long idle with nothing pending
//! (names of pods that are gone).

use std::sync::Arc;
use std::time::Duration;

use domain::Priority;
use platform::db::{DbError, DbPool};
use platform::redis::{RedisError, RedisStore, cmp_ids};
use platform::storage::dead_letters;
use tokio_util::sync::CancellationToken;

use crate::metrics::{WorkerMetrics, lane};

pub struct Trimmer {
    pub redis: RedisStore,
    pub db: DbPool,
    pub target_len: u64,
    pub interval: Duration,
    /// Consumers idle this long with nothing pending are deleted; `None` keeps them.
    pub prune_idle_consumers: Option<Duration>,
    pub metrics: Arc<WorkerMetrics>,
}

impl Trimmer {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            for priority in Priority::ALL {
                if let Err(err) = self.pass(priority).await {
                    tracing::warn!(%err, %priority, "trim pass failed");
                }
                if let Some(idle) = self.prune_idle_consumers {
                    match self.redis.prune_consumers(priority, idle, &[]).await {
                        Ok(gone) if !gone.is_empty() => {
                            tracing::info!(%priority, ?gone, "deleted idle consumers with nothing pending");
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(%err, %priority, "cannot prune idle consumers"),
                    }
                }
            }
            if let Err(err) = self.count_dead_letters().await {
                tracing::warn!(%err, "cannot count the dead letters");
            }
        }
    }

    /// Refreshes `herald_dlq_entries`: dead letters not replayed yet.
    pub async fn count_dead_letters(&self) -> Result<(), DbError> {
        let mut conn = self.db.get().await?;
        let count = dead_letters::count_not_replayed(&mut conn).await?;
        self.metrics.dlq_entries.set(count);
        Ok(())
    }

    /// One look at one lane; returns how many entries were deleted.
    pub async fn pass(&self, priority: Priority) -> Result<u64, RedisError> {
        let length = self.redis.stream_len(priority).await?;
        let labels = lane(priority);
        let Some(group) = self.redis.group_info(priority).await? else {
            self.metrics
                .length
                .get_or_create(&labels)
                .set(length as i64);
            return Ok(0);
        };
        self.metrics
            .pending
            .get_or_create(&labels)
            .set(group.pending as i64);
        if let Some(lag) = group.lag {
            self.metrics.lag.get_or_create(&labels).set(lag as i64);
        }
        let mut trimmed = 0;
        if length > self.target_len {
            let oldest_pending = self.redis.oldest_pending_id(priority).await?;
            let safe = match oldest_pending {
                Some(pending) if cmp_ids(&pending, &group.last_delivered_id).is_lt() => pending,
                _ => group.last_delivered_id.clone(),
            };
            trimmed = self.redis.trim_below(priority, &safe).await?;
            if trimmed > 0 {
                tracing::debug!(%priority, trimmed, below = %safe, "trimmed acknowledged entries");
                self.metrics.trimmed.get_or_create(&labels).inc_by(trimmed);
            }
        }
        self.metrics
            .length
            .get_or_create(&labels)
            .set(length.saturating_sub(trimmed) as i64);
        Ok(trimmed)
    }
}
