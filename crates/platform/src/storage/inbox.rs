//! A user's inbox: the unread count, the sequence counter and the state
//! version, and every change of a notification's state (read, unread,
//! archived, unarchived).
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
    pub status: Status,
}

/// Which notifications a page lists by their archived state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// Not archived: the inbox.
    #[default]
    Active,
    /// Archived ones only.
    Archived,
    /// Both.
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
        .order(notifications::seq.desc())
        .limit(query.limit + 1)
        .select(NotificationRow::as_select())
        .into_boxed();
    select = match query.status {
        Status::Active => select.filter(notifications::archived_at.is_null()),
        Status::Archived => select.filter(notifications::archived_at.is_not_null()),
        Status::All => select,
    };
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

/// A change of state the user (or a producer for them) asks for. Each one
/// only touches rows not in the wanted state already, so applying it twice
/// changes nothing, and the version only moves when something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Read,
    /// Read ones become unread again (and count again unless archived or
    /// muted).
    Unread,
    /// Archived ones leave the default list and the unread count.
    Archive,
    /// Archived ones come back to the list (and count again if unread and
    /// not muted).
    Unarchive,
}

/// Whether the user's notification with this id is listed (stored with a
/// `seq`, so neither expired on arrival nor another user's).
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

/// A changed row as the change left it: id, read, archived, muted.
type ChangedRow = (Uuid, Option<DateTime<Utc>>, Option<DateTime<Utc>>, bool);

/// Whether a row in this state counts as unread.
fn counted(read: bool, archived: bool, muted: bool) -> bool {
    !read && !archived && !muted
}

impl Change {
    /// Whether the change sets or clears `read_at` (else `archived_at`).
    fn on_read(self) -> bool {
        matches!(self, Change::Read | Change::Unread)
    }

    /// Whether it sets its column (to now), rather than clearing it.
    fn sets(self) -> bool {
        matches!(self, Change::Read | Change::Archive)
    }

    /// How much a row this change moved, left as `row`, moved the unread
    /// count: the row counted after the change, less what it counted before
    /// (the one column the change flipped back).
    fn unread_delta(self, row: &ChangedRow) -> i64 {
        let (_, read_at, archived_at, muted) = *row;
        let (read, archived) = (read_at.is_some(), archived_at.is_some());
        let before = if self.on_read() {
            counted(!read, archived, muted)
        } else {
            counted(read, !archived, muted)
        };
        i64::from(counted(read, archived, muted)) - i64::from(before)
    }
}

/// Applies `change` to the user's `target` notifications in one
/// transaction, under the user's row lock (the one every writer of the
/// user's counts takes first), and moves `unread_count` and `version` with
/// it. Answers the ids changed (none: nothing moved) and the state after.
///
/// At most [`CHUNK`] rows change (the oldest first): call again while a
/// whole chunk changed (see [`crate::inbox_changes::apply`]), so that no
/// transaction holds the user's lock, which the storing worker waits for,
/// for longer than one chunk takes.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    target: Target<'_>,
    change: Change,
) -> Result<ChangeResult, DbError> {
    let now: DateTime<Utc> = Utc::now();
    let outcome = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
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
            let rows = changed_rows(conn, user_id, target, change, now).await?;
            if rows.is_empty() {
                return Ok(ChangeResult {
                    ids: Vec::new(),
                    unread,
                    version,
                });
            }
            let delta: i64 = rows.iter().map(|row| change.unread_delta(row)).sum();
            let (unread, version) = diesel::update(user_inbox::table.find(user_id))
                .set((
                    user_inbox::unread_count.eq(user_inbox::unread_count + delta),
                    user_inbox::version.eq(user_inbox::version + 1),
                ))
                .returning((user_inbox::unread_count, user_inbox::version))
                .get_result::<(i64, i64)>(conn)
                .await?;
            Ok(ChangeResult {
                ids: rows.into_iter().map(|(id, ..)| id).collect(),
                unread,
                version,
            })
        })
        .await?;
    Ok(outcome)
}

/// Most rows one transaction of [`apply`] changes: 70-95 ms of the user's
/// lock at the 14-19 µs per row a read-all of 75,000 rows took in one
/// transaction (1.0-1.4 s).
pub const CHUNK: i64 = 5_000;

/// The one `UPDATE` of `change`: the user's listed `target` rows not in the
/// wanted state yet, as it leaves them.
async fn changed_rows(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    target: Target<'_>,
    change: Change,
    now: DateTime<Utc>,
) -> Result<Vec<ChangedRow>, diesel::result::Error> {
    let mut candidates = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .select(notifications::id)
        .into_boxed();
    match target {
        Target::Ids(ids) => {
            candidates = candidates.filter(notifications::id.eq_any(ids.to_vec()));
        }
        Target::All(filter) => {
            if let Some(category) = filter.category {
                candidates = candidates.filter(notifications::category.eq(category));
            }
            if let Some(before) = filter.before_seq {
                candidates = candidates.filter(notifications::seq.lt(before));
            }
            if filter.read_only {
                candidates = candidates.filter(notifications::read_at.is_not_null());
            }
        }
    }
    // Only rows not in the wanted state yet.
    candidates = match (change.on_read(), change.sets()) {
        (true, true) => candidates.filter(notifications::read_at.is_null()),
        (true, false) => candidates.filter(notifications::read_at.is_not_null()),
        (false, true) => candidates.filter(notifications::archived_at.is_null()),
        (false, false) => candidates.filter(notifications::archived_at.is_not_null()),
    };
    let candidates = candidates.order(notifications::seq.asc()).limit(CHUNK);
    let rows = diesel::update(
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::id.eq_any(candidates)),
    );
    let returning = (
        notifications::id,
        notifications::read_at,
        notifications::archived_at,
        notifications::muted,
    );
    let at = change.sets().then_some(now);
    if change.on_read() {
        let rows = rows.set(notifications::read_at.eq(at));
        rows.returning(returning).get_results(conn).await
    } else {
        let rows = rows.set(notifications::archived_at.eq(at));
        rows.returning(returning).get_results(conn).await
    }
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
