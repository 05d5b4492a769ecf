//! Changes of a user's read state, from the socket or the REST API: commit
//! in PostgreSQL, then publish the new state on the user's channel so every
//! connection of the user, on every gateway instance, hears it.

use domain::ChangeResult;
use domain::ServerFrame;
use platform::db::{DbError, DbPool};
use platform::redis::RedisStore;
use platform::storage::inbox;
use uuid::Uuid;

pub enum Action<'a> {
    Read(&'a [Uuid]),
    ReadAll,
    /// `None` from [`apply`] when the user has no such notification.
    Archive(Uuid),
}

/// Applies the action; `Ok(None)` only for archiving an id that is not the user's.
pub async fn apply(
    db: &DbPool,
    redis: &RedisStore,
    user_id: &str,
    action: Action<'_>,
) -> Result<Option<ChangeResult>, DbError> {
    let mut conn = db.get().await?;
    let (change, archived) = match action {
        Action::Read(ids) => (
            Some(inbox::mark_read(&mut conn, user_id, ids).await?),
            false,
        ),
        Action::ReadAll => (Some(inbox::mark_all_read(&mut conn, user_id).await?), false),
        Action::Archive(id) => (inbox::archive(&mut conn, user_id, id).await?, true),
    };
    if let Some(change) = &change
        && !change.ids.is_empty()
    {
        let frame = if archived {
            ServerFrame::Archived {
                ids: change.ids.clone(),
                unread: change.unread,
                version: change.version,
            }
        } else {
            ServerFrame::Read {
                ids: change.ids.clone(),
                unread: change.unread,
                version: change.version,
            }
        };
        // Committed already: if the publish fails, other devices see the
        // new state at their next hello (it carries `version`).
        if let Err(err) = redis.publish_to_users(&[(user_id, frame.to_json())]).await {
            tracing::warn!(%err, "read state changed but could not be published");
        }
    }
    Ok(change)
}
