//! What tests read from Redis and Herald itself never needs (built with the
//! `test-support` feature only): pending counts, consumers, subscribers,
//! the dead-letter stream's length, and deleting a prefix's keys.

use domain::Lane;
use domain::keys::CONSUMER_GROUP;
use fred::prelude::*;
use futures_util::TryStreamExt;

use super::replies::value_pairs;
use super::{RedisError, RedisStore};

impl RedisStore {
    /// Entries delivered to a consumer and not yet acknowledged, per group.
    pub async fn pending_count(&self, lane: impl Into<Lane>) -> Result<u64, RedisError> {
        Ok(self.pending_summary(lane.into()).await?.0)
    }

    /// How many connections (on all gateways) subscribe to a user's channel.
    pub async fn user_subscribers(&self, user_id: &str) -> Result<u64, RedisError> {
        let channel = self.keys.user_channel(user_id);
        let reply: Vec<Value> = if self.keys.is_sharded() {
            self.client
                .pubsub_shardnumsub(channel)
                .await
                .map_err(RedisError::on("PUBSUB SHARDNUMSUB"))?
        } else {
            self.client
                .pubsub_numsub(channel)
                .await
                .map_err(RedisError::on("PUBSUB NUMSUB"))?
        };
        Ok(reply.get(1).and_then(Value::as_u64).unwrap_or(0))
    }

    /// Entries in the dead-letter streams of every shard.
    pub async fn dead_letter_len(&self) -> Result<u64, RedisError> {
        let mut total = 0;
        for shard in self.keys.shards() {
            total += self
                .client
                .xlen::<u64, _>(self.keys.dead_letter_stream(shard))
                .await
                .map_err(RedisError::on("XLEN"))?;
        }
        Ok(total)
    }

    /// Names of the group's consumers on one lane (XINFO CONSUMERS).
    pub async fn consumer_names(&self, lane: impl Into<Lane>) -> Result<Vec<String>, RedisError> {
        let reply: Value = match self
            .client
            .xinfo_consumers(self.keys.stream(lane), CONSUMER_GROUP)
            .await
        {
            Ok(reply) => reply,
            Err(err)
                if err.details().contains("no such key")
                    || err.details().starts_with("NOGROUP") =>
            {
                return Ok(Vec::new());
            }
            Err(err) => return Err(RedisError::on("XINFO CONSUMERS")(err)),
        };
        let Value::Array(consumers) = reply else {
            return Ok(Vec::new());
        };
        Ok(consumers
            .into_iter()
            .filter_map(|c| value_pairs(c).get("name").and_then(Value::as_string))
            .collect())
    }

    /// Deletes every key under this store's prefix (SCAN + UNLINK): a
    /// test's streams, idempotency records and consumer groups.
    pub async fn delete_prefix(&self) -> Result<u64, RedisError> {
        let keys = self.keys_of_prefix().await?;
        // On a cluster, keys of different slots cannot share a command.
        let chunk = if self.client.is_clustered() { 1 } else { 1_000 };
        let mut deleted = 0;
        for keys in keys.chunks(chunk) {
            deleted += self
                .client
                .unlink::<u64, _>(keys.to_vec())
                .await
                .map_err(RedisError::on("UNLINK"))?;
        }
        Ok(deleted)
    }

    /// Every key under this store's prefix (SCAN over every master).
    pub async fn keys_of_prefix(&self) -> Result<Vec<String>, RedisError> {
        let pattern = format!("{}:*", self.keys.prefix());
        let keys: Vec<Key> = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern, Some(1_000), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern, Some(1_000), None)
                .try_collect()
                .await
        }
        .map_err(RedisError::on("SCAN"))?;
        Ok(keys
            .into_iter()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect())
    }

    /// Every key under this store's prefix whose name or content mentions
    /// `needle` (streams, strings, hashes, lists, sets and sorted sets are
    /// read whole): what an erasure must leave without a trace.
    pub async fn keys_mentioning(&self, needle: &str) -> Result<Vec<String>, RedisError> {
        let mut mentioning = Vec::new();
        for key in self.keys_of_prefix().await? {
            let kind: String = self
                .client
                .r#type(key.as_str())
                .await
                .map_err(RedisError::on("TYPE"))?;
            let content: Value = match kind.as_str() {
                "stream" => self.client.xrange(key.as_str(), "-", "+", None).await,
                "string" => self.client.get(key.as_str()).await,
                "hash" => self.client.hgetall(key.as_str()).await,
                "list" => self.client.lrange(key.as_str(), 0, -1).await,
                "set" => self.client.smembers(key.as_str()).await,
                "zset" => {
                    self.client
                        .zrange(key.as_str(), 0, -1, None, false, None, true)
                        .await
                }
                _ => Ok(Value::Null),
            }
            .map_err(RedisError::on("reading a key"))?;
            if key.contains(needle) || format!("{content:?}").contains(needle) {
                mentioning.push(key);
            }
        }
        Ok(mentioning)
    }
}
