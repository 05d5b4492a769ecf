//! What tests read from Redis and Herald itself never needs (built with the
//! `test-support` feature only): pending counts, consumers, subscribers,
//! the dead-letter stream's length, and deleting a prefix's keys.

use domain::Priority;
use domain::keys::CONSUMER_GROUP;
use fred::prelude::*;
use futures_util::TryStreamExt;

use super::replies::value_pairs;
use super::{RedisError, RedisStore};

impl RedisStore {
    /// Entries delivered to a consumer and not yet acknowledged, per group.
    pub async fn pending_count(&self, priority: Priority) -> Result<u64, RedisError> {
        Ok(self.pending_summary(priority).await?.0)
    }

    /// How many connections (on all gateways) subscribe to a user's channel.
    pub async fn user_subscribers(&self, user_id: &str) -> Result<u64, RedisError> {
        let reply: Vec<Value> = self
            .client
            .pubsub_numsub(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("PUBSUB NUMSUB"))?;
        Ok(reply.get(1).and_then(Value::as_u64).unwrap_or(0))
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letter_len(&self) -> Result<u64, RedisError> {
        self.client
            .xlen(self.keys.dead_letter_stream())
            .await
            .map_err(RedisError::on("XLEN"))
    }

    /// Names of the group's consumers on one lane (XINFO CONSUMERS).
    pub async fn consumer_names(&self, priority: Priority) -> Result<Vec<String>, RedisError> {
        let reply: Value = match self
            .client
            .xinfo_consumers(self.keys.stream(priority), CONSUMER_GROUP)
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
        let keys: Vec<Key> = self
            .client
            .scan_buffered(format!("{}:*", self.keys.prefix()), Some(1_000), None)
            .try_collect()
            .await
            .map_err(RedisError::on("SCAN"))?;
        let mut deleted = 0;
        for chunk in keys.chunks(1_000) {
            deleted += self
                .client
                .unlink::<u64, _>(chunk.to_vec())
                .await
                .map_err(RedisError::on("UNLINK"))?;
        }
        Ok(deleted)
    }
}
