//! A user's inbox: the counts, the sequence counter and the state version,
//! and every change of a notification's state (read, unread, seen,
//! archived, unarchived, snoozed, back, expired; [`changes`]) and of which
//! categories count ([`mutes`]); and retention, which deletes the oldest
//! ([`retention`]).
//!
//! Every change locks the user's `user_inbox` row first (the same lock
//! storing a batch takes), so counts move in one order: they always equal
//! the user's rows (see [`super::counts`]); reading twice changes nothing;
//! and `version` is bumped in the same transaction as every change of the
//! counts, so clients can keep the newest. This file holds the reads.

mod changes;
mod mutes;
mod retention;
mod statements;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Counts, ItemState, Notification};
use uuid::Uuid;

pub use changes::{Applied, CHUNK, Change, Due, apply, due};
pub use mutes::{Muting, set_preferences};
pub use retention::{Sweep, Trim, Trimmed, sweep, trim};

use super::counts;
use super::models::NotificationRow;
use super::schema::{notifications, user_inbox};
use crate::db::DbError;

/// A user's sequence counter, counts and state version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxState {
    pub last_seq: i64,
    pub counts: Counts,
    pub version: i64,
    /// Every notification with `seq` up to it was deleted by retention.
    pub trimmed_through: i64,
    /// Which inbox of the user this is (a new one after an erasure); 0:
    /// none yet, or created before epochs were kept.
    pub epoch: i64,
}

/// The user's state; a user with no notifications yet has all zeros.
pub async fn state(conn: &mut AsyncPgConnection, user_id: &str) -> Result<InboxState, DbError> {
    let row = user_inbox::table
        .filter(user_inbox::user_id.eq(user_id))
        .select((
            user_inbox::last_seq,
            (
                user_inbox::unread_count,
                user_inbox::unseen_count,
                user_inbox::by_category,
            ),
            user_inbox::version,
            user_inbox::trimmed_through,
            user_inbox::epoch,
        ))
        .first::<(i64, counts::Columns, i64, i64, i64)>(conn)
        .await
        .optional()?;
    let Some((last_seq, columns, version, trimmed_through, epoch)) = row else {
        return Ok(InboxState::default());
    };
    Ok(InboxState {
        last_seq,
        counts: counts::from_columns(columns)?,
        version,
        trimmed_through,
        epoch,
    })
}

/// The user's notifications with `seq > since`, oldest first, at most `limit`:
/// what a resuming client missed (read and archived ones included, so the
/// sequence it sees has no gap).
pub async fn after(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<Notification>, DbError> {
    Ok(notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.gt(since))
        .order(notifications::seq.asc())
        .limit(limit)
        .select(NotificationRow::as_select())
        .load::<NotificationRow>(conn)
        .await?
        .into_iter()
        .filter_map(NotificationRow::into_visible)
        .collect())
}

/// Most changed notifications a resuming connection is told about one by
/// one; past this it is told to list them again (`resync`).
pub const MAX_STATE_ITEMS: i64 = 5_000;

/// The user's notifications up to `seq` (the ones a resuming device holds)
/// changed since `version`, as they are now, oldest change first; `None`
/// when more than [`MAX_STATE_ITEMS`] changed (the device had better list
/// them again).
pub async fn changed_since(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    version: i64,
    seq: i64,
) -> Result<Option<Vec<ItemState>>, DbError> {
    type Row = (
        Uuid,
        Option<i64>,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        bool,
    );
    let rows: Vec<Row> = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::state_version.gt(version.max(0)))
        .filter(statements::StateEverChanged)
        .filter(notifications::seq.le(seq))
        .order((notifications::state_version.asc(), notifications::seq.asc()))
        .limit(MAX_STATE_ITEMS + 1)
        .select((
            notifications::id,
            notifications::seq,
            notifications::state_version,
            notifications::read_at,
            notifications::seen_at,
            notifications::archived_at,
            notifications::snoozed_until,
            notifications::expired,
        ))
        .load(conn)
        .await?;
    if rows.len() as i64 > MAX_STATE_ITEMS {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .map(
                |(id, seq, version, read_at, seen_at, archived_at, snoozed_until, expired)| {
                    ItemState {
                        id,
                        seq: seq.unwrap_or_default(),
                        version,
                        read_at,
                        seen_at: seen_at.or(read_at),
                        archived_at,
                        snoozed_until,
                        expired,
                    }
                },
            )
            .collect(),
    ))
}

/// Which notifications a page of the inbox shows.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Only notifications with `seq` below this (the cursor of the previous page).
    pub before: Option<i64>,
    pub limit: i64,
    pub unread_only: bool,
    pub category: Option<String>,
    pub status: Status,
}

/// Which notifications a page lists by their archived and snoozed state
/// (expired ones are never listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// Neither archived nor snoozed: the inbox.
    #[default]
    Active,
    /// Archived ones only.
    Archived,
    /// Snoozed ones only.
    Snoozed,
    /// Every one.
    All,
}

/// One page of the inbox, newest first, of the notifications `query.status`
/// selects. Returns the page and the cursor of the next one (`None` on the
/// last page).
pub async fn page(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    query: &PageQuery,
) -> Result<(Vec<Notification>, Option<i64>), DbError> {
    let mut select = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .filter(notifications::expired.eq(false))
        .order(notifications::seq.desc())
        .limit(query.limit + 1)
        .select(NotificationRow::as_select())
        .into_boxed();
    select = match query.status {
        Status::Active => select
            .filter(notifications::archived_at.is_null())
            .filter(notifications::snoozed_until.is_null()),
        Status::Archived => select.filter(notifications::archived_at.is_not_null()),
        Status::Snoozed => select.filter(notifications::snoozed_until.is_not_null()),
        Status::All => select,
    };
    if let Some(before) = query.before {
        select = select.filter(notifications::seq.lt(before));
    }
    if query.unread_only {
        // What the unread count counts: not in a category muted now.
        select = select
            .filter(notifications::read_at.is_null())
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "NOT EXISTS (SELECT 1 FROM user_preferences p \
                 WHERE p.user_id = notifications.user_id \
                 AND notifications.category = ANY(p.muted_categories))",
            ));
    }
    if let Some(category) = &query.category {
        select = select.filter(notifications::category.eq(category));
    }
    let mut items: Vec<Notification> = select
        .load::<NotificationRow>(conn)
        .await?
        .into_iter()
        .filter_map(NotificationRow::into_visible)
        .collect();
    let next = if items.len() as i64 > query.limit {
        items.truncate(query.limit as usize);
        items.last().map(|n| n.seq)
    } else {
        None
    };
    Ok((items, next))
}

/// Which notifications a change applies to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// These ids of the user's (others' and unknown ones are ignored).
    Ids(&'a [Uuid]),
    /// Every notification of the user that the filter lets through.
    All(Filter<'a>),
}

/// Narrows a change of every notification (read-all, archive-all); the
/// default lets every one through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter<'a> {
    /// Only this category.
    pub category: Option<&'a str>,
    /// Only notifications with `seq` below this (say, the newest one a
    /// screen showed plus one, so that ones arriving meanwhile are left
    /// alone).
    pub before_seq: Option<i64>,
    /// Only read ones ("archive everything read").
    pub read_only: bool,
}

/// Whether the user's notification with this id is listed (stored with a
/// `seq` and not expired since, and not another user's).
pub async fn owns(conn: &mut AsyncPgConnection, user_id: &str, id: Uuid) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.is_not_null())
            .filter(notifications::expired.eq(false)),
    ))
    .get_result(conn)
    .await?)
}

/// Template key, version and params of a stored notification.
pub type TemplateRefRow = (String, i32, serde_json::Value);

/// What the user's templated notifications were rendered from, by id.
pub async fn template_refs(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, TemplateRefRow>, DbError> {
    type Row = (Uuid, Option<String>, Option<i32>, Option<serde_json::Value>);
    let rows: Vec<Row> = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::id.eq_any(ids))
        .filter(notifications::template_key.is_not_null())
        .select((
            notifications::id,
            notifications::template_key,
            notifications::template_version,
            notifications::params,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, key, version, params)| {
            Some((id, (key?, version?, params.unwrap_or_default())))
        })
        .collect())
}
