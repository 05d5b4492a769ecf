//! Retention: notifications stored before a cutoff (`retention.days` ago)
//! are deleted for good, user by user, never by a whole-table `DELETE`.
//!
//! The users holding old ones are found by id ([`sweep`]). A user's
//! notifications are stored in `seq` order under their lock, so (up to a
//! lock wait: `stored_at` is the storing transaction's start)
//! `stored_at` grows with `seq` and the old ones are a prefix of the
//! user's sequence: each [`trim`] deletes the next chunk of it (at most
//! [`CHUNK`] rows, through `notifications_user_seq`) in one transaction
//! under the user's lock, takes the unread and unseen ones out of the
//! counts, bumps `version` and moves `trimmed_through` (every notification
//! of the user up to it is gone): so the lock is held for one chunk, and
//! a device that holds older ones learns to drop them from the `trimmed`
//! frame or, back from being away, from its `hello`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{Counts, InboxCounts};
use uuid::Uuid;

use super::changes::{CHUNK, ChangedRow, lock_counts, muted_categories, write_counts_trimmed};
use crate::db::DbError;
use crate::storage::counts;
use crate::storage::schema::notifications;

/// One step of a sweep over the notifications created before a cutoff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Whose they are, each once, in the order of their oldest.
    pub users: Vec<String>,
    /// Where the next step starts (`None`: the sweep is done).
    pub next: Option<Uuid>,
}

/// The users holding the next `limit` notifications created before
/// `cutoff` after `after` (from the oldest when `None`), in id order.
///
/// Ids are UUIDv7, stamped at ingest: their order is creation order, and
/// the primary key's index (`id` first) finds the old ones without an
/// index of its own (nothing more to write when storing). A notification
/// is stored after it was created, so every one stored before the cutoff
/// is found; one created before but stored after it (it waited in the
/// stream) is found too and left for a later sweep: [`trim`] goes by
/// `stored_at`.
pub async fn sweep(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Sweep, DbError> {
    let mut query = notifications::table
        .filter(notifications::id.lt(domain::ids::first_id_at(cutoff)))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(notifications::id.gt(after));
    }
    let old: Vec<(Uuid, String)> = query
        .order(notifications::id.asc())
        .limit(limit)
        .select((notifications::id, notifications::user_id))
        .load(conn)
        .await?;
    let next = (old.len() as i64 == limit)
        .then(|| old.last().map(|(id, _)| *id))
        .flatten();
    let mut users: Vec<String> = Vec::new();
    for (_, user) in old {
        if !users.contains(&user) {
            users.push(user);
        }
    }
    Ok(Sweep { users, next })
}

/// What one [`trim`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Rows deleted: listed ones and ones that expired before they were
    /// ever listed.
    pub deleted: usize,
    /// When listed ones went: every notification of the user with `seq`
    /// up to `up_to_seq` is gone, and the counts and version after.
    pub trim: Option<Trim>,
}

/// A prefix of the user's sequence that [`trim`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trim {
    pub up_to_seq: i64,
    pub state: InboxCounts,
}

impl Trimmed {
    /// Whether a whole chunk went, so more may be left.
    pub fn more(&self) -> bool {
        self.deleted as i64 >= CHUNK
    }
}

/// Deletes the next chunk of the user's notifications stored before
/// `cutoff`, in one transaction under the user's lock (see the module).
pub async fn trim(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    cutoff: DateTime<Utc>,
) -> Result<Trimmed, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let mut trimmed = Trimmed::default();
        if let Some((counts, _)) = lock_counts(conn, user_id).await? {
            let (deleted, trim) = trim_listed(conn, user_id, cutoff, counts).await?;
            trimmed.deleted += deleted;
            trimmed.trim = trim;
        }
        // Expired before they were stored: no seq, never listed or counted.
        let unlisted = notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.is_null())
            .filter(notifications::stored_at.lt(cutoff))
            .select(notifications::id)
            .into_boxed()
            .limit(CHUNK);
        trimmed.deleted += diesel::delete(
            notifications::table
                .filter(notifications::user_id.eq(user_id))
                .filter(notifications::id.eq_any(unlisted)),
        )
        .execute(conn)
        .await?;
        Ok(trimmed)
    })
    .await
}

/// Deletes the oldest chunk of the user's listed notifications up to the
/// newest one in it stored before `cutoff`, and takes them out of the
/// `counts` (locked); answers how many went.
async fn trim_listed(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    cutoff: DateTime<Utc>,
    mut counts: Counts,
) -> Result<(usize, Option<Trim>), DbError> {
    let oldest: Vec<(Option<i64>, DateTime<Utc>)> = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .order(notifications::seq.asc())
        .limit(CHUNK)
        .select((notifications::seq, notifications::stored_at))
        .load(conn)
        .await?;
    let Some(up_to_seq) = oldest
        .iter()
        .filter(|(_, stored_at)| *stored_at < cutoff)
        .filter_map(|(seq, _)| *seq)
        .max()
    else {
        return Ok((0, None));
    };
    let rows: Vec<ChangedRow> = diesel::delete(
        notifications::table
            .filter(notifications::user_id.eq(user_id))
            .filter(notifications::seq.le(up_to_seq)),
    )
    .returning(ChangedRow::as_returning())
    .get_results(conn)
    .await?;
    let muted = muted_categories(conn, user_id).await?;
    for row in &rows {
        counts::remove_deleted(
            &mut counts,
            row.category.as_deref(),
            row.state(row.muted_by(&muted)),
        );
    }
    let version = write_counts_trimmed(conn, user_id, &counts, Some(up_to_seq)).await?;
    Ok((
        rows.len(),
        Some(Trim {
            up_to_seq,
            state: InboxCounts { counts, version },
        }),
    ))
}
