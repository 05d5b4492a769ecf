//! Changes of a user's notification state, from the user (the gateway's
//! socket and inbox API) or a producer for them (ingest-api): commit in
//! PostgreSQL, then publish the new state on the user's channel so every
//! connection of the user, on every gateway instance, hears it. Retention's
//! deletions are told the same way.

use chrono::{DateTime, Utc};
use domain::{ChangeResult, Preferences, ServerFrame, StateChange};

use crate::db::{DbError, DbPool};
use crate::redis::RedisStore;
use crate::storage::inbox::{self, Applied, Change, Muting, Target, Trim};

/// Applies `change` to the user's `target` notifications and publishes
/// the frame that tells every device, chunk by chunk: a bulk change of
/// more than [`inbox::CHUNK`] rows commits (and publishes) one chunk at a
/// time, each with its own `version`. Answers every id changed and the
/// state after the last chunk. A chunk that changed nothing says nothing.
pub async fn apply(
    db: &DbPool,
    redis: &RedisStore,
    user_id: &str,
    target: Target<'_>,
    change: Change,
) -> Result<ChangeResult, DbError> {
    let mut conn = db.get().await?;
    let mut chunk = inbox::apply(&mut conn, user_id, target, change).await?;
    publish(redis, user_id, change, &chunk).await;
    let mut total = chunk.result.clone();
    while chunk.result.ids.len() as i64 == inbox::CHUNK {
        chunk = inbox::apply(&mut conn, user_id, target, change).await?;
        publish(redis, user_id, change, &chunk).await;
        let result = &chunk.result;
        total.ids.extend_from_slice(&result.ids);
        (total.unread, total.version) = (result.unread, result.version);
        total.counts.clone_from(&result.counts);
    }
    Ok(total)
}

/// Replaces the user's preferences; when that muted or unmuted a
/// category, tells every device of the user the new counts (a `muted`
/// frame).
pub async fn set_preferences(
    db: &DbPool,
    redis: &RedisStore,
    user_id: &str,
    preferences: &Preferences,
) -> Result<(), DbError> {
    let mut conn = db.get().await?;
    let Some(Muting {
        muted,
        unmuted,
        result,
    }) = inbox::set_preferences(&mut conn, user_id, preferences).await?
    else {
        return Ok(());
    };
    let frame = ServerFrame::Muted {
        muted,
        unmuted,
        unread: result.unread,
        version: result.version,
        counts: result.counts,
    };
    tell(redis, user_id, &frame).await;
    Ok(())
}

/// Deletes the next chunk of the user's notifications stored before
/// `cutoff` (retention) and, once that committed, publishes its `trimmed`
/// frame. Call again while [`inbox::Trimmed::more`].
pub async fn trim(
    db: &DbPool,
    redis: &RedisStore,
    user_id: &str,
    cutoff: DateTime<Utc>,
) -> Result<inbox::Trimmed, DbError> {
    let trimmed = inbox::trim(&mut *db.get().await?, user_id, cutoff).await?;
    if let Some(Trim { up_to_seq, state }) = &trimmed.trim {
        let frame = ServerFrame::Trimmed {
            up_to_seq: *up_to_seq,
            unread: state.counts.unread,
            version: state.version,
            counts: state.counts.clone(),
        };
        tell(redis, user_id, &frame).await;
    }
    Ok(trimmed)
}

/// Tells every device of the user about a committed change (none when it
/// changed nothing).
async fn publish(redis: &RedisStore, user_id: &str, change: Change, applied: &Applied) {
    if applied.result.ids.is_empty() {
        return;
    }
    tell(redis, user_id, &frame_of(change, applied)).await;
}

/// Publishes a committed change's frame on the user's channel. If that
/// fails, other devices see the new state at their next hello (it carries
/// `version`).
async fn tell(redis: &RedisStore, user_id: &str, frame: &ServerFrame) {
    if let Err(err) = redis.publish_to_users(&[(user_id, frame.to_json())]).await {
        tracing::warn!(%err, "notification state changed but could not be published");
    }
}

/// The frame every device of the user gets for a change.
fn frame_of(change: Change, applied: &Applied) -> ServerFrame {
    let result = &applied.result;
    let state = StateChange {
        ids: result.ids.clone(),
        unread: result.unread,
        version: result.version,
        counts: result.counts.clone(),
    };
    match change {
        Change::Read => ServerFrame::Read(state),
        Change::Unread => ServerFrame::Unread(state),
        Change::Archive => ServerFrame::Archived(state),
        Change::Unarchive => ServerFrame::Unarchived(state),
        Change::Snooze(until) => ServerFrame::Snoozed {
            ids: state.ids,
            until,
            unread: state.unread,
            version: state.version,
            counts: state.counts,
        },
        Change::Unsnooze | Change::Wake => ServerFrame::Unsnoozed(state),
        Change::Expire => ServerFrame::Expired(state),
        // Seen goes by sequence number: no ids (a feed of thousands).
        Change::Seen => ServerFrame::Seen {
            up_to_seq: applied.up_to_seq,
            unread: state.unread,
            version: state.version,
            counts: state.counts,
        },
    }
}
