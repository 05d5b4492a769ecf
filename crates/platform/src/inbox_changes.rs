//! Changes of a user's notification state, from the user (the gateway's
//! socket and inbox API) or a producer for them (ingest-api): commit in
//! PostgreSQL, then publish the new state on the user's channel so every
//! connection of the user, on every gateway instance, hears it.

use domain::ChangeResult;
use domain::ServerFrame;

use crate::db::{DbError, DbPool};
use crate::redis::RedisStore;
use crate::storage::inbox::{self, Change, Target};

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
    let mut total = inbox::apply(&mut conn, user_id, target, change).await?;
    publish(redis, user_id, change, &total).await;
    let mut whole = total.ids.len() as i64 == inbox::CHUNK;
    while whole {
        let chunk = inbox::apply(&mut conn, user_id, target, change).await?;
        publish(redis, user_id, change, &chunk).await;
        whole = chunk.ids.len() as i64 == inbox::CHUNK;
        total.ids.extend(chunk.ids);
        (total.unread, total.version) = (chunk.unread, chunk.version);
    }
    Ok(total)
}

/// Tells every device of the user about a committed change (none when it
/// changed nothing). If the publish fails, other devices see the new state
/// at their next hello (it carries `version`).
async fn publish(redis: &RedisStore, user_id: &str, change: Change, outcome: &ChangeResult) {
    if outcome.ids.is_empty() {
        return;
    }
    let frame = frame_of(change, outcome);
    if let Err(err) = redis.publish_to_users(&[(user_id, frame.to_json())]).await {
        tracing::warn!(%err, "notification state changed but could not be published");
    }
}

/// The frame every device of the user gets for a change.
fn frame_of(change: Change, outcome: &ChangeResult) -> ServerFrame {
    let (ids, unread, version) = (outcome.ids.clone(), outcome.unread, outcome.version);
    match change {
        Change::Read => ServerFrame::Read {
            ids,
            unread,
            version,
        },
        Change::Unread => ServerFrame::Unread {
            ids,
            unread,
            version,
        },
        Change::Archive => ServerFrame::Archived {
            ids,
            unread,
            version,
        },
        Change::Unarchive => ServerFrame::Unarchived {
            ids,
            unread,
            version,
        },
    }
}
