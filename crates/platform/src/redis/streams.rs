//! The priority streams and the consumer group: appending (plain, many at
//! once, idempotent), reading by lane, claiming entries of dead consumers,
//! the group's state, trimming, acknowledging and dead letters.
//!
//! Every stream is one [`Lane`]: a priority of a shard. A command touches
//! one shard only (one hash slot, so one node of a cluster); callers that
//! span shards (a batch to many users) call once per shard.

use std::collections::HashMap;
use std::time::Duration;

use domain::keys::{CONSUMER_GROUP, ENTRY_FIELD};
use domain::{Lane, Priority, Shard};
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::streams::XReadResponse;
use fred::types::{ClusterHash, Expiration, SetOptions};

use super::replies::{cmp_ids, deleted_entries_emptied, value_pairs};
use super::scripts::{APPEND_IDEMPOTENT, APPEND_MANY, PRUNE_CONSUMERS};
use super::{RedisError, RedisStore};

/// One entry read from a priority stream. `payload` is `None` when the entry
/// has no notification field (it was not written by Herald, or was deleted).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub shard: Shard,
    pub priority: Priority,
    pub id: String,
    pub payload: Option<String>,
    /// Deleted from the stream after a consumer read it (an erased user's
    /// entry): a consumer's own pending entries come back with their id and
    /// no fields. Nothing to store; only to acknowledge.
    pub deleted: bool,
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

/// What [`RedisStore::claim_idempotency_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClaim {
    /// No request used the key before.
    First,
    /// A request with the same body used it: a retry.
    SameBody,
    /// A request with another body used it.
    OtherBody,
}

/// Where a consumer-group read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Entries never delivered to any consumer (`>`).
    New,
    /// Entries already delivered to this consumer and not acknowledged (`0`).
    OwnPending,
}

impl RedisStore {
    /// XADD a notification's JSON to its lane; returns the entry id.
    /// Only once this returns Ok is the notification durable (as far as the
    /// Redis persistence settings promise).
    pub async fn append(&self, lane: impl Into<Lane>, payload: &str) -> Result<String, RedisError> {
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.stream(lane),
                false,
                None::<()>,
                "*",
                vec![(ENTRY_FIELD, payload)],
            )
            .await
            .map_err(RedisError::on("XADD"))
    }

    /// Appends many entries to one shard's lanes in one command
    /// ([`APPEND_MANY`]); returns their entry ids in order. All were
    /// appended if this returns Ok.
    pub async fn append_many(
        &self,
        shard: Shard,
        entries: &[(Priority, String)],
    ) -> Result<Vec<String>, RedisError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = entries
            .iter()
            .map(|(priority, _)| self.stream(shard, *priority))
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
    /// `fingerprint` and `answer` for `ttl` in the shard, atomically; later
    /// calls append nothing and return what was remembered.
    pub async fn append_idempotent(
        &self,
        shard: Shard,
        entries: &[(Priority, String)],
        idempotency_key: &str,
        fingerprint: &str,
        answer: &str,
        ttl: Duration,
    ) -> Result<IdempotentAppend, RedisError> {
        let mut keys = Vec::with_capacity(entries.len() + 1);
        keys.push(self.keys.idempotency_record(shard, idempotency_key));
        keys.extend(
            entries
                .iter()
                .map(|(priority, _)| self.stream(shard, *priority)),
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

    /// Claims a producer's idempotency key for a request whose entries span
    /// several shards, before any of them is appended: the first request
    /// records its body's `fingerprint` (for `ttl`); a later one learns
    /// whether it sent the same body. A key reused with another body is
    /// thus refused before anything is appended in any shard.
    pub async fn claim_idempotency_key(
        &self,
        idempotency_key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<KeyClaim, RedisError> {
        let previous: Option<String> = self
            .client
            .set(
                self.keys.idempotency_claim(idempotency_key),
                fingerprint,
                Some(Expiration::EX(ttl.as_secs().max(1) as i64)),
                Some(SetOptions::NX),
                true,
            )
            .await
            .map_err(RedisError::on("SET NX GET"))?;
        Ok(match previous {
            None => KeyClaim::First,
            Some(previous) if previous == fingerprint => KeyClaim::SameBody,
            Some(_) => KeyClaim::OtherBody,
        })
    }

    /// Whether appends wait for replicas (`redis.min_replicas_acks`).
    pub fn waits_for_replicas(&self) -> bool {
        self.settings.min_replicas_acks > 0
    }

    /// With `redis.min_replicas_acks` set: waits (`WAIT`, at most
    /// `redis.wait_timeout_ms`) until that many replicas of the master
    /// holding `shard` confirmed every write this client sent it so far,
    /// so a failover cannot lose them; an error when fewer confirmed.
    /// Without it, returns at once.
    pub async fn confirm_replicated(&self, shard: Shard) -> Result<(), RedisError> {
        let wanted = self.settings.min_replicas_acks;
        if wanted == 0 {
            return Ok(());
        }
        // WAIT counts the writes of the connection it is sent on: on a
        // cluster, the one to the master that owns the shard's slot.
        let slot = super::hash_slot(&self.stream(shard, Priority::High));
        let options = Options {
            cluster_hash: Some(ClusterHash::Custom(slot)),
            ..Options::default()
        };
        let confirmed: i64 = self
            .client
            .with_options(&options)
            .wait(i64::from(wanted), self.settings.wait_timeout_ms as i64)
            .await
            .map_err(RedisError::on("WAIT"))?;
        if confirmed < i64::from(wanted) {
            return Err(RedisError::on("WAIT")(fred::error::Error::new(
                fred::error::ErrorKind::Timeout,
                format!(
                    "{confirmed} of {wanted} replicas confirmed the append within {} ms",
                    self.settings.wait_timeout_ms
                ),
            )));
        }
        Ok(())
    }

    /// Every lane of every shard.
    pub fn lanes(&self) -> impl Iterator<Item = Lane> + use<> {
        self.keys.shards().flat_map(|shard| {
            Priority::ALL
                .into_iter()
                .map(move |priority| Lane { shard, priority })
        })
    }

    fn stream(&self, shard: Shard, priority: Priority) -> String {
        self.keys.stream(Lane { shard, priority })
    }

    /// Creates the consumer group on every lane of every shard (and the
    /// streams). An existing group (BUSYGROUP) is success.
    pub async fn ensure_consumer_group(&self) -> Result<(), RedisError> {
        for lane in self.lanes() {
            let created = self
                .client
                .xgroup_create::<(), _, _, _>(self.keys.stream(lane), CONSUMER_GROUP, "0", true)
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.details().starts_with("BUSYGROUP") => {}
                Err(err) => return Err(RedisError::on("XGROUP CREATE")(err)),
            }
        }
        Ok(())
    }

    /// XREADGROUP from all priority lanes of the first shard (the only one
    /// unless `stream_shards` is raised). `ReadFrom::New` blocks up to
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
        self.read_lanes(consumer, Shard::FIRST, &Priority::ALL, from, count, block)
            .await
    }

    /// Like [`read_group`](Self::read_group), from some lanes of one shard.
    pub async fn read_lanes(
        &self,
        consumer: &str,
        shard: Shard,
        lanes: &[Priority],
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let (id, block) = match from {
            ReadFrom::New => (">", Some(block.as_millis() as u64)),
            ReadFrom::OwnPending => ("0", None),
        };
        let mut entries = self
            .xreadgroup(consumer, shard, lanes, id, count, block)
            .await?;
        if from == ReadFrom::OwnPending {
            self.fill_delivery_counts(consumer, &mut entries).await?;
        }
        Ok(entries)
    }

    /// XREADGROUP `>` from one lane, without blocking.
    pub async fn read_lane(
        &self,
        consumer: &str,
        lane: Lane,
        count: usize,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        self.xreadgroup(consumer, lane.shard, &[lane.priority], ">", count, None)
            .await
    }

    async fn xreadgroup(
        &self,
        consumer: &str,
        shard: Shard,
        lanes: &[Priority],
        id: &str,
        count: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let streams: Vec<String> = lanes.iter().map(|p| self.stream(shard, *p)).collect();
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
        let mut by_stream: XReadResponse<String, String, String, Value> =
            deleted_entries_emptied(reply)
                .into_xread_response()
                .map_err(RedisError::on("XREADGROUP"))?;
        Ok(lanes
            .iter()
            .flat_map(|priority| {
                let lane = Lane {
                    shard,
                    priority: *priority,
                };
                let read = by_stream
                    .remove(&self.keys.stream(lane))
                    .unwrap_or_default();
                stream_entries(lane, read)
            })
            .collect())
    }

    /// XAUTOCLAIM: takes over entries that other consumers of the group have
    /// held unacknowledged for at least `min_idle` (their consumer died or
    /// hangs), up to `count`, with their delivery counts.
    pub async fn claim_stale(
        &self,
        consumer: &str,
        lane: Lane,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let stream = self.keys.stream(lane);
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
            entries.extend(stream_entries(lane, claimed));
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
        let mut lanes: Vec<Lane> = Vec::new();
        for lane in entries.iter().map(StreamEntry::lane) {
            if !lanes.contains(&lane) {
                lanes.push(lane);
            }
        }
        for lane in lanes {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|e| e.lane() == lane)
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
                    self.keys.stream(lane),
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
            for entry in entries.iter_mut().filter(|e| e.lane() == lane) {
                if let Some(count) = counts.get(&entry.id) {
                    entry.deliveries = *count;
                }
            }
        }
        Ok(())
    }

    /// The group's state on one stream; `None` when the stream or group is missing.
    pub async fn group_info(&self, lane: impl Into<Lane>) -> Result<Option<GroupInfo>, RedisError> {
        let reply: Value = match self.client.xinfo_groups(self.keys.stream(lane)).await {
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

    /// Deletes the group's consumers on one lane that hold no pending entry
    /// and were idle at least `min_idle`; when `only` is not empty, only
    /// those named there. Atomic per lane; returns the names deleted.
    pub async fn prune_consumers(
        &self,
        lane: Lane,
        min_idle: Duration,
        only: &[String],
    ) -> Result<Vec<String>, RedisError> {
        let stream = self.keys.stream(lane);
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
    pub async fn oldest_pending_id(&self, lane: Lane) -> Result<Option<String>, RedisError> {
        Ok(self.pending_summary(lane).await?.1)
    }

    /// XPENDING's summary: how many entries are pending in the group, and
    /// the smallest pending id when there are any.
    pub(super) async fn pending_summary(
        &self,
        lane: Lane,
    ) -> Result<(u64, Option<String>), RedisError> {
        let reply: Value = self
            .client
            .xpending(self.keys.stream(lane), CONSUMER_GROUP, ())
            .await
            .map_err(RedisError::on("XPENDING"))?;
        let Value::Array(summary) = reply else {
            return Ok((0, None));
        };
        let count = summary.first().and_then(Value::as_u64).unwrap_or(0);
        let oldest = summary.get(1).and_then(Value::as_string);
        Ok((count, oldest.filter(|_| count > 0)))
    }

    /// XTRIM MINID: deletes the entries with ids below `min_id`. Callers
    /// must only pass an id below which every entry is acknowledged.
    pub async fn trim_below(&self, lane: Lane, min_id: &str) -> Result<u64, RedisError> {
        self.client
            .xtrim(self.keys.stream(lane), ("MINID", "=", min_id))
            .await
            .map_err(RedisError::on("XTRIM"))
    }

    /// XACK entries of one shard (see [`Self::publish_and_ack`]).
    pub async fn ack(&self, entries: &[StreamEntry]) -> Result<(), RedisError> {
        self.publish_and_ack(&[], entries).await
    }

    /// Copies an entry that can never be processed to its shard's
    /// dead-letter stream.
    pub async fn dead_letter(&self, entry: &StreamEntry, error: &str) -> Result<(), RedisError> {
        let fields = vec![
            ("stream", self.keys.stream(entry.lane())),
            ("entry_id", entry.id.clone()),
            ("error", error.to_owned()),
            ("deliveries", entry.deliveries.to_string()),
            (ENTRY_FIELD, entry.payload.clone().unwrap_or_default()),
        ];
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.dead_letter_stream(entry.shard),
                false,
                None::<()>,
                "*",
                fields,
            )
            .await
            .map(|_| ())
            .map_err(RedisError::on("XADD dead-letter"))
    }

    /// Length of one lane's stream (entries not yet trimmed).
    pub async fn stream_len(&self, lane: impl Into<Lane>) -> Result<u64, RedisError> {
        self.client
            .xlen(self.keys.stream(lane))
            .await
            .map_err(RedisError::on("XLEN"))
    }
}

impl StreamEntry {
    pub fn lane(&self) -> Lane {
        Lane {
            shard: self.shard,
            priority: self.priority,
        }
    }
}

/// Entries as read from one lane (delivery count 1 until known better).
fn stream_entries(
    lane: Lane,
    read: Vec<(String, HashMap<String, Value>)>,
) -> impl Iterator<Item = StreamEntry> {
    read.into_iter().map(move |(id, fields)| StreamEntry {
        shard: lane.shard,
        priority: lane.priority,
        id,
        payload: fields.get(ENTRY_FIELD).and_then(|v| v.as_string()),
        // XADD needs a field: only a deleted entry has none.
        deleted: fields.is_empty(),
        deliveries: 1,
    })
}
