//! The Lua scripts Herald runs in Redis, each in its own `.lua` file (what
//! it takes in KEYS and ARGV is at the top of the file). Scripts are sent by
//! SHA and loaded on a miss.
//!
//! Why scripts and never pipelines: fred flushes the socket after every
//! command of a pipeline when nothing else is queued, one `writev` per
//! command; a script is one command, one write (measured in the worker's
//! PUBLISH pipeline: ~20,000 `writev` in 3 s at 12,000 notifications/s).
//! Scripts are also atomic, which appending with an idempotency record and
//! pruning consumers need.

use std::sync::LazyLock;

use fred::types::scripts::Script;

/// Appends entries; answers their ids in order.
pub(super) static APPEND_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/append_many.lua")));

/// Appends entries and records an idempotency key, atomically.
pub(super) static APPEND_IDEMPOTENT: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/append_idempotent.lua")));

/// Publishes frames, then acknowledges entries.
pub(super) static PUBLISH_AND_ACK: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/publish_and_ack.lua")));

/// Deletes idle consumers that hold nothing pending.
pub(super) static PRUNE_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/prune_consumers.lua")));

/// Takes units from a subject's GCRA rate, or refuses.
pub(super) static TAKE_RATE: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/take_rate.lua")));

/// Adds to the sockets notifications were written to.
pub(super) static COUNT_WRITTEN: LazyLock<Script> =
    LazyLock::new(|| Script::from_lua(include_str!("scripts/count_written.lua")));
