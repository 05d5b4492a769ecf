//! Storing a batch of notifications: exactly once per id, each with the next
//! number of its user's gapless sequence, unread counts moved in the same
//! transaction.
//!
//! Why `seq` never skips and follows commit order: the transaction first
//! locks the `user_inbox` rows of every user in the batch (in user-id order,
//! so two workers with overlapping users cannot deadlock), then numbers the
//! new notifications from `last_seq`, inserts them and moves `last_seq`. A
//! second transaction for the same user waits on that lock, so it numbers
//! after the first one committed: a client that saw `seq = S` can never miss
//! a later commit with a smaller number.
//!
//! Exactly once per id: the primary key `(id, user_id)` refuses a second
//! copy. A round does not look for its ids among the stored ones first
//! (ingest gives each notification a fresh id, so nearly every round holds
//! only new ones); when the key refuses one, the round is rolled back and
//! stored again with that check, under the same locks: the redelivered
//! ones are then kept as stored and published again, not numbered twice.
//!
//! Round trips: BEGIN + locks + preferences, then rows + counters +
//! COMMIT, each pipelined (see [`super::pipelined_tx`]). A
//! user's inbox row is created the first time the user gets a notification,
//! already in the state the transaction leaves it in (one more round trip
//! for such batches, no update of the new row; those users are locked after
//! the others: two such transactions can, rarely, deadlock; PostgreSQL
//! aborts one and the worker tries its round again).
//!
//! [`store_preparing`] runs `store`'s named steps in one pipelined
//! transaction; `statements` holds the SQL they send.

mod statements;
pub mod status;
mod store;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use domain::{InboxCounts, NewNotification, Notification, Preferences};
use uuid::Uuid;

pub use super::models::Prepared;
use super::pipelined_tx;
use crate::db::DbError;
use store::Check;

/// What storing a batch did.
#[derive(Debug, Default)]
pub struct StoredBatch {
    /// Every visible notification of the batch as stored, in batch order:
    /// new ones with their fresh `seq`, ones stored earlier (a redelivery)
    /// as they were stored then. These are the ones to publish.
    pub visible: Vec<Notification>,
    /// Newly stored in this call (visible or expired).
    pub inserted: usize,
    /// Ids already stored before this call (redeliveries).
    pub duplicates: HashSet<Uuid>,
    /// Ids newly stored as expired: no `seq`, not unread, not published.
    pub expired: HashSet<Uuid>,
    /// The unread count and version of every user whose inbox this call
    /// moved, as it left them (what the live frames carry).
    pub counts: HashMap<String, InboxCounts>,
}

impl StoredBatch {
    /// Adds another batch's outcome to this one.
    pub fn merge(&mut self, other: StoredBatch) {
        self.visible.extend(other.visible);
        self.inserted += other.inserted;
        self.duplicates.extend(other.duplicates);
        self.expired.extend(other.expired);
        // A later round's state is newer.
        self.counts.extend(other.counts);
    }
}

/// A notification `prepare` refused: its index in the batch, and why.
pub type Unprepared = (usize, String);

/// Stores a batch in one transaction. Duplicate ids inside the batch, and
/// ids stored earlier, are stored once. Muted ones take their `seq` but are
/// not counted unread (and are not among `visible`).
///
/// `prepare` turns the notification at an index into what is stored, given
/// its user's preferences (read in the transaction's first round trip, with
/// the locks). It is called once per id of the batch, and again per id not
/// stored before when the batch is stored again after the primary key
/// refused a copy (and, in the rare race on a new user's inbox row, for ids
/// the other transaction had just stored: those are then dropped as
/// duplicates); one it refuses is not stored, and every index of the batch
/// with that id is returned with the reason. It must have no side effects.
///
/// Round trips: BEGIN + locks + preferences, then the rows + counters +
/// COMMIT (see [`pipelined_tx`]); batches with first-time users take one
/// more (their inbox rows are created), and one more again in the rare
/// case another transaction created one of those rows first (it is then
/// locked and its user's ids checked). A batch holding a notification
/// stored before is rolled back when the primary key refuses it and
/// stored again with the duplicate check in the first round trip and a
/// read-back of the redelivered ones in the last.
pub async fn store_preparing(
    conn: &mut AsyncPgConnection,
    batch: &[&NewNotification],
    now: DateTime<Utc>,
    prepare: impl Fn(usize, Option<&Preferences>) -> Result<Prepared, String>,
) -> Result<(StoredBatch, Vec<Unprepared>), DbError> {
    if batch.is_empty() {
        return Ok((StoredBatch::default(), Vec::new()));
    }
    let attempt = async |conn: &mut AsyncPgConnection, check| {
        pipelined_tx::run(conn, async |conn| {
            store::store_in_tx(conn, batch, now, &prepare, check).await
        })
        .await
    };
    match attempt(conn, Check::Optimistic).await {
        Err(err) if store::is_a_stored_copy(&err) => attempt(conn, Check::Stored).await,
        outcome => outcome,
    }
}

/// The users holding a notification with this id: none, or one (ingest
/// makes every id; the primary key, `(id, user_id)`, would allow more).
/// For operators' checks, not the hot path.
pub async fn users_with_id(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Vec<String>, DbError> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;

    use super::schema::notifications;
    Ok(notifications::table
        .filter(notifications::id.eq(id))
        .select(notifications::user_id)
        .load(conn)
        .await?)
}
