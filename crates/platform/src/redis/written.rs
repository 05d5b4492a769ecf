//! How many sockets each notification was written to: the gateways count
//! in memory and add their counts here every second; ingest-api's status
//! endpoint reads them. One hash per shard and minute of creation (from
//! the UUIDv7 id), expiring `ttl` after that minute: memory is bounded by
//! the notifications delivered within the `ttl` (about 75 bytes each,
//! `MEMORY USAGE` of a hash of 100,000).

use std::collections::BTreeMap;
use std::time::Duration;

use domain::Shard;
use fred::bytes::Bytes;
use fred::interfaces::HashesInterface;
use fred::types::Value;
use uuid::Uuid;

use super::scripts::COUNT_WRITTEN;
use super::{RedisError, RedisStore};

/// The Unix minute a UUIDv7 id was made in (`None` for other ids).
fn minute_of(id: Uuid) -> Option<i64> {
    Some(domain::ids::made_at(id)?.timestamp().div_euclid(60))
}

impl RedisStore {
    /// Adds `written` (a notification of a user of the shard, and how many
    /// more sockets it was written to), kept `ttl` after the minute each
    /// was made in. One script call per shard and minute.
    pub async fn add_sockets_written(
        &self,
        written: &[(Shard, Uuid, u32)],
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let mut hashes: BTreeMap<(Shard, i64), Vec<Value>> = BTreeMap::new();
        for (shard, id, count) in written {
            let Some(minute) = minute_of(*id) else {
                continue;
            };
            let args = hashes.entry((*shard, minute)).or_default();
            args.push(Value::from(Bytes::copy_from_slice(id.as_bytes())));
            args.push(Value::from(*count));
        }
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        for ((shard, minute), pairs) in hashes {
            let expires_at = (minute + 1).saturating_mul(60).saturating_add(ttl);
            let args: Vec<Value> = std::iter::once(Value::from(expires_at))
                .chain(pairs)
                .collect();
            COUNT_WRITTEN
                .evalsha_with_reload::<(), _, _>(
                    &self.client,
                    vec![self.keys.sockets_written(shard, minute)],
                    args,
                )
                .await
                .map_err(RedisError::on("EVALSHA count_written"))?;
        }
        Ok(())
    }

    /// How many sockets the user's notification was written to (0: none
    /// yet, or no longer counted).
    pub async fn sockets_written(&self, user_id: &str, id: Uuid) -> Result<u64, RedisError> {
        let Some(minute) = minute_of(id) else {
            return Ok(0);
        };
        let key = self
            .keys
            .sockets_written(self.keys.shard_of(user_id), minute);
        let count: Option<i64> = self
            .client
            .hget(key, Bytes::copy_from_slice(id.as_bytes()))
            .await
            .map_err(RedisError::on("HGET written"))?;
        Ok(count.unwrap_or(0).max(0).unsigned_abs())
    }
}
