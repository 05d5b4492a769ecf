//! A user's inbox state: the unread count and the last sequence number.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::user_inbox;
use crate::db::DbError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Queryable)]
pub struct InboxState {
    pub last_seq: i64,
    pub unread: i64,
    pub version: i64,
}

/// The user's state; a user with no notifications yet has all zeros.
pub async fn state(conn: &mut AsyncPgConnection, user_id: &str) -> Result<InboxState, DbError> {
    Ok(user_inbox::table
        .filter(user_inbox::user_id.eq(user_id))
        .select((
            user_inbox::last_seq,
            user_inbox::unread_count,
            user_inbox::version,
        ))
        .first::<InboxState>(conn)
        .await
        .optional()?
        .unwrap_or_default())
}
