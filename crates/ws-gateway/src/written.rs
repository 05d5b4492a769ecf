//! How many sockets each notification was written to, for the producers'
//! status endpoint (`GET /v1/notifications/{id}` on ingest-api): counted
//! here at every write, live or from storage, and added to Redis once a
//! second (`platform::redis::RedisStore::add_sockets_written`), so the
//! hot path takes a short lock and no round trip.
//!
//! Counts are best-effort: a gateway that stops without its last flush, or
//! a flush Redis refuses, loses at most a second of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use domain::Shard;
use platform::redis::RedisStore;
use platform::shutdown::Ticks;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the counts go to Redis.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

pub struct SocketsWritten {
    counts: Mutex<HashMap<Uuid, (Shard, u32)>>,
    /// How long after its minute a notification's count is kept (zero:
    /// nothing is counted).
    ttl: Duration,
}

impl SocketsWritten {
    pub fn new(ttl: Duration) -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// One more socket got notification `id` of a user of `shard`.
    pub fn record(&self, shard: Shard, id: Uuid) {
        if self.ttl.is_zero() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.entry(id).or_insert((shard, 0)).1 += 1;
    }

    /// Adds what was counted since the last flush to Redis.
    pub async fn flush(&self, redis: &RedisStore) {
        let taken = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let written: Vec<(Shard, Uuid, u32)> = taken
            .into_iter()
            .map(|(id, (shard, count))| (shard, id, count))
            .collect();
        if let Err(err) = redis.add_sockets_written(&written, self.ttl).await {
            tracing::warn!(%err, notifications = written.len(), "sockets-written counts lost");
        }
    }

    /// Flushes every second until `shutdown`, and once more then.
    pub async fn keep_flushing(
        self: std::sync::Arc<Self>,
        redis: RedisStore,
        shutdown: CancellationToken,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let mut ticks = Ticks::new(FLUSH_EVERY, shutdown);
        while ticks.next().await {
            self.flush(&redis).await;
        }
        self.flush(&redis).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_notification_and_nothing_when_off() {
        let shard = domain::KeySpace::new("t").shard_of("u");
        let on = SocketsWritten::new(Duration::from_secs(60));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        on.record(shard, a);
        on.record(shard, a);
        on.record(shard, b);
        let counts = on.counts.lock().unwrap();
        assert_eq!((counts[&a].1, counts[&b].1), (2, 1));
        let off = SocketsWritten::new(Duration::ZERO);
        off.record(shard, a);
        assert!(off.counts.lock().unwrap().is_empty());
    }
}
