//! A user's inbox: the unread count, the sequence counter and the state
//! version, and every change of read state.
//!
//! Every change locks the user's `user_inbox` row first (the same lock
//! storing a batch takes), so counts move in one order: `unread_count` always
//! equals the user's visible, unread, unarchived rows; reading twice changes
//! nothing; and `version` is bumped in the same transaction as every change
//! of unread state, so clients can keep the newest count.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{ChangeResult, Notification};
use uuid::Uuid;

use super::models::NotificationRow;
use super::schema::{notifications, user_inbox};
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

/// Which notifications a page of the inbox shows.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Only notifications with `seq` below this (the cursor of the previous page).
    pub before: Option<i64>,
    pub limit: i64,
    pub unread_only: bool,
    pub category: Option<String>,
}

/// One page of the inbox, newest first; archived ones are left out. Returns
/// the page and the cursor of the next one (`None` on the last page).
pub async fn page(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    query: &PageQuery,
) -> Result<(Vec<Notification>, Option<i64>), DbError> {
    let mut select = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .filter(notifications::archived_at.is_null())
        .order(notifications::seq.desc())
        .limit(query.limit + 1)
        .select(NotificationRow::as_select())
        .into_boxed();
    if let Some(before) = query.before {
        select = select.filter(notifications::seq.lt(before));
    }
    if query.unread_only {
        select = select
            .filter(notifications::read_at.is_null())
            .filter(notifications::muted.eq(false));
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
enum Target<'a> {
    Ids(&'a [Uuid]),
    All,
}

/// Marks the user's notifications with these ids read. Ids of other users,
/// unknown ids and ones already read are ignored (reading twice changes
/// nothing, and the version only moves when something changed).
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    ids: &[Uuid],
) -> Result<ChangeResult, DbError> {
    change(conn, user_id, Target::Ids(ids), Change::Read).await
}

/// Marks every unread notification of the user read.
pub async fn mark_all_read(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<ChangeResult, DbError> {
    change(conn, user_id, Target::All, Change::Read).await
}

/// Archives one notification; `None` if the user has no such notification.
pub async fn archive(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    id: Uuid,
) -> Result<Option<ChangeResult>, DbError> {
    let exists = owns(conn, user_id, id).await?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        change(conn, user_id, Target::Ids(&[id]), Change::Archive).await?,
    ))
}

/// Whether the user has a visible notification with this id.
pub async fn owns(conn: &mut AsyncPgConnection, user_id: &str, id: Uuid) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.is_not_null()),
    ))
    .get_result(conn)
    .await?)
}

#[derive(Clone, Copy)]
enum Change {
    Read,
    Archive,
}

async fn change(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    target: Target<'_>,
    kind: Change,
) -> Result<ChangeResult, DbError> {
    let now: DateTime<Utc> = Utc::now();
    let change = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // The lock every writer of this user's unread state takes first.
            let locked = user_inbox::table
                .filter(user_inbox::user_id.eq(user_id))
                .select((user_inbox::unread_count, user_inbox::version))
                .for_update()
                .first::<(i64, i64)>(conn)
                .await
                .optional()?;
            let Some((unread, version)) = locked else {
                return Ok(ChangeResult {
                    ids: Vec::new(),
                    unread: 0,
                    version: 0,
                });
            };
            let base = notifications::table
                .filter(notifications::user_id.eq(user_id))
                .filter(notifications::seq.is_not_null())
                .into_boxed();
            let base = match target {
                Target::Ids(ids) => base.filter(notifications::id.eq_any(ids.to_vec())),
                Target::All => base,
            };
            // Which of the targeted rows still count as unread: those lower the count.
            let (changed, were_unread): (Vec<Uuid>, i64) = match kind {
                Change::Read => {
                    let ids: Vec<Uuid> = diesel::update(notifications::table)
                        .filter(notifications::user_id.eq(user_id))
                        .filter(
                            notifications::id.eq_any(
                                base.filter(notifications::read_at.is_null())
                                    .select(notifications::id),
                            ),
                        )
                        .set(notifications::read_at.eq(now))
                        .returning(notifications::id)
                        .get_results(conn)
                        .await?;
                    // Archived and muted ones were never (or no longer) in the count.
                    let uncounted: i64 = notifications::table
                        .filter(notifications::user_id.eq(user_id))
                        .filter(notifications::id.eq_any(&ids))
                        .filter(
                            notifications::archived_at
                                .is_not_null()
                                .or(notifications::muted.eq(true)),
                        )
                        .count()
                        .get_result(conn)
                        .await?;
                    let lowered = ids.len() as i64 - uncounted;
                    (ids, lowered)
                }
                Change::Archive => {
                    let rows: Vec<(Uuid, Option<DateTime<Utc>>, bool)> =
                        diesel::update(notifications::table)
                            .filter(notifications::user_id.eq(user_id))
                            .filter(
                                notifications::id.eq_any(
                                    base.filter(notifications::archived_at.is_null())
                                        .select(notifications::id),
                                ),
                            )
                            .set(notifications::archived_at.eq(now))
                            .returning((
                                notifications::id,
                                notifications::read_at,
                                notifications::muted,
                            ))
                            .get_results(conn)
                            .await?;
                    // Read and muted ones were not in the count.
                    let lowered = rows
                        .iter()
                        .filter(|(_, read, muted)| read.is_none() && !muted)
                        .count() as i64;
                    (rows.into_iter().map(|(id, _, _)| id).collect(), lowered)
                }
            };
            if changed.is_empty() {
                return Ok(ChangeResult {
                    ids: changed,
                    unread,
                    version,
                });
            }
            let (unread, version) = diesel::update(user_inbox::table.find(user_id))
                .set((
                    user_inbox::unread_count.eq(user_inbox::unread_count - were_unread),
                    user_inbox::version.eq(user_inbox::version + 1),
                ))
                .returning((user_inbox::unread_count, user_inbox::version))
                .get_result::<(i64, i64)>(conn)
                .await?;
            Ok(ChangeResult {
                ids: changed,
                unread,
                version,
            })
        })
        .await?;
    Ok(change)
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
