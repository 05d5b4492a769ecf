//! Changes of a user's notification state, from the user (the gateway's
//! socket and inbox API) or a producer for them (ingest-api): commit in
//! PostgreSQL, then publish the new state on the user's channel so every
//! connection of the user, on every gateway instance, hears it.

use domain::ChangeResult;
use domain::ServerFrame;

use crate::db::{DbError, DbPool};
use crate::redis::RedisStore;
use crate::storage::inbox::{self, Change, Target};

/// Applies `change` to the user's `target` notifications and, when any
/// changed, publishes the frame that tells every device.
pub async fn apply(
    db: &DbPool,
    redis: &RedisStore,
    user_id: &str,
    target: Target<'_>,
    change: Change,
) -> Result<ChangeResult, DbError> {
    let mut conn = db.get().await?;
    let outcome = inbox::apply(&mut conn, user_id, target, change).await?;
    if !outcome.ids.is_empty() {
        let frame = frame_of(change, &outcome);
        // Committed already: if the publish fails, other devices see the
        // new state at their next hello (it carries `version`).
        if let Err(err) = redis.publish_to_users(&[(user_id, frame.to_json())]).await {
            tracing::warn!(%err, "notification state changed but could not be published");
        }
    }
    Ok(outcome)
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
