//! Entries looked at by the notification they hold: one found by its id
//! (a producer asking where it is), a user's deleted from their shard's
//! lanes and dead-letter stream (erasure) and whether the ones a worker
//! had read before that are processed yet.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::keys::{CONSUMER_GROUP, ENTRY_FIELD};
use domain::notification::{id_of_entry, user_of_entry};
use domain::{Lane, Priority};
use fred::prelude::*;
use uuid::Uuid;

use super::replies::cmp_ids;
use super::{RedisError, RedisStore};

/// Entries read per XRANGE while looking for a user's.
const PAGE: u64 = 1_000;

/// What [`RedisStore::drop_user_entries`] deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DroppedEntries {
    /// Entries deleted, from the lanes and the dead-letter stream.
    pub count: u64,
    /// The highest id deleted from a lane: a worker may have read any of
    /// them before, and stores it unless it is acknowledged first.
    pub highest: Option<String>,
}

/// A notification found in a stream by [`RedisStore::find_queued`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEntry {
    pub lane: Lane,
    pub entry_id: String,
    pub user_id: String,
    /// A worker read it and has not acknowledged it yet (it is being
    /// stored, or waits for a retry).
    pub delivered: bool,
}

/// How far around the time in a notification's id its entry is looked for:
/// ingest-api appends it within its request, so milliseconds after the id
/// was made (the margin covers clocks apart).
const ID_TIME_MARGIN_MS: i64 = 5_000;

impl RedisStore {
    /// The stream entry of the notification `id` not yet acknowledged:
    /// queued, or read by a worker and not done yet. Looks only at
    /// entries appended within [`ID_TIME_MARGIN_MS`] of the time in the id
    /// (ingest-api makes ids as UUIDv7), in every lane of every shard.
    pub async fn find_queued(
        &self,
        id: Uuid,
        made_at: DateTime<Utc>,
    ) -> Result<Option<QueuedEntry>, RedisError> {
        let ms = made_at.timestamp_millis();
        let (from, to) = (
            (ms - ID_TIME_MARGIN_MS).max(0).to_string(),
            (ms + ID_TIME_MARGIN_MS).to_string(),
        );
        let needle = id.to_string();
        for lane in self.lanes() {
            let stream = self.keys.stream(lane);
            let found = self
                .entries_where(&stream, &from, &to, |payload| {
                    payload.contains(&needle) && id_of_entry(payload) == Some(id)
                })
                .await?;
            let Some((entry_id, payload)) = found.into_iter().next() else {
                continue;
            };
            let Some(delivered) = self.group_state_of(lane, &entry_id).await? else {
                // Acknowledged: no longer queued (stored, or dead-lettered).
                continue;
            };
            return Ok(Some(QueuedEntry {
                lane,
                entry_id,
                user_id: user_of_entry(&payload).unwrap_or_default(),
                delivered,
            }));
        }
        Ok(None)
    }

    /// Where an entry stands in the group: `None` acknowledged, `Some(true)`
    /// delivered to a worker and pending, `Some(false)` not delivered yet.
    async fn group_state_of(&self, lane: Lane, entry_id: &str) -> Result<Option<bool>, RedisError> {
        let pending: Value = match self
            .client
            .xpending(
                self.keys.stream(lane),
                CONSUMER_GROUP,
                (entry_id, entry_id, 1),
            )
            .await
        {
            Ok(reply) => reply,
            Err(err) if err.details().starts_with("NOGROUP") => return Ok(Some(false)),
            Err(err) => return Err(RedisError::on("XPENDING")(err)),
        };
        if matches!(&pending, Value::Array(rows) if !rows.is_empty()) {
            return Ok(Some(true));
        }
        Ok(match self.group_info(lane).await? {
            Some(group) if cmp_ids(entry_id, &group.last_delivered_id).is_le() => None,
            _ => Some(false),
        })
    }

    /// Deletes every entry of the user from the user's shard: from its
    /// lanes (queued ones, ones being processed, processed ones not
    /// trimmed yet) and from its dead-letter stream.
    ///
    /// A queued entry deleted here is never delivered to a worker; one a
    /// worker already read stays in the group's pending list until that
    /// worker is done with it (see [`Self::processed_through`]).
    pub async fn drop_user_entries(&self, user_id: &str) -> Result<DroppedEntries, RedisError> {
        let shard = self.keys.shard_of(user_id);
        let mut dropped = DroppedEntries::default();
        for priority in Priority::ALL {
            let lane = Lane { shard, priority };
            let ids = self
                .delete_entries_of(&self.keys.stream(lane), user_id)
                .await?;
            dropped.count += ids.len() as u64;
            if let Some(last) = ids.into_iter().max_by(|a, b| cmp_ids(a, b)) {
                dropped.highest = Some(match dropped.highest.take() {
                    Some(other) if cmp_ids(&other, &last).is_gt() => other,
                    _ => last,
                });
            }
        }
        let letters = self
            .delete_entries_of(&self.keys.dead_letter_stream(shard), user_id)
            .await?;
        dropped.count += letters.len() as u64;
        Ok(dropped)
    }

    /// Whether no entry with an id up to `through` is still pending in any
    /// lane of the user's shard: every entry of the user a worker read
    /// before [`Self::drop_user_entries`] deleted it is processed (stored,
    /// dead-lettered, or dropped) and acknowledged.
    pub async fn processed_through(
        &self,
        user_id: &str,
        through: &str,
    ) -> Result<bool, RedisError> {
        let shard = self.keys.shard_of(user_id);
        for priority in Priority::ALL {
            let lane = Lane { shard, priority };
            let oldest = match self.pending_summary(lane).await {
                Ok((_, oldest)) => oldest,
                Err(err) if err.is_missing_group() => None,
                Err(err) => return Err(err),
            };
            if oldest.is_some_and(|oldest| cmp_ids(&oldest, through).is_le()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes the entries of `stream` whose notification is the user's;
    /// answers their ids.
    async fn delete_entries_of(
        &self,
        stream: &str,
        user_id: &str,
    ) -> Result<Vec<String>, RedisError> {
        let found: Vec<String> = self
            .entries_where(stream, "-", "+", |payload| {
                payload.contains(user_id) && user_of_entry(payload).as_deref() == Some(user_id)
            })
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for ids in found.chunks(PAGE as usize) {
            self.client
                .xdel::<u64, _, _>(stream, ids.to_vec())
                .await
                .map_err(RedisError::on("XDEL"))?;
        }
        Ok(found)
    }

    /// The entries of `stream` between `from` and `to` (XRANGE bounds)
    /// whose notification field `holds`, read a page at a time: their ids
    /// and that field.
    async fn entries_where(
        &self,
        stream: &str,
        from: &str,
        to: &str,
        holds: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>, RedisError> {
        let mut start = from.to_owned();
        let mut found = Vec::new();
        loop {
            let reply: Value = self
                .client
                .xrange(stream, start.as_str(), to, Some(PAGE))
                .await
                .map_err(RedisError::on("XRANGE"))?;
            let page: Vec<(String, HashMap<String, Value>)> = if reply.is_null() {
                Vec::new()
            } else {
                reply.into_xread_value().map_err(RedisError::on("XRANGE"))?
            };
            let full = page.len() as u64 == PAGE;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = format!("({last}");
            found.extend(page.into_iter().filter_map(|(id, fields)| {
                let payload = fields.get(ENTRY_FIELD)?.as_string()?;
                holds(&payload).then_some((id, payload))
            }));
            if !full {
                break;
            }
        }
        Ok(found)
    }
}
