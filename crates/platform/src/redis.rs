//! The only module that speaks to Redis (through fred). Each Redis command
//! Herald uses is one named method here; every key comes from
//! [`domain::KeySpace`].
//!
//! Connections: [`RedisStore`] serves ordinary commands (append, ack,
//! publish, ping). A blocking `XREADGROUP` must never share that connection
//! (it would stall every command queued behind it), so readers get their own
//! client from [`RedisStore::stream_reader`]. The gateway's one subscriber
//! connection per process is [`RedisSubscriber`].

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use backon::Retryable;
use bytestring::ByteString;
use domain::keys::{CONSUMER_GROUP, ENTRY_FIELD};
use domain::{KeySpace, Priority};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::streams::XReadResponse;
use secrecy::ExposeSecret;
use tokio::sync::broadcast;

use crate::settings::RedisSettings;

/// fred gives every client eight broadcast channels of one capacity, each
/// allocated in full up front: a command client needs none of them large.
const COMMAND_CLIENT_BUFFER: usize = 32;

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

    fn on(command: &'static str) -> impl FnOnce(fred::error::Error) -> Self {
        move |source| RedisError { command, source }
    }
}

/// One entry read from a priority stream. `payload` is `None` when the entry
/// has no notification field (it was not written by Herald).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub priority: Priority,
    pub id: String,
    pub payload: Option<String>,
    /// Times this entry has been delivered to a consumer, this time included.
    pub deliveries: u64,
}

/// The consumer group's view of one stream (XINFO GROUPS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Delivered to a consumer and not acknowledged.
    pub pending: u64,
    /// The last entry delivered to any consumer of the group.
    pub last_delivered_id: String,
    /// Entries not yet delivered to the group (Redis 7; `None` when Redis cannot tell).
    pub lag: Option<u64>,
}

/// How an idempotent append went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentAppend {
    /// Appended now.
    Appended,
    /// The key was used before: the fingerprint and answer recorded then.
    Replayed { fingerprint: String, answer: String },
}

/// Deletes consumers of the group that hold no pending entry and were idle
/// at least ARGV[2] ms; with more ARGV, only the consumers named there.
/// One script, so an entry cannot be read by a consumer between the check
/// and the delete (XGROUP DELCONSUMER drops a consumer's pending entries).
/// KEYS: the stream. ARGV: group, min idle ms, names... Returns the names deleted.
static PRUNE_CONSUMERS: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local only = {}
for i = 3, #ARGV do only[ARGV[i]] = true end
local deleted = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2])
     and (#ARGV < 3 or only[info['name']]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted[#deleted + 1] = info['name']
  end
end
return deleted
"#,
    )
});

/// Appends the entries and records the idempotency key with the answer in
/// one atomic step, or returns what the key recorded before.
/// KEYS: record, then one stream per entry. ARGV: fingerprint, answer, ttl
/// seconds, entry field, then one payload per entry.
static APPEND_IDEMPOTENT: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[i - 3], '*', ARGV[4], ARGV[i])
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return false
"#,
    )
});

/// Appends entries. KEYS: one stream per entry. ARGV: entry field, then one
/// payload per entry. Returns the entry ids in order.
///
/// A script rather than a pipeline of XADDs: fred flushes the socket after
/// every command of a pipeline when nothing else is queued, one `writev`
/// per entry; a script is one command, one write (measured in the worker's
/// PUBLISH pipeline: ~20,000 `writev` in 3 s at 12,000 notifications/s).
/// This module therefore sends no pipelines.
static APPEND_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local ids = {}
for i = 1, #KEYS do
  ids[i] = redis.call('XADD', KEYS[i], '*', ARGV[1], ARGV[i + 1])
end
return ids
"#,
    )
});

/// Publishes frames, then acknowledges entries, as one command (see
/// [`APPEND_MANY`] for why a script). KEYS: the streams acknowledged in.
/// ARGV: group, frame count F, F pairs of channel and frame, then for each
/// stream its id count and ids. A refused PUBLISH does not stop the
/// acknowledgement; the script returns how many were refused.
static PUBLISH_AND_ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(
        r#"
local group, at, refused = ARGV[1], 3 + 2 * tonumber(ARGV[2]), 0
for i = 3, at - 1, 2 do
  local reply = redis.pcall('PUBLISH', ARGV[i], ARGV[i + 1])
  if type(reply) == 'table' and reply.err then refused = refused + 1 end
end
for k = 1, #KEYS do
  local last = at + tonumber(ARGV[at])
  -- at most 1,000 ids per XACK: unpack is bounded by Lua's stack
  for first = at + 1, last, 1000 do
    redis.call('XACK', KEYS[k], group, unpack(ARGV, first, math.min(first + 999, last)))
  end
  at = last + 1
end
return refused
"#,
    )
});

/// Where a consumer-group read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Entries never delivered to any consumer (`>`).
    New,
    /// Entries already delivered to this consumer and not acknowledged (`0`).
    OwnPending,
}

fn builder(settings: &RedisSettings, broadcast_capacity: usize) -> Result<Builder, RedisError> {
    let config =
        Config::from_url(settings.url.expose_secret()).map_err(RedisError::on("config"))?;
    let mut builder = Builder::from_config(config);
    let command_timeout = settings.command_timeout();
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    builder
        .with_connection_config(|c| {
            // Commands are small and pipelined: send each at once (Nagle
            // would hold one back until the previous one is acknowledged).
            c.tcp.nodelay = Some(true);
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = command_timeout;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            p.broadcast_channel_capacity = broadcast_capacity;
        })
        // After the first connection, reconnect forever: 100 ms doubling to 5 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    Ok(builder)
}

/// Connects, retrying with backoff (and logging why) until Redis answers.
async fn connect_client(settings: &RedisSettings) -> Result<Client, RedisError> {
    let builder = builder(settings, COMMAND_CLIENT_BUFFER)?;
    let attempt = || async {
        let client = builder.build().map_err(RedisError::on("connect"))?;
        client.init().await.map_err(RedisError::on("connect"))?;
        Ok::<_, RedisError>(client)
    };
    attempt
        .retry(crate::retry::backoff())
        .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
        .await
}

#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    keys: KeySpace,
    settings: RedisSettings,
}

impl RedisStore {
    /// Connects (waiting for Redis at start) with the configured key prefix.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisError> {
        Ok(Self {
            client: connect_client(settings).await?,
            keys: KeySpace::new(settings.key_prefix.clone()),
            settings: settings.clone(),
        })
    }

    /// A store whose connection opens in the background: returns at once,
    /// and fred keeps (re)connecting with the usual backoff. Commands sent
    /// before it is up wait up to `redis.command_timeout_ms`, then fail.
    /// For connections opened while serving (an HTTP worker starting or
    /// restarting), which must not wait for Redis.
    pub fn connect_in_background(settings: &RedisSettings) -> Result<Self, RedisError> {
        let mut builder = builder(settings, COMMAND_CLIENT_BUFFER)?;
        builder.with_config(|c| c.fail_fast = false);
        let client = builder.build().map_err(RedisError::on("connect"))?;
        // The task lives as long as the client; dropping its handle does not stop it.
        drop(client.connect());
        Ok(Self {
            client,
            keys: KeySpace::new(settings.key_prefix.clone()),
            settings: settings.clone(),
        })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// A second store on its own connection, for blocking stream reads.
    pub async fn stream_reader(&self) -> Result<Self, RedisError> {
        Self::connect(&self.settings).await
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.client
            .ping::<()>(None)
            .await
            .map_err(RedisError::on("PING"))
    }

    /// XADD a notification's JSON to its priority stream; returns the entry id.
    /// Only once this returns Ok is the notification durable (as far as the
    /// Redis persistence settings promise).
    pub async fn append(&self, priority: Priority, payload: &str) -> Result<String, RedisError> {
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.stream(priority),
                false,
                None::<()>,
                "*",
                vec![(ENTRY_FIELD, payload)],
            )
            .await
            .map_err(RedisError::on("XADD"))
    }

    /// Appends many entries in one command ([`APPEND_MANY`]); returns their
    /// entry ids in order. All were appended if this returns Ok.
    pub async fn append_many(
        &self,
        entries: &[(Priority, String)],
    ) -> Result<Vec<String>, RedisError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = entries
            .iter()
            .map(|(priority, _)| self.keys.stream(*priority))
            .collect();
        let args: Vec<&str> = std::iter::once(ENTRY_FIELD)
            .chain(entries.iter().map(|(_, payload)| payload.as_str()))
            .collect();
        APPEND_MANY
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(RedisError::on("EVALSHA append_many"))
    }

    /// Like [`append_many`](Self::append_many), keyed by a producer's
    /// idempotency key: the first call appends every entry and remembers
    /// `fingerprint` and `answer` for `ttl`, atomically; later calls append
    /// nothing and return what was remembered.
    pub async fn append_idempotent(
        &self,
        entries: &[(Priority, String)],
        idempotency_key: &str,
        fingerprint: &str,
        answer: &str,
        ttl: Duration,
    ) -> Result<IdempotentAppend, RedisError> {
        let mut keys = Vec::with_capacity(entries.len() + 1);
        keys.push(self.keys.idempotency_record(idempotency_key));
        keys.extend(
            entries
                .iter()
                .map(|(priority, _)| self.keys.stream(*priority)),
        );
        let mut args = Vec::with_capacity(entries.len() + 4);
        args.push(fingerprint.to_owned());
        args.push(answer.to_owned());
        args.push(ttl.as_secs().max(1).to_string());
        args.push(ENTRY_FIELD.to_owned());
        args.extend(entries.iter().map(|(_, payload)| payload.clone()));
        let existing: Option<String> = APPEND_IDEMPOTENT
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(RedisError::on("EVALSHA append_idempotent"))?;
        Ok(match existing {
            None => IdempotentAppend::Appended,
            Some(record) => {
                let (fingerprint, answer) = record.split_once(' ').unwrap_or((record.as_str(), ""));
                IdempotentAppend::Replayed {
                    fingerprint: fingerprint.to_owned(),
                    answer: answer.to_owned(),
                }
            }
        })
    }

    /// Creates the consumer group on every priority stream (and the streams).
    /// An existing group (BUSYGROUP) is success.
    pub async fn ensure_consumer_group(&self) -> Result<(), RedisError> {
        for priority in Priority::ALL {
            let created = self
                .client
                .xgroup_create::<(), _, _, _>(self.keys.stream(priority), CONSUMER_GROUP, "0", true)
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.details().starts_with("BUSYGROUP") => {}
                Err(err) => return Err(RedisError::on("XGROUP CREATE")(err)),
            }
        }
        Ok(())
    }

    /// XREADGROUP from all priority streams. `ReadFrom::New` blocks up to
    /// `block` for entries never delivered; `ReadFrom::OwnPending` re-reads
    /// entries delivered to this consumer and not acked (after a restart or a
    /// failed batch) without blocking. Call on a
    /// [`stream_reader`](Self::stream_reader).
    pub async fn read_group(
        &self,
        consumer: &str,
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        self.read_lanes(consumer, &Priority::ALL, from, count, block)
            .await
    }

    /// [`read_group`](Self::read_group) from some lanes only.
    pub async fn read_lanes(
        &self,
        consumer: &str,
        lanes: &[Priority],
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let (id, block) = match from {
            ReadFrom::New => (">", Some(block.as_millis() as u64)),
            ReadFrom::OwnPending => ("0", None),
        };
        let mut entries = self.xreadgroup(consumer, lanes, id, count, block).await?;
        if from == ReadFrom::OwnPending {
            self.fill_delivery_counts(consumer, &mut entries).await?;
        }
        Ok(entries)
    }

    /// XREADGROUP `>` from one lane, without blocking.
    pub async fn read_lane(
        &self,
        consumer: &str,
        priority: Priority,
        count: usize,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        self.xreadgroup(consumer, &[priority], ">", count, None)
            .await
    }

    async fn xreadgroup(
        &self,
        consumer: &str,
        lanes: &[Priority],
        id: &str,
        count: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let streams: Vec<String> = lanes.iter().map(|p| self.keys.stream(*p)).collect();
        let ids = vec![id; streams.len()];
        let reply: Value = self
            .client
            .xreadgroup(
                CONSUMER_GROUP,
                consumer,
                Some(count as u64),
                block_ms,
                false,
                streams,
                ids,
            )
            .await
            .map_err(RedisError::on("XREADGROUP"))?;
        // A blocking read that timed out answers nil.
        if reply.is_null() {
            return Ok(Vec::new());
        }
        let mut by_stream: XReadResponse<String, String, String, Value> = reply
            .into_xread_response()
            .map_err(RedisError::on("XREADGROUP"))?;
        Ok(lanes
            .iter()
            .flat_map(|priority| {
                let read = by_stream
                    .remove(&self.keys.stream(*priority))
                    .unwrap_or_default();
                stream_entries(*priority, read)
            })
            .collect())
    }

    /// XAUTOCLAIM: takes over entries that other consumers of the group have
    /// held unacknowledged for at least `min_idle` (their consumer died or
    /// hangs), up to `count`, with their delivery counts.
    pub async fn claim_stale(
        &self,
        consumer: &str,
        priority: Priority,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let stream = self.keys.stream(priority);
        let mut cursor = "0-0".to_owned();
        let mut entries = Vec::new();
        loop {
            let reply: Value = self
                .client
                .xautoclaim(
                    &stream,
                    CONSUMER_GROUP,
                    consumer,
                    min_idle.as_millis() as u64,
                    cursor.as_str(),
                    Some((count - entries.len()) as u64),
                    false,
                )
                .await
                .map_err(RedisError::on("XAUTOCLAIM"))?;
            // [next cursor, [[id, [field, value, ...]], ...], [deleted ids]]
            let Value::Array(mut parts) = reply else {
                break;
            };
            if parts.len() < 2 {
                break;
            }
            let claimed = parts.remove(1);
            cursor = parts[0].as_string().unwrap_or_else(|| "0-0".to_owned());
            let claimed: Vec<(String, HashMap<String, Value>)> = claimed
                .into_xread_value()
                .map_err(RedisError::on("XAUTOCLAIM"))?;
            entries.extend(stream_entries(priority, claimed));
            if cursor == "0-0" || entries.len() >= count {
                break;
            }
        }
        self.fill_delivery_counts(consumer, &mut entries).await?;
        Ok(entries)
    }

    /// Reads each entry's delivery counter from this consumer's pending list
    /// (filtered by consumer, so other consumers' entries cannot crowd ours out).
    async fn fill_delivery_counts(
        &self,
        consumer: &str,
        entries: &mut [StreamEntry],
    ) -> Result<(), RedisError> {
        for priority in Priority::ALL {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|e| e.priority == priority)
                .map(|e| e.id.as_str())
                .collect();
            let (Some(first), Some(last)) = (
                ids.iter().min_by(|a, b| cmp_ids(a, b)),
                ids.iter().max_by(|a, b| cmp_ids(a, b)),
            ) else {
                continue;
            };
            let reply: Value = self
                .client
                .xpending(
                    self.keys.stream(priority),
                    CONSUMER_GROUP,
                    (*first, *last, ids.len() as u64, consumer),
                )
                .await
                .map_err(RedisError::on("XPENDING"))?;
            let mut counts = HashMap::new();
            if let Value::Array(rows) = reply {
                for row in rows {
                    if let Value::Array(fields) = row
                        && let (Some(id), Some(count)) = (
                            fields.first().and_then(Value::as_string),
                            fields.get(3).and_then(Value::as_u64),
                        )
                    {
                        counts.insert(id, count);
                    }
                }
            }
            for entry in entries.iter_mut().filter(|e| e.priority == priority) {
                if let Some(count) = counts.get(&entry.id) {
                    entry.deliveries = *count;
                }
            }
        }
        Ok(())
    }

    /// The group's state on one stream; `None` when the stream or group is missing.
    pub async fn group_info(&self, priority: Priority) -> Result<Option<GroupInfo>, RedisError> {
        let reply: Value = match self.client.xinfo_groups(self.keys.stream(priority)).await {
            Ok(reply) => reply,
            Err(err) if err.details().contains("no such key") => return Ok(None),
            Err(err) => return Err(RedisError::on("XINFO GROUPS")(err)),
        };
        let Value::Array(groups) = reply else {
            return Ok(None);
        };
        for group in groups {
            let fields = value_pairs(group);
            if fields.get("name").and_then(Value::as_string).as_deref() != Some(CONSUMER_GROUP) {
                continue;
            }
            return Ok(Some(GroupInfo {
                pending: fields.get("pending").and_then(Value::as_u64).unwrap_or(0),
                last_delivered_id: fields
                    .get("last-delivered-id")
                    .and_then(Value::as_string)
                    .unwrap_or_else(|| "0-0".to_owned()),
                lag: fields.get("lag").and_then(Value::as_u64),
            }));
        }
        Ok(None)
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

    /// Deletes the group's consumers on one lane that hold no pending entry
    /// and were idle at least `min_idle`; when `only` is not empty, only
    /// those named there. Atomic per lane; returns the names deleted.
    pub async fn prune_consumers(
        &self,
        priority: Priority,
        min_idle: Duration,
        only: &[String],
    ) -> Result<Vec<String>, RedisError> {
        let stream = self.keys.stream(priority);
        let mut args = vec![CONSUMER_GROUP.to_owned(), min_idle.as_millis().to_string()];
        args.extend(only.iter().cloned());
        match PRUNE_CONSUMERS
            .evalsha_with_reload(&self.client, vec![stream], args)
            .await
        {
            Ok(deleted) => Ok(deleted),
            Err(err)
                if err.details().contains("no such key") || err.details().contains("NOGROUP") =>
            {
                Ok(Vec::new())
            }
            Err(err) => Err(RedisError::on("EVALSHA prune_consumers")(err)),
        }
    }

    /// The smallest id still pending in the group, if any.
    pub async fn oldest_pending_id(
        &self,
        priority: Priority,
    ) -> Result<Option<String>, RedisError> {
        let reply: Value = self
            .client
            .xpending(self.keys.stream(priority), CONSUMER_GROUP, ())
            .await
            .map_err(RedisError::on("XPENDING"))?;
        Ok(match reply {
            Value::Array(summary) if summary.first().and_then(Value::as_u64).unwrap_or(0) > 0 => {
                summary.get(1).and_then(Value::as_string)
            }
            _ => None,
        })
    }

    /// XTRIM MINID: deletes the entries with ids below `min_id`. Callers
    /// must only pass an id below which every entry is acknowledged.
    pub async fn trim_below(&self, priority: Priority, min_id: &str) -> Result<u64, RedisError> {
        self.client
            .xtrim(self.keys.stream(priority), ("MINID", "=", min_id))
            .await
            .map_err(RedisError::on("XTRIM"))
    }

    /// XACK entries (see [`Self::publish_and_ack`]).
    pub async fn ack(&self, entries: &[StreamEntry]) -> Result<(), RedisError> {
        self.publish_and_ack(&[], entries).await
    }

    /// Publishes frames to users' channels (see [`Self::publish_to_users`])
    /// and acknowledges `entries`, in one command ([`PUBLISH_AND_ACK`]):
    /// Redis runs it at once, frames first. Only the acknowledgement
    /// decides the outcome: a PUBLISH refused while the XACK went through
    /// is logged, not returned, since the round is done
    /// (stored and acknowledged) and live delivery is best effort anyway:
    /// the gateway fills a gap in a user's `seq` from storage at the next
    /// frame, and a client resumes from its last `seq` on reconnect.
    pub async fn publish_and_ack(
        &self,
        frames: &[(&str, String)],
        entries: &[StreamEntry],
    ) -> Result<(), RedisError> {
        let refused = self.run_publish_and_ack(frames, entries).await?;
        if refused > 0 {
            tracing::warn!(
                refused,
                "PUBLISH refused while the round was acknowledged; clients catch up from storage"
            );
        }
        Ok(())
    }

    /// Runs [`PUBLISH_AND_ACK`]; answers how many PUBLISHes Redis refused.
    async fn run_publish_and_ack(
        &self,
        frames: &[(&str, String)],
        entries: &[StreamEntry],
    ) -> Result<u64, RedisError> {
        if frames.is_empty() && entries.is_empty() {
            return Ok(0);
        }
        let channels: Vec<String> = frames
            .iter()
            .map(|(user_id, _)| self.keys.user_channel(user_id))
            .collect();
        let lanes: Vec<(Priority, Vec<&str>)> = Priority::ALL
            .into_iter()
            .map(|p| {
                let ids = entries
                    .iter()
                    .filter(|e| e.priority == p)
                    .map(|e| e.id.as_str());
                (p, ids.collect::<Vec<_>>())
            })
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        let counts: Vec<String> = std::iter::once(frames.len())
            .chain(lanes.iter().map(|(_, ids)| ids.len()))
            .map(|n| n.to_string())
            .collect();
        let mut args: Vec<&str> =
            Vec::with_capacity(2 + 2 * frames.len() + lanes.len() + entries.len());
        args.extend([CONSUMER_GROUP, counts[0].as_str()]);
        for (channel, (_, frame)) in channels.iter().zip(frames) {
            args.extend([channel.as_str(), frame.as_str()]);
        }
        for ((_, ids), count) in lanes.iter().zip(&counts[1..]) {
            args.push(count);
            args.extend(ids);
        }
        let keys: Vec<String> = lanes.iter().map(|(p, _)| self.keys.stream(*p)).collect();
        PUBLISH_AND_ACK
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(RedisError::on("EVALSHA publish_and_ack"))
    }

    /// Copies an entry that can never be processed to the dead-letter stream.
    pub async fn dead_letter(&self, entry: &StreamEntry, error: &str) -> Result<(), RedisError> {
        let fields = vec![
            ("stream", self.keys.stream(entry.priority)),
            ("entry_id", entry.id.clone()),
            ("error", error.to_owned()),
            ("deliveries", entry.deliveries.to_string()),
            (ENTRY_FIELD, entry.payload.clone().unwrap_or_default()),
        ];
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.dead_letter_stream(),
                false,
                None::<()>,
                "*",
                fields,
            )
            .await
            .map(|_| ())
            .map_err(RedisError::on("XADD dead-letter"))
    }

    /// PUBLISH frames to user channels in one command ([`PUBLISH_AND_ACK`]
    /// with nothing to acknowledge); an error if Redis refused any of them.
    pub async fn publish_to_users(&self, frames: &[(&str, String)]) -> Result<(), RedisError> {
        match self.run_publish_and_ack(frames, &[]).await? {
            0 => Ok(()),
            refused => Err(RedisError::on("PUBLISH")(fred::error::Error::new(
                fred::error::ErrorKind::Unknown,
                format!("{refused} of {} frames refused", frames.len()),
            ))),
        }
    }

    /// Tells every ingest-api that this API key was revoked (they evict it
    /// from their caches); answers how many processes listened.
    pub async fn announce_key_revoked(&self, key_id: &str) -> Result<u64, RedisError> {
        self.client
            .publish(self.keys.api_key_revocations(), key_id)
            .await
            .map_err(RedisError::on("PUBLISH"))
    }

    /// Length of one priority stream (entries not yet trimmed).
    pub async fn stream_len(&self, priority: Priority) -> Result<u64, RedisError> {
        self.client
            .xlen(self.keys.stream(priority))
            .await
            .map_err(RedisError::on("XLEN"))
    }

    /// Entries delivered to a consumer and not yet acknowledged, per group.
    pub async fn pending_count(&self, priority: Priority) -> Result<u64, RedisError> {
        let reply: Value = self
            .client
            .xpending(self.keys.stream(priority), CONSUMER_GROUP, ())
            .await
            .map_err(RedisError::on("XPENDING"))?;
        Ok(match reply {
            Value::Array(items) => items.first().and_then(Value::as_u64).unwrap_or(0),
            _ => 0,
        })
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

    /// Deletes every key under this store's prefix; for tests and tools.
    pub async fn delete_streams(&self) -> Result<(), RedisError> {
        let mut keys: Vec<String> = Priority::ALL.iter().map(|p| self.keys.stream(*p)).collect();
        keys.push(self.keys.dead_letter_stream());
        self.client
            .del::<i64, _>(keys)
            .await
            .map(|_| ())
            .map_err(RedisError::on("DEL"))
    }
}

/// Entries as read from one lane (delivery count 1 until known better).
fn stream_entries(
    priority: Priority,
    read: Vec<(String, HashMap<String, Value>)>,
) -> impl Iterator<Item = StreamEntry> {
    read.into_iter().map(move |(id, fields)| StreamEntry {
        priority,
        id,
        payload: fields.get(ENTRY_FIELD).and_then(|v| v.as_string()),
        deliveries: 1,
    })
}

/// Orders stream ids (`<ms>-<seq>`) numerically.
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    parse_id(a).cmp(&parse_id(b))
}

fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// A RESP2 flat `[k, v, k, v]` array or a RESP3 map, as a map.
fn value_pairs(value: Value) -> HashMap<String, Value> {
    match value {
        Value::Array(items) => {
            let mut map = HashMap::new();
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let Some(k) = k.as_string() {
                    map.insert(k, v);
                }
            }
            map
        }
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// A user's live frames as they arrive from Pub/Sub.
#[derive(Debug, Clone)]
pub struct UserFrame {
    pub user_id: String,
    pub frame: ByteString,
}

/// The gateway's single Pub/Sub connection, shared by all users of a process.
/// Subscriptions are re-established by fred after a reconnect.
#[derive(Clone)]
pub struct RedisSubscriber {
    client: SubscriberClient,
    keys: KeySpace,
}

impl RedisSubscriber {
    /// The gateway's subscriber: room for `buffer` messages the hub has not
    /// read yet (a hub that falls further behind resynchronises its users
    /// from storage).
    pub async fn connect(settings: &RedisSettings, buffer: usize) -> Result<Self, RedisError> {
        Self::connect_with_buffer(settings, buffer).await
    }

    /// A subscriber for a few control messages (API key revocations).
    pub async fn connect_for_control(settings: &RedisSettings) -> Result<Self, RedisError> {
        Self::connect_with_buffer(settings, COMMAND_CLIENT_BUFFER).await
    }

    async fn connect_with_buffer(
        settings: &RedisSettings,
        buffer: usize,
    ) -> Result<Self, RedisError> {
        let builder = builder(settings, buffer)?;
        let attempt = || async {
            let client = builder
                .build_subscriber_client()
                .map_err(RedisError::on("connect"))?;
            client.init().await.map_err(RedisError::on("connect"))?;
            Ok::<_, RedisError>(client)
        };
        let client = attempt
            .retry(crate::retry::backoff())
            .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
            .await?;
        let _resubscribe_task = client.manage_subscriptions();
        Ok(Self {
            client,
            keys: KeySpace::new(settings.key_prefix.clone()),
        })
    }

    pub async fn subscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        self.client
            .subscribe(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("SUBSCRIBE"))
    }

    /// Listens to API key revocations (see [`RedisStore::announce_key_revoked`]).
    pub async fn subscribe_key_revocations(&self) -> Result<(), RedisError> {
        self.client
            .subscribe(self.keys.api_key_revocations())
            .await
            .map_err(RedisError::on("SUBSCRIBE"))
    }

    pub async fn unsubscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        self.client
            .unsubscribe(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("UNSUBSCRIBE"))
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.client
            .ping::<()>(None)
            .await
            .map_err(RedisError::on("PING"))
    }

    /// Fires each time the subscriber connection was re-established:
    /// messages published while it was down were lost for this process.
    pub fn reconnects(&self) -> Reconnects {
        Reconnects {
            rx: self.client.reconnect_rx(),
        }
    }

    /// Receives every user frame published to a channel this process
    /// subscribed to. Frames that are not text are skipped.
    pub fn frames(&self) -> UserFrames {
        UserFrames {
            messages: self.messages(),
            keys: self.keys.clone(),
        }
    }

    /// Every text message on a channel this process subscribed to.
    pub fn messages(&self) -> Messages {
        Messages {
            rx: self.client.message_rx(),
        }
    }
}

/// Text messages received by a [`RedisSubscriber`], with their channel.
pub struct Messages {
    rx: broadcast::Receiver<fred::types::Message>,
}

impl Messages {
    /// The next text message as `(channel, text)`; others are skipped.
    pub async fn recv(&mut self) -> Result<(String, String), FramesError> {
        loop {
            let message = match self.rx.recv().await {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(FramesError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(FramesError::Closed),
            };
            if let Some(text) = message.value.as_bytes_str() {
                return Ok((message.channel.to_string(), text.to_string()));
            }
        }
    }
}

pub struct Reconnects {
    rx: broadcast::Receiver<Server>,
}

impl Reconnects {
    /// Waits for the next reconnect; `false` once the client is gone.
    pub async fn recv(&mut self) -> bool {
        !matches!(
            self.rx.recv().await,
            Err(broadcast::error::RecvError::Closed)
        )
    }
}

pub struct UserFrames {
    messages: Messages,
    keys: KeySpace,
}

#[derive(Debug, thiserror::Error)]
pub enum FramesError {
    #[error("subscriber fell behind and skipped {0} messages")]
    Lagged(u64),
    #[error("subscriber closed")]
    Closed,
}

impl UserFrames {
    pub async fn recv(&mut self) -> Result<UserFrame, FramesError> {
        loop {
            let (channel, text) = self.messages.recv().await?;
            if let Some(user_id) = self.keys.user_of_channel(&channel) {
                return Ok(UserFrame {
                    user_id: user_id.to_owned(),
                    frame: ByteString::from(text),
                });
            }
        }
    }
}
