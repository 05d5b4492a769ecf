//! Where a notification is, for its producer (`GET /v1/notifications/{id}`):
//! its stored row's place and state, read by id.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::DbError;
use crate::storage::schema::notifications;

/// A stored notification's place and the user's state of it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = notifications)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct StoredState {
    pub user_id: String,
    /// `None` when it was stored already expired.
    pub seq: Option<i64>,
    pub category: Option<String>,
    pub priority: String,
    pub created_at: DateTime<Utc>,
    pub stored_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expired: bool,
    /// Stored while its category was muted: kept, never pushed.
    pub muted: bool,
    pub seen_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// Every stored row with this id: none, or one (ingest makes every id; the
/// primary key, `(id, user_id)`, would allow one per user).
pub async fn stored_states(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<StoredState>, DbError> {
    Ok(notifications::table
        .filter(notifications::id.eq(id))
        .select(StoredState::as_select())
        .load(conn)
        .await?)
}
