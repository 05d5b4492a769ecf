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

/// One partition of the notification streams (`redis.stream_shards`).
/// A user's notifications all go to one shard ([`KeySpace::shard_of`]),
/// so their order is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard(u16);

impl Shard {
    /// The first shard: the only one with `stream_shards = 1`.
    pub const FIRST: Shard = Shard(0);

    pub fn index(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One priority lane of one shard: a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lane {
    pub shard: Shard,
    pub priority: Priority,
}

/// A priority alone names its lane in the first shard (the only one
/// unless `stream_shards` is raised).
impl From<Priority> for Lane {
    fn from(priority: Priority) -> Self {
        Lane {
            shard: Shard::FIRST,
            priority,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
    shards: u16,
}

impl KeySpace {
    /// One shard: every stream under the hash tag `{notifications}`, users'
    /// channels without a hash tag (plain Pub/Sub).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self::sharded(prefix, 1)
    }

    /// `shards` partitions (at least 1), each under its own hash tag
    /// `{n:<shard>}`; with more than one, users' channels carry their
    /// shard's hash tag (sharded Pub/Sub).
    pub fn sharded(prefix: impl Into<String>, shards: u16) -> Self {
        Self {
            prefix: prefix.into(),
            shards: shards.max(1),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// More than one shard: users' channels are sharded channels.
    pub fn is_sharded(&self) -> bool {
        self.shards > 1
    }

    /// Every shard, in order.
    pub fn shards(&self) -> impl Iterator<Item = Shard> + use<> {
        (0..self.shards).map(Shard)
    }

    /// The shard of a user: FNV-1a (64 bit) of the user id, modulo the
    /// shard count. Stable across versions and processes: changing it
    /// would move users between shards, like changing the count.
    pub fn shard_of(&self, user_id: &str) -> Shard {
        if self.shards == 1 {
            return Shard::FIRST;
        }
        let hash = user_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        Shard((hash % u64::from(self.shards)) as u16)
    }

    /// The lane a user's notification of `priority` is appended to.
    pub fn lane_of(&self, user_id: &str, priority: Priority) -> Lane {
        Lane {
            shard: self.shard_of(user_id),
            priority,
        }
    }

    /// The hash tag every key of a shard shares.
    fn tag(&self, shard: Shard) -> String {
        if self.shards == 1 {
            "{notifications}".to_owned()
        } else {
            format!("{{n:{shard}}}")
        }
    }

    /// The stream of one priority lane of one shard.
    pub fn stream(&self, lane: impl Into<Lane>) -> String {
        let lane = lane.into();
        format!(
            "{}:{}:{}",
            self.prefix,
            self.tag(lane.shard),
            lane.priority.as_str()
        )
    }

    /// A shard's entries that could not be processed, with their error.
    pub fn dead_letter_stream(&self, shard: Shard) -> String {
        format!("{}:{}:dead", self.prefix, self.tag(shard))
    }

    /// Where a producer's idempotency key remembers its first answer for
    /// the entries it appended to `shard`. Same hash tag as the shard's
    /// streams: the append and the record are one atomic script.
    pub fn idempotency_record(&self, shard: Shard, scoped_key: &str) -> String {
        format!("{}:{}:idem:{}", self.prefix, self.tag(shard), scoped_key)
    }

    /// The claim of an idempotency key whose request spans several shards
    /// (its body's fingerprint): its own hash tag, so claims spread over
    /// a cluster's slots.
    pub fn idempotency_claim(&self, scoped_key: &str) -> String {
        format!("{}:idem-claim:{{{}}}", self.prefix, scoped_key)
    }

    /// The stream shard count every service of this deployment uses,
    /// recorded by the first one to start (see
    /// `RedisStore::agree_on_stream_shards`).
    pub fn stream_shards_record(&self) -> String {
        format!("{}:stream-shards", self.prefix)
    }

    /// The GCRA state of one rate-limited subject (an API key's id): one
    /// key each, so subjects spread over a cluster's slots.
    pub fn rate_limit(&self, subject: &str) -> String {
        format!("{}:rate:{{{}}}", self.prefix, subject)
    }

    /// How many sockets each notification of the shard's users created in
    /// one minute (`minute`: Unix minutes, from its UUIDv7 id) was written
    /// to: a hash of id (16 bytes) to count, one per shard and minute, so
    /// it expires whole.
    pub fn sockets_written(&self, shard: Shard, minute: i64) -> String {
        format!("{}:{}:written:{minute}", self.prefix, self.tag(shard))
    }

    /// Pub/Sub channel on which a user's notification frames are published.
    /// Sharded, it carries the user's shard's hash tag, so the worker's
    /// publish-and-acknowledge script touches one slot.
    pub fn user_channel(&self, user_id: &str) -> String {
        if self.is_sharded() {
            let tag = self.tag(self.shard_of(user_id));
            format!("{}:{tag}:user:{user_id}", self.prefix)
        } else {
            format!("{}:user:{}", self.prefix, user_id)
        }
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
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?;
        if self.is_sharded() {
            let (_, user_id) = rest.strip_prefix("{n:")?.split_once("}:user:")?;
            Some(user_id)
        } else {
            rest.strip_prefix("user:")
        }
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
        assert_eq!(
            keys.dead_letter_stream(Shard::FIRST),
            "herald:{notifications}:dead"
        );
        assert_eq!(
            keys.idempotency_record(keys.shard_of("u"), "k"),
            "herald:{notifications}:idem:k"
        );
    }

    #[test]
    fn each_shard_has_its_own_hash_tag() {
        let keys = KeySpace::sharded("herald", 8);
        let shard = keys.shard_of("alice");
        let tag = format!("{{n:{shard}}}");
        let lane = Lane {
            shard,
            priority: Priority::Normal,
        };
        assert_eq!(keys.stream(lane), format!("herald:{tag}:normal"));
        assert_eq!(keys.dead_letter_stream(shard), format!("herald:{tag}:dead"));
        assert_eq!(
            keys.user_channel("alice"),
            format!("herald:{tag}:user:alice")
        );
        assert_eq!(
            keys.user_of_channel(&keys.user_channel("alice")),
            Some("alice")
        );
        assert_eq!(keys.user_of_channel("herald:user:alice"), None);
    }

    #[test]
    fn users_spread_over_every_shard_and_stay_put() {
        let keys = KeySpace::sharded("h", 8);
        let mut per_shard = [0_u32; 8];
        for user in 0..8_000 {
            per_shard[usize::from(keys.shard_of(&format!("user-{user}")).index())] += 1;
        }
        for count in per_shard {
            assert!((800..1_200).contains(&count), "uneven: {per_shard:?}");
        }
        // FNV-1a is fixed: a user's shard never changes between versions.
        assert_eq!(
            keys.shard_of("alice"),
            KeySpace::sharded("other", 8).shard_of("alice")
        );
        assert_eq!(KeySpace::new("h").shard_of("alice"), Shard::FIRST);
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
