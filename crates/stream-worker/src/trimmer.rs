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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::{Lane, Priority};
use platform::db::{DbError, DbPool};
use platform::redis::{RedisError, RedisStore, cmp_ids};
use platform::shutdown::Ticks;
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

/// One lane's state after a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneState {
    /// Entries left in the stream.
    pub length: u64,
    /// Delivered and not acknowledged.
    pub pending: u64,
    /// Not yet delivered to the group (when Redis can tell).
    pub lag: Option<u64>,
    /// Deleted by this pass.
    pub trimmed: u64,
}

impl LaneState {
    fn add(&mut self, other: LaneState) {
        self.length += other.length;
        self.pending += other.pending;
        self.lag = self.lag.zip(other.lag).map(|(a, b)| a + b);
        self.trimmed += other.trimmed;
    }
}

impl Trimmer {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = Ticks::new(self.interval, shutdown);
        while ticks.next().await {
            // The gauges are per priority: the sum over the shards. A lane
            // that could not be read leaves its priority's gauges as they were.
            let mut totals: HashMap<Priority, Option<LaneState>> = HashMap::new();
            for lane in self.redis.lanes() {
                let total = totals.entry(lane.priority).or_insert(Some(LaneState {
                    lag: Some(0),
                    ..LaneState::default()
                }));
                match self.pass(lane).await {
                    Ok(state) => {
                        if let Some(total) = total {
                            total.add(state);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, priority = %lane.priority, shard = %lane.shard, "trim pass failed");
                        *total = None;
                    }
                }
                if let Some(idle) = self.prune_idle_consumers {
                    match self.redis.prune_consumers(lane, idle, &[]).await {
                        Ok(gone) if !gone.is_empty() => {
                            tracing::info!(priority = %lane.priority, shard = %lane.shard, ?gone, "deleted idle consumers with nothing pending");
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(%err, priority = %lane.priority, "cannot prune idle consumers")
                        }
                    }
                }
            }
            for (priority, total) in totals {
                if let Some(total) = total {
                    self.record(priority, total);
                }
            }
            if let Err(err) = self.count_dead_letters().await {
                tracing::warn!(%err, "cannot count the dead letters");
            }
        }
    }

    fn record(&self, priority: Priority, state: LaneState) {
        let labels = lane(priority);
        self.metrics
            .length
            .get_or_create(&labels)
            .set(state.length as i64);
        self.metrics
            .pending
            .get_or_create(&labels)
            .set(state.pending as i64);
        if let Some(lag) = state.lag {
            self.metrics.lag.get_or_create(&labels).set(lag as i64);
        }
        if state.trimmed > 0 {
            self.metrics
                .trimmed
                .get_or_create(&labels)
                .inc_by(state.trimmed);
        }
    }

    /// Refreshes `herald_dlq_entries`: dead letters not replayed yet.
    pub async fn count_dead_letters(&self) -> Result<(), DbError> {
        let mut conn = self.db.get().await?;
        let count = dead_letters::count_not_replayed(&mut conn).await?;
        self.metrics.dlq_entries.set(count);
        Ok(())
    }

    /// One look at one lane: trims it when it is over the target length.
    pub async fn pass(&self, lane: impl Into<Lane>) -> Result<LaneState, RedisError> {
        let lane = lane.into();
        let length = self.redis.stream_len(lane).await?;
        let Some(group) = self.redis.group_info(lane).await? else {
            return Ok(LaneState {
                length,
                ..LaneState::default()
            });
        };
        let mut trimmed = 0;
        if length > self.target_len {
            let oldest_pending = self.redis.oldest_pending_id(lane).await?;
            let safe = match oldest_pending {
                Some(pending) if cmp_ids(&pending, &group.last_delivered_id).is_lt() => pending,
                _ => group.last_delivered_id.clone(),
            };
            trimmed = self.redis.trim_below(lane, &safe).await?;
            if trimmed > 0 {
                tracing::debug!(priority = %lane.priority, shard = %lane.shard, trimmed, below = %safe, "trimmed acknowledged entries");
            }
        }
        Ok(LaneState {
            length: length.saturating_sub(trimmed),
            pending: group.pending,
            lag: group.lag,
            trimmed,
        })
    }
}
