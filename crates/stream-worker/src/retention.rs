//! Retention: notifications stored more than `retention.days` ago are
//! deleted for good. Every `retention.interval_ms` a sweep goes through
//! the notifications created before the cutoff, oldest first, and deletes
//! their users' old ones, a chunk per transaction under the user's lock (see
//! `platform::storage::inbox::retention`); each chunk's unread ones leave
//! the counts and its `trimmed` frame reaches every device of the user.
//!
//! Any number of workers may run it: two finding the same user take turns
//! on the user's lock, and the second finds nothing left. (Each worker
//! sweeps the whole range: with N workers the old rows' ids are read N
//! times, 1,000 per index range read; only chunks that deleted something
//! are measured.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use platform::db::{DbError, DbPool};
use platform::inbox_changes;
use platform::redis::RedisStore;
use platform::shutdown::Ticks;
use platform::storage::inbox;
use tokio_util::sync::CancellationToken;

use crate::metrics::WorkerMetrics;

/// Notifications one step of a sweep reads to find their users.
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
        let mut ticks = Ticks::new(self.interval, shutdown);
        while ticks.next().await {
            if let Err(err) = self.sweep(&ticks).await {
                tracing::warn!(%err, "retention sweep failed; trying again next interval");
            }
        }
    }

    /// Goes through every notification created before the cutoff, [`LOOK`]
    /// at a time, and deletes what its user holds past the period; answers
    /// how many rows went.
    pub async fn sweep(&self, ticks: &Ticks) -> Result<usize, DbError> {
        let cutoff = Utc::now() - self.period;
        let mut after = None;
        let mut deleted = 0;
        while !ticks.stopping() {
            let step = {
                let mut conn = self.db.get().await?;
                inbox::sweep(&mut conn, cutoff, after, LOOK).await?
            };
            for user in &step.users {
                // One user's failure (say, their row is locked past the
                // statement timeout) does not hold up the others'.
                match self.trim(user, cutoff).await {
                    Ok(rows) => deleted += rows,
                    Err(err) => {
                        tracing::warn!(%err, user = %user, "retention of a user failed; next sweep")
                    }
                }
            }
            match step.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(deleted)
    }

    /// Deletes the user's notifications stored before `cutoff`, a chunk at
    /// a time; answers how many rows went.
    async fn trim(&self, user: &str, cutoff: DateTime<Utc>) -> Result<usize, DbError> {
        let mut deleted = 0;
        loop {
            let started = Instant::now();
            let trimmed = inbox_changes::trim(&self.db, &self.redis, user, cutoff).await?;
            let took = started.elapsed();
            if trimmed.deleted == 0 {
                // Another worker got there first: nothing held, nothing to tell.
                return Ok(deleted);
            }
            self.metrics
                .retention_chunk_seconds
                .observe(took.as_secs_f64());
            self.metrics
                .retention_deleted
                .inc_by(trimmed.deleted as u64);
            tracing::debug!(
                user = %user,
                deleted = trimmed.deleted,
                micros = took.as_micros() as u64,
                "retention chunk"
            );
            deleted += trimmed.deleted;
            if !trimmed.more() {
                return Ok(deleted);
            }
        }
    }
}
