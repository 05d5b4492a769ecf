//! A user's inbox: the counts, the sequence counter and the state version,
//! and every change of a notification's state (read, unread, seen,
//! archived, unarchived).
//!
//! Every change locks the user's `user_inbox` row first (the same lock
//! storing a batch takes), so counts move in one order: they always equal
//! the user's rows (see [`super::counts`]); reading twice changes nothing;
//! and `version` is bumped in the same transaction as every change of the
//! counts, so clients can keep the newest.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{ChangeResult, Counts, ItemState, Notification, Preferences};
use uuid::Uuid;

use super::counts::{self, RowState};
use super::models::NotificationRow;
use super::schema::{notifications, user_inbox, user_preferences};
use crate::db::DbError;

/// A user's sequence counter, counts and state version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxState {
    pub last_seq: i64,
    pub counts: Counts,
    pub version: i64,
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
        ))
        .first::<(i64, counts::Columns, i64)>(conn)
        .await
        .optional()?;
    let Some((last_seq, columns, version)) = row else {
        return Ok(InboxState::default());
    };
    Ok(InboxState {
        last_seq,
        counts: counts::from_columns(columns)?,
        version,
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

/// A change of state the user (or a producer for them) asks for. Each one
/// only touches rows not in the wanted state already, so applying it twice
/// changes nothing, and the version only moves when something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Read ones are seen too.
    Read,
    /// Read ones become unread again (and count again unless archived or
    /// muted); they stay seen.
    Unread,
    /// Unseen ones become seen (the feed was opened): they leave the
    /// unseen count and stay unread.
    Seen,
    /// Archived ones leave the default list and the counts.
    Archive,
    /// Archived ones come back to the list (and count again if unread and
    /// not muted).
    Unarchive,
    /// Ones not snoozed leave the list and the counts until then (snoozed
    /// ones are snoozed until then instead: see [`apply`]).
    Snooze(DateTime<Utc>),
    /// Snoozed ones come back now.
    Unsnooze,
    /// Snoozed ones whose time has come come back.
    Wake,
    /// Ones whose `expires_at` has passed leave the list and the counts
    /// for good.
    Expire,
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

/// A changed row as the change left it.
#[derive(Debug, Queryable)]
struct ChangedRow {
    id: Uuid,
    seq: Option<i64>,
    category: Option<String>,
    read_at: Option<DateTime<Utc>>,
    seen_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    snoozed_until: Option<DateTime<Utc>>,
    expired: bool,
}

impl ChangedRow {
    /// Its state, with the user's categories `muted` now.
    fn state(&self, muted: &[String]) -> RowState {
        let read = self.read_at.is_some();
        RowState {
            read,
            seen: read || self.seen_at.is_some(),
            archived: self.archived_at.is_some(),
            muted: self.category.as_ref().is_some_and(|c| muted.contains(c)),
            snoozed: self.snoozed_until.is_some(),
            expired: self.expired,
        }
    }
}

impl Change {
    /// The state a row this change left as `after` (`row`) was in before:
    /// each change flips one thing, and only of rows not in the wanted
    /// state yet.
    fn before(self, row: &ChangedRow, after: RowState) -> RowState {
        match self {
            // Reading does not touch `seen_at`.
            Change::Read => RowState {
                read: false,
                seen: row.seen_at.is_some(),
                ..after
            },
            // Only read ones (so seen ones) become unread.
            Change::Unread => RowState {
                read: true,
                seen: true,
                ..after
            },
            // Only unread, unseen ones become seen.
            Change::Seen => RowState {
                read: false,
                seen: false,
                ..after
            },
            Change::Archive => RowState {
                archived: false,
                ..after
            },
            Change::Unarchive => RowState {
                archived: true,
                ..after
            },
            // Only ones not snoozed.
            Change::Snooze(_) => RowState {
                snoozed: false,
                ..after
            },
            Change::Unsnooze | Change::Wake => RowState {
                snoozed: true,
                ..after
            },
            Change::Expire => RowState {
                expired: false,
                ..after
            },
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The ids changed (none: nothing moved) and the state after.
    pub result: ChangeResult,
    /// The highest `seq` changed (0 when none): every listed notification
    /// up to it is in the wanted state once this chunk committed (a chunk
    /// takes the oldest first).
    pub up_to_seq: i64,
}

/// Applies `change` to the user's `target` notifications in one
/// transaction, under the user's row lock (the one every writer of the
/// user's counts takes first), and moves the counts and `version` with it.
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
) -> Result<Applied, DbError> {
    let now: DateTime<Utc> = Utc::now();
    conn.transaction::<_, DbError, _>(async |conn| {
        let Some((mut counts, version)) = lock_counts(conn, user_id).await? else {
            return Ok(unchanged(Counts::default(), 0));
        };
        // Every row changed remembers the version this change makes.
        let next = version + 1;
        let rows = changed_rows(conn, user_id, target, change, now, next).await?;
        // Snoozed ones snoozed again only move their time: no count.
        let resnoozed = match change {
            Change::Snooze(until) => resnooze(conn, user_id, target, until, next).await?,
            _ => Vec::new(),
        };
        if rows.is_empty() && resnoozed.is_empty() {
            return Ok(unchanged(counts, version));
        }
        let muted = muted_categories(conn, user_id).await?;
        for row in &rows {
            let after = row.state(&muted);
            let before = change.before(row, after);
            after.moved_from(before, row.category.as_deref(), &mut counts);
        }
        let version = write_counts(conn, user_id, &counts).await?;
        Ok(Applied {
            up_to_seq: rows.iter().filter_map(|row| row.seq).max().unwrap_or(0),
            result: ChangeResult {
                ids: rows
                    .into_iter()
                    .map(|row| row.id)
                    .chain(resnoozed)
                    .collect(),
                unread: counts.unread,
                version,
                counts,
            },
        })
    })
    .await
}

/// Writes the user's counts (locked by the caller's transaction) and bumps
/// `version`; answers the new version.
async fn write_counts(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    counts: &Counts,
) -> Result<i64, diesel::result::Error> {
    diesel::update(user_inbox::table.find(user_id))
        .set((
            user_inbox::unread_count.eq(counts.unread),
            user_inbox::unseen_count.eq(counts.unseen),
            user_inbox::by_category.eq(counts::by_category_column(counts)),
            user_inbox::version.eq(user_inbox::version + 1),
        ))
        .returning(user_inbox::version)
        .get_result(conn)
        .await
}

/// The categories the user muted (none without preferences).
async fn muted_categories(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<String>, diesel::result::Error> {
    Ok(user_preferences::table
        .find(user_id)
        .select(user_preferences::muted_categories)
        .first::<Vec<String>>(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

/// What replacing a user's preferences did to the counts: the categories
/// muted and unmuted by it, and the state after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Muting {
    pub muted: Vec<String>,
    pub unmuted: Vec<String>,
    /// No ids (a whole category moves).
    pub result: ChangeResult,
}

/// Replaces the user's preferences, and with them which categories count:
/// muting one takes its notifications out of the counts at once, unmuting
/// it brings its unread ones back (those stored while it was muted too;
/// they were never pushed). One transaction under the user's lock.
/// Answers what moved (`None`: no category was muted or unmuted).
///
/// Muting costs nothing per notification: a category's counts are its
/// entry in `by_category`. Unmuting counts the category's unread
/// notifications (through `notifications_category`) with the lock held.
pub async fn set_preferences(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    preferences: &Preferences,
) -> Result<Option<Muting>, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        // The row is created if need be, so that a worker storing the
        // user's first notifications meanwhile waits for this change and
        // reads the preferences it leaves (it reads them again when it
        // finds the row created by another transaction).
        diesel::insert_into(user_inbox::table)
            .values(user_inbox::user_id.eq(user_id))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let Some((mut counts, _)) = lock_counts(conn, user_id).await? else {
            return Err(diesel::result::Error::NotFound.into());
        };
        let before = muted_categories(conn, user_id).await?;
        super::preferences::put(conn, user_id, preferences).await?;
        let now = &preferences.muted_categories;
        let muted: Vec<String> = now
            .iter()
            .filter(|c| !before.contains(c))
            .cloned()
            .collect();
        let unmuted: Vec<String> = before
            .iter()
            .filter(|c| !now.contains(c))
            .cloned()
            .collect();
        if muted.is_empty() && unmuted.is_empty() {
            return Ok(None);
        }
        for category in &muted {
            if let Some(those) = counts.by_category.get(category).copied() {
                counts.add(Some(category), -those.unread, -those.unseen);
            }
        }
        for (category, unread, unseen) in counted_in(conn, user_id, &unmuted).await? {
            counts.add(Some(&category), unread, unseen);
        }
        let version = write_counts(conn, user_id, &counts).await?;
        Ok(Some(Muting {
            muted,
            unmuted,
            result: ChangeResult {
                ids: Vec::new(),
                unread: counts.unread,
                version,
                counts,
            },
        }))
    })
    .await
}

/// Locks the user's inbox row; answers its counts and version (`None`
/// without one).
async fn lock_counts(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Option<(Counts, i64)>, DbError> {
    let locked = user_inbox::table
        .filter(user_inbox::user_id.eq(user_id))
        .select((
            (
                user_inbox::unread_count,
                user_inbox::unseen_count,
                user_inbox::by_category,
            ),
            user_inbox::version,
        ))
        .for_update()
        .first::<(counts::Columns, i64)>(conn)
        .await
        .optional()?;
    Ok(match locked {
        None => None,
        Some((columns, version)) => Some((counts::from_columns(columns)?, version)),
    })
}

/// The `(category, unread, unseen)` of the user's notifications in
/// `categories` as they count when not muted: listed, neither read nor
/// archived.
async fn counted_in(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    categories: &[String],
) -> Result<Vec<(String, i64, i64)>, diesel::result::Error> {
    if categories.is_empty() {
        return Ok(Vec::new());
    }
    let unread = || {
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.is_not_null())
            .filter(notifications::expired.eq(false))
            .filter(notifications::category.eq_any(categories))
            .filter(notifications::read_at.is_null())
            .filter(notifications::archived_at.is_null())
            .filter(notifications::snoozed_until.is_null())
    };
    let totals: Vec<(Option<String>, i64)> = unread()
        .group_by(notifications::category)
        .select((notifications::category, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    let unseen: std::collections::HashMap<Option<String>, i64> = unread()
        .filter(notifications::seen_at.is_null())
        .group_by(notifications::category)
        .select((notifications::category, diesel::dsl::count_star()))
        .load(conn)
        .await?
        .into_iter()
        .collect();
    Ok(totals
        .into_iter()
        .filter_map(|(category, n)| {
            let seen_not = unseen.get(&category).copied().unwrap_or(0);
            Some((category?, n, seen_not))
        })
        .collect())
}

/// The outcome of a change that changed nothing.
fn unchanged(counts: Counts, version: i64) -> Applied {
    Applied {
        result: ChangeResult {
            ids: Vec::new(),
            unread: counts.unread,
            version,
            counts,
        },
        up_to_seq: 0,
    }
}

/// Most rows one transaction of [`apply`] changes: 70-95 ms of the user's
/// lock at the 14-19 µs per row a read-all of 75,000 rows took in one
/// transaction (1.0-1.4 s).
pub const CHUNK: i64 = 5_000;

diesel::define_sql_function! {
    /// The first of two times that is not `NULL`.
    fn coalesce(first: diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, second: diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>) -> diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>;
}

/// The one `UPDATE` of `change`: the user's listed `target` rows not in the
/// wanted state yet, as it leaves them.
async fn changed_rows(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    target: Target<'_>,
    change: Change,
    now: DateTime<Utc>,
    version: i64,
) -> Result<Vec<ChangedRow>, diesel::result::Error> {
    let mut candidates = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .filter(notifications::expired.eq(false))
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
    candidates = match change {
        Change::Read => candidates.filter(notifications::read_at.is_null()),
        Change::Unread => candidates.filter(notifications::read_at.is_not_null()),
        Change::Seen => candidates
            .filter(notifications::read_at.is_null())
            .filter(notifications::seen_at.is_null()),
        Change::Archive => candidates.filter(notifications::archived_at.is_null()),
        Change::Unarchive => candidates.filter(notifications::archived_at.is_not_null()),
        Change::Snooze(_) => candidates.filter(notifications::snoozed_until.is_null()),
        Change::Unsnooze => candidates.filter(notifications::snoozed_until.is_not_null()),
        Change::Wake => candidates.filter(notifications::snoozed_until.le(now)),
        Change::Expire => candidates.filter(notifications::expires_at.le(now)),
    };
    let candidates = candidates.order(notifications::seq.asc()).limit(CHUNK);
    let rows = diesel::update(
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::id.eq_any(candidates)),
    );
    let returning = (
        notifications::id,
        notifications::seq,
        notifications::category,
        notifications::read_at,
        notifications::seen_at,
        notifications::archived_at,
        notifications::snoozed_until,
        notifications::expired,
    );
    let now = Some(now);
    let none: Option<DateTime<Utc>> = None;
    let stamp = notifications::state_version.eq(version);
    match change {
        Change::Read => {
            let rows = rows.set((notifications::read_at.eq(now), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Unread => {
            // It was seen when it was read, if not before.
            let rows = rows.set((
                notifications::read_at.eq(none),
                notifications::seen_at.eq(coalesce(notifications::seen_at, notifications::read_at)),
                stamp,
            ));
            rows.returning(returning).get_results(conn).await
        }
        Change::Seen => {
            let rows = rows.set((notifications::seen_at.eq(now), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Archive => {
            let rows = rows.set((notifications::archived_at.eq(now), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Unarchive => {
            let rows = rows.set((notifications::archived_at.eq(none), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Snooze(until) => {
            let rows = rows.set((notifications::snoozed_until.eq(until), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Unsnooze | Change::Wake => {
            let rows = rows.set((notifications::snoozed_until.eq(none), stamp));
            rows.returning(returning).get_results(conn).await
        }
        Change::Expire => {
            let rows = rows.set((notifications::expired.eq(true), stamp));
            rows.returning(returning).get_results(conn).await
        }
    }
}

/// Snoozes the user's listed `target` rows snoozed until another time
/// until `until` instead (they stay out of the counts); answers their ids.
async fn resnooze(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    target: Target<'_>,
    until: DateTime<Utc>,
    version: i64,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    let Target::Ids(ids) = target else {
        return Ok(Vec::new());
    };
    diesel::update(
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::id.eq_any(ids))
            .filter(notifications::seq.is_not_null())
            .filter(notifications::expired.eq(false))
            .filter(notifications::snoozed_until.ne(until)),
    )
    .set((
        notifications::snoozed_until.eq(until),
        notifications::state_version.eq(version),
    ))
    .returning(notifications::id)
    .get_results(conn)
    .await
}

/// A timer that has come: the user's notification snoozed until now or
/// before (`Change::Wake`), or listed past its `expires_at`
/// (`Change::Expire`).
pub type Due = (String, Uuid);

/// Up to `limit` of each kind of timer that has come at `now`, oldest
/// first, through the partial indexes that hold only pending timers.
pub async fn due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<(Vec<Due>, Vec<Due>), DbError> {
    let woken = notifications::table
        .filter(notifications::snoozed_until.le(now))
        .order(notifications::snoozed_until.asc())
        .limit(limit)
        .select((notifications::user_id, notifications::id))
        .load(conn)
        .await?;
    let expiring = notifications::table
        .filter(notifications::expires_at.le(now))
        .filter(notifications::expired.eq(false))
        .filter(notifications::seq.is_not_null())
        .order(notifications::expires_at.asc())
        .limit(limit)
        .select((notifications::user_id, notifications::id))
        .load(conn)
        .await?;
    Ok((woken, expiring))
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
