//! Changes of notifications' state: one transaction under the user's lock
//! that changes the rows not in the wanted state yet, moves the counts by
//! what each changed row counts now less what it counted before, stamps
//! the rows and bumps `version`; and the timers that come due.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{ChangeResult, Counts};
use uuid::Uuid;

use super::Target;
use super::statements::{ChangeIds, WriteCounts};
use crate::db::DbError;
use crate::storage::counts::{self, RowState};
use crate::storage::pipelined_tx;
use crate::storage::schema::{notifications, user_inbox, user_preferences};
use futures_util::future::{try_join, try_join3};

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

/// A changed row as the change left it (or a deleted one as it was).
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub(super) struct ChangedRow {
    pub(super) id: Uuid,
    pub(super) seq: Option<i64>,
    pub(super) category: Option<String>,
    read_at: Option<DateTime<Utc>>,
    seen_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    snoozed_until: Option<DateTime<Utc>>,
    expired: bool,
}

impl ChangedRow {
    /// Whether its category is one of the user's `muted` ones.
    pub(super) fn muted_by(&self, muted: &[String]) -> bool {
        self.category.as_ref().is_some_and(|c| muted.contains(c))
    }

    /// Its state; `muted`: whether its category is muted now.
    pub(super) fn state(&self, muted: bool) -> RowState {
        let read = self.read_at.is_some();
        RowState {
            read,
            seen: read || self.seen_at.is_some(),
            archived: self.archived_at.is_some(),
            muted,
            snoozed: self.snoozed_until.is_some(),
            expired: self.expired,
        }
    }
}

impl Change {
    /// What this change sets and which rows it takes, as SQL for
    /// [`ChangeIds`]: its time follows the text that ends in `= ` or `<= `
    /// (one of the two, or neither).
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Change::Read => ("read_at = ", "read_at IS NULL"),
            // It was seen when it was read, if not before.
            Change::Unread => (
                "read_at = NULL, seen_at = COALESCE(seen_at, read_at)",
                "read_at IS NOT NULL",
            ),
            Change::Seen => ("seen_at = ", "read_at IS NULL AND seen_at IS NULL"),
            Change::Archive => ("archived_at = ", "archived_at IS NULL"),
            Change::Unarchive => ("archived_at = NULL", "archived_at IS NOT NULL"),
            Change::Snooze(_) => ("snoozed_until = ", "snoozed_until IS NULL"),
            Change::Unsnooze => ("snoozed_until = NULL", "snoozed_until IS NOT NULL"),
            Change::Wake => ("snoozed_until = NULL", "snoozed_until <= "),
            Change::Expire => ("expired = true", "expires_at <= "),
        }
    }

    /// Moves `counts` by what each of the `rows` this change left counts
    /// now (each with whether its category is muted now) less what it
    /// counted before.
    fn move_counts<'r>(
        self,
        rows: impl IntoIterator<Item = (&'r ChangedRow, bool)>,
        counts: &mut Counts,
    ) {
        for (row, muted) in rows {
            let after = row.state(muted);
            let before = self.before(row, after);
            after.moved_from(before, row.category.as_deref(), counts);
        }
    }

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
    // Listed ids (a socket frame, a REST call, due timers); a snooze also
    // moves the time of ones snoozed already (`resnooze`).
    if let Target::Ids(ids) = target
        && ids.len() as i64 <= CHUNK
        && !matches!(change, Change::Snooze(_))
    {
        match pipelined_tx::run(conn, async |conn| {
            apply_to_ids(conn, user_id, ids, change, now).await
        })
        .await
        {
            // Rolled back: its rows arrived after the lock found no inbox.
            Err(DbError::Conflict(reason)) if reason == INBOX_CREATED_MEANWHILE => {}
            outcome => return outcome,
        }
    }
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
        change.move_counts(
            rows.iter().map(|row| (row, row.muted_by(&muted))),
            &mut counts,
        );
        let version = write_counts(conn, user_id, &counts).await?;
        Ok(applied(rows, resnoozed, counts, version))
    })
    .await
}

/// Why [`apply_to_ids`] rolled back: see there.
const INBOX_CREATED_MEANWHILE: &str = "the user's inbox was created during the change";

/// [`apply`] to listed ids in two round trips, through statements
/// PostgreSQL keeps prepared: `BEGIN`, the lock and the rows' `UPDATE`
/// (which also tells whether each row's category is muted) together (each
/// runs after the one before it, so the `UPDATE` runs with the lock held);
/// then the counts and `COMMIT`. Every statement is a reply PostgreSQL
/// sends on its own (each ends in a Sync), so there are as few as the
/// transaction allows. Safe to try again after an error: only rows not in
/// the wanted state yet change.
async fn apply_to_ids(
    conn: &AsyncPgConnection,
    user_id: &str,
    ids: &[Uuid],
    change: Change,
    now: DateTime<Utc>,
) -> Result<Applied, DbError> {
    let rows = async {
        let mut conn = conn;
        let (set, wanted) = change.sql();
        ChangeIds {
            user_id,
            ids,
            set,
            wanted,
            at: now,
        }
        .get_results::<(ChangedRow, bool)>(&mut conn)
        .await
        .map_err(DbError::from)
    };
    let ((), locked, rows) = try_join3(
        async { pipelined_tx::begin(conn).await.map_err(DbError::from) },
        lock_counts(conn, user_id),
        rows,
    )
    .await?;
    if rows.is_empty() {
        pipelined_tx::commit(conn).await?;
        let (counts, version) = locked.unwrap_or_default();
        return Ok(unchanged(counts, version));
    }
    // The user had no inbox row to lock, but the `UPDATE` (a statement
    // later, with a newer snapshot) found rows a first round stored
    // meanwhile: not under the lock, so roll back (and `apply` takes the
    // ordinary way, which locks the row that exists now).
    let Some((mut counts, _)) = locked else {
        return Err(DbError::Conflict(INBOX_CREATED_MEANWHILE));
    };
    change.move_counts(rows.iter().map(|(row, muted)| (row, *muted)), &mut counts);
    let rows = rows.into_iter().map(|(row, _)| row).collect();
    let (version_after, ()) = try_join(
        async {
            write_counts(conn, user_id, &counts)
                .await
                .map_err(DbError::from)
        },
        async { pipelined_tx::commit(conn).await.map_err(DbError::from) },
    )
    .await?;
    Ok(applied(rows, Vec::new(), counts, version_after))
}

/// The outcome of a change that changed `rows` (and moved the time of the
/// `resnoozed`), leaving `counts` at `version`.
fn applied(rows: Vec<ChangedRow>, resnoozed: Vec<Uuid>, counts: Counts, version: i64) -> Applied {
    Applied {
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
    }
}

/// Writes the user's counts (locked by the caller's transaction) and bumps
/// `version`; answers the new version.
pub(super) async fn write_counts(
    conn: &AsyncPgConnection,
    user_id: &str,
    counts: &Counts,
) -> Result<i64, diesel::result::Error> {
    write_counts_trimmed(conn, user_id, counts, None).await
}

/// [`write_counts`], and retention's floor (`trimmed_through`) in the same
/// `UPDATE` when there is one.
pub(super) async fn write_counts_trimmed(
    mut conn: &AsyncPgConnection,
    user_id: &str,
    counts: &Counts,
    trimmed_through: Option<i64>,
) -> Result<i64, diesel::result::Error> {
    WriteCounts {
        user_id,
        unread: counts.unread,
        unseen: counts.unseen,
        by_category: counts::by_category_column(counts),
        trimmed_through,
    }
    .get_result(&mut conn)
    .await
}

/// Locks the user's inbox row; answers its counts and version (`None`
/// without one).
pub(super) async fn lock_counts(
    mut conn: &AsyncPgConnection,
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
        .first::<(counts::Columns, i64)>(&mut conn)
        .await
        .optional()?;
    Ok(match locked {
        None => None,
        Some((columns, version)) => Some((counts::from_columns(columns)?, version)),
    })
}

/// The categories the user muted (none without preferences).
pub(super) async fn muted_categories(
    mut conn: &AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<String>, diesel::result::Error> {
    Ok(user_preferences::table
        .find(user_id)
        .select(user_preferences::muted_categories)
        .first::<Vec<String>>(&mut conn)
        .await
        .optional()?
        .unwrap_or_default())
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
    let returning = ChangedRow::as_returning();
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
