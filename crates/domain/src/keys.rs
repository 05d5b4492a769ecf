//! Every Redis key and channel name Herald uses, built in one place.
//!
//! The streams share the hash tag `{notifications}` so one XREADGROUP can read
//! all priority lanes even on a Redis Cluster (same slot). Each deployment (and
//! each test) picks its own prefix.

use crate::notification::Priority;

/// Name of the consumer group every stream-worker joins.
pub const CONSUMER_GROUP: &str = "stream-worker";

/// Field of a stream entry holding the notification's JSON.
pub const ENTRY_FIELD: &str = "n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream of one priority lane.
    pub fn stream(&self, priority: Priority) -> String {
        format!("{}:{{notifications}}:{}", self.prefix, priority.as_str())
    }

    /// Entries that could not be processed, with their error.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:{{notifications}}:dead", self.prefix)
    }

    /// Where a producer's idempotency key remembers its first answer. Same
    /// hash tag as the streams: the append and the record are one atomic script.
    pub fn idempotency_record(&self, scoped_key: &str) -> String {
        format!("{}:{{notifications}}:idem:{}", self.prefix, scoped_key)
    }

    /// The GCRA state of one rate-limited subject (an API key's id): one
    /// key each, so subjects spread over a cluster's slots.
    pub fn rate_limit(&self, subject: &str) -> String {
        format!("{}:rate:{{{}}}", self.prefix, subject)
    }

    /// Pub/Sub channel on which a user's notification frames are published.
    pub fn user_channel(&self, user_id: &str) -> String {
        format!("{}:user:{}", self.prefix, user_id)
    }

    /// Pub/Sub channel announcing revoked API keys (the key's id as text),
    /// so every ingest-api drops it from its cache at once.
    pub fn api_key_revocations(&self) -> String {
        format!("{}:api-keys:revoked", self.prefix)
    }

    /// Pub/Sub channel announcing revoked user tokens (their `jti`), so
    /// every ws-gateway refuses them and closes their sockets at once.
    pub fn token_revocations(&self) -> String {
        format!("{}:tokens:revoked", self.prefix)
    }

    /// The user id of a channel built by [`KeySpace::user_channel`].
    pub fn user_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(":user:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_share_one_hash_tag() {
        let keys = KeySpace::new("herald");
        assert_eq!(keys.stream(Priority::High), "herald:{notifications}:high");
        assert_eq!(keys.stream(Priority::Low), "herald:{notifications}:low");
        assert_eq!(keys.dead_letter_stream(), "herald:{notifications}:dead");
    }

    #[test]
    fn channel_round_trip() {
        let keys = KeySpace::new("t-1");
        let channel = keys.user_channel("alice@x");
        assert_eq!(channel, "t-1:user:alice@x");
        assert_eq!(keys.user_of_channel(&channel), Some("alice@x"));
        assert_eq!(keys.user_of_channel("other:user:alice"), None);
    }
}
