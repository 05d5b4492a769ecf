//! The only module that speaks to Redis (through fred). Each Redis command
//! Herald uses is one named method here; every key comes from
//! [`domain::KeySpace`].
//!
//! Connections: [`RedisStore`] serves ordinary commands (append, ack,
//! publish, ping). A blocking `XREADGROUP` must never share that connection
//! (it would stall every command queued behind it), so readers get their own
//! client from [`RedisStore::stream_reader`]. The gateway's one subscriber
//! connection per process is [`RedisSubscriber`].
//!
//! By topic: `connection` (clients, timeouts, reconnecting), `streams`
//! (the priority streams and their consumer group), `pubsub` (users'
//! channels, publishing and the subscriber), `entries` (entries found by
//! notification, a user's deleted), `written` (how many sockets each
//! notification was written to), `replies` (reading fred's
//! untyped replies) and `scripts` (the Lua scripts, one `.lua` file each).

mod connection;
mod entries;
#[cfg(feature = "test-support")]
mod inspect;
mod limits;
mod pubsub;
mod replies;
mod scripts;
mod streams;
mod written;

pub use connection::{RedisStore, ShardCountError};
pub use entries::{DroppedEntries, QueuedEntry};
pub use limits::RateGrant;
pub use pubsub::{FramesError, Messages, Reconnects, RedisSubscriber, UserFrame, UserFrames};
pub use replies::cmp_ids;
pub use streams::{GroupInfo, IdempotentAppend, KeyClaim, ReadFrom, StreamEntry};

/// The Redis Cluster hash slot of a key (or sharded channel).
pub fn hash_slot(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

#[derive(Debug, thiserror::Error)]
#[error("redis {command} failed: {source}")]
pub struct RedisError {
    command: &'static str,
    #[source]
    source: fred::error::Error,
}

impl RedisError {
    /// The consumer group (or its stream) does not exist: a Redis without
    /// persistence restarted, or an operator deleted it.
    pub fn is_missing_group(&self) -> bool {
        self.source.details().starts_with("NOGROUP")
    }

    pub(crate) fn on(command: &'static str) -> impl FnOnce(fred::error::Error) -> Self {
        move |source| RedisError { command, source }
    }
}
