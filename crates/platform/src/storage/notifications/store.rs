//! The steps of storing one batch, inside its transaction, in the order
//! they run: lock and look ([`lock_users`]), prepare what is new
//! ([`Round::prepare`]), create first-time users' inboxes
//! ([`create_inboxes`]), number the rows ([`number`]), then write and
//! commit ([`write_and_commit`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{InboxCounts, NewNotification, Notification, Preferences};
use futures_util::future::{join4, try_join3, try_join4};
use uuid::Uuid;

use super::statements::{
    CreateInboxes, Inbox, InboxColumns, Keys, advance_inboxes, already_stored, insert_rows,
    load_visible, lock,
};
use super::{StoredBatch, Unprepared};
use crate::db::DbError;
use crate::storage::models::{NotificationInsert, Prepared};
use crate::storage::{counts, pipelined_tx, preferences};

/// Each locked user's `last_seq` and counts, as numbering moves them.
type Inboxes = HashMap<String, Inbox>;

/// Each user's counts and version as this transaction leaves them.
pub(super) type Counts = HashMap<String, InboxCounts>;

/// Whether a round looks for its notifications among the stored ones
/// before numbering them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// It does not: nearly every round stores only new notifications
    /// (ingest gives each one a fresh id; only a redelivery after a crash
    /// or a claim repeats one). One stored before makes the insert fail on
    /// the primary key, and the round is rolled back and tried again with
    /// [`Check::Stored`] (see [`is_a_stored_copy`]).
    Optimistic,
    /// It does, with the users locked: redelivered ones are kept as stored
    /// and published again, not numbered again.
    Stored,
}

/// The error an optimistic round ends with when it holds a notification
/// stored before: the primary key refused the copy.
pub(super) fn is_a_stored_copy(err: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        err,
        DbError::Query(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some(PRIMARY_KEY)
    )
}

/// The primary key of `notifications`, `(id, user_id)`.
const PRIMARY_KEY: &str = "notifications_pkey";

/// Stores `batch` (see [`super::store_preparing`]); runs inside
/// [`pipelined_tx::run`], which rolls back on an error.
pub(super) async fn store_in_tx(
    conn: &AsyncPgConnection,
    batch: &[&NewNotification],
    now: DateTime<Utc>,
    prepare: &impl Fn(usize, Option<&Preferences>) -> Result<Prepared, String>,
    check: Check,
) -> Result<(StoredBatch, Vec<Unprepared>), DbError> {
    let mut users: Vec<&str> = batch.iter().map(|n| n.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let keys = match check {
        Check::Optimistic => Keys::default(),
        Check::Stored => Keys::of(batch, |_| true),
    };

    let (mut inboxes, mut stored, preferences) = lock_users(conn, batch, &users, &keys).await?;
    let mut round = Round::prepare(batch, &stored, &preferences, prepare, |_| true);
    if check == Check::Optimistic && !round.refused.is_empty() {
        // A refused one is never inserted, so the primary key cannot say
        // it was stored before (a redelivery whose template no longer
        // renders): look those up, with the locks held, before refusing.
        let refused = Keys::of(batch, |n| round.refused.contains_key(&key(n)));
        let found = keys_among(batch, already_stored(conn, &refused).await?);
        round.found_stored(&found);
        stored.extend(found);
    }
    let (created, raced) = create_inboxes(conn, &users, &mut inboxes, &round, now).await?;
    if !raced.is_empty() {
        // Another transaction created these users' rows first: lock them
        // and look again, at what it stored and at their preferences (a
        // change of mutes creates the row too, and may have committed
        // since they were read).
        let raced_keys = Keys::of(batch, |n| raced.contains(&n.user_id.as_str()));
        let (locked, stored_meanwhile, fresh) = try_join3(
            lock(conn, &raced),
            already_stored(conn, &raced_keys),
            preferences::load_many(conn, &raced),
        )
        .await?;
        inboxes.extend(locked);
        let stored_meanwhile = keys_among(batch, stored_meanwhile);
        stored.extend(stored_meanwhile.iter().copied());
        let changed: Vec<&str> = raced
            .iter()
            .copied()
            .filter(|u| fresh.get(*u) != preferences.get(*u))
            .collect();
        if !changed.is_empty() {
            round.forget(&changed);
            let of_changed = |n: &NewNotification| changed.contains(&n.user_id.as_str());
            round.absorb(Round::prepare(batch, &stored, &fresh, prepare, of_changed));
        }
        round.found_stored(&stored_meanwhile);
    }
    let prepared = std::mem::take(&mut round.prepared);
    let numbered = number(&prepared, &mut inboxes, &created, now)?;
    let earlier = Keys::of(batch, |n| stored.contains(&key(n)));
    let (earlier, mut counts) = write_and_commit(conn, &numbered, &inboxes, &earlier).await?;
    counts.extend(created);
    Ok(round.finish(batch, numbered, earlier, counts))
}

/// First round trip: `BEGIN`, the users' inbox rows locked (their
/// `last_seq` and counts), which of `keys` are stored already (none asked for in an
/// optimistic round), and the users' preferences. Users without an inbox
/// row yet are not in the map.
async fn lock_users<'b>(
    conn: &AsyncPgConnection,
    batch: &[&'b NewNotification],
    users: &[&str],
    keys: &Keys<'_>,
) -> Result<(Inboxes, HashSet<Key<'b>>, HashMap<String, Preferences>), DbError> {
    let ((), inboxes, stored, preferences) = try_join4(
        pipelined_tx::begin(conn),
        lock(conn, users),
        already_stored(conn, keys),
        preferences::load_many(conn, users),
    )
    .await?;
    Ok((inboxes, keys_among(batch, stored), preferences))
}

/// A notification's identity as stored: its id and its user (the primary
/// key), borrowed from the batch.
type Key<'b> = (Uuid, &'b str);

fn key<'b>(notification: &'b NewNotification) -> Key<'b> {
    (notification.id, notification.user_id.as_str())
}

/// The keys of `batch` among `found` (rows read back as `(id, user_id)`).
fn keys_among<'b>(batch: &[&'b NewNotification], found: Vec<(Uuid, String)>) -> HashSet<Key<'b>> {
    if found.is_empty() {
        return HashSet::new();
    }
    let found: HashSet<(Uuid, String)> = found.into_iter().collect();
    batch
        .iter()
        .map(|n| key(n))
        .filter(|(id, user)| found.contains(&(*id, (*user).to_owned())))
        .collect()
}

/// The batch after [`Round::prepare`]: what will be stored, what was stored
/// before, and what `prepare` refused.
struct Round<'b> {
    /// Each notification not stored before, once, rendered; in batch order
    /// (taken out to be numbered).
    prepared: Vec<Prepared>,
    /// Refused notifications and why.
    refused: HashMap<Key<'b>, String>,
    /// Duplicates so far; the rest is filled in by [`Round::finish`].
    outcome: StoredBatch,
}

impl<'b> Round<'b> {
    /// Prepares every notification of the batch that `only` lets through
    /// once, unless it is stored already.
    fn prepare(
        batch: &[&'b NewNotification],
        stored: &HashSet<Key<'b>>,
        preferences: &HashMap<String, Preferences>,
        prepare: &impl Fn(usize, Option<&Preferences>) -> Result<Prepared, String>,
        only: impl Fn(&NewNotification) -> bool,
    ) -> Self {
        let mut round = Round {
            prepared: Vec::with_capacity(batch.len()),
            refused: HashMap::new(),
            outcome: StoredBatch::default(),
        };
        let mut seen = HashSet::with_capacity(batch.len());
        for (index, notification) in batch.iter().enumerate() {
            let key = key(notification);
            if !only(notification) || !seen.insert(key) {
                continue;
            }
            if stored.contains(&key) {
                round.outcome.duplicates.insert(notification.id);
                continue;
            }
            match prepare(index, preferences.get(&notification.user_id)) {
                Ok(p) => round.prepared.push(p),
                Err(reason) => {
                    round.refused.insert(key, reason);
                }
            }
        }
        round
    }

    /// Leaves out what was prepared (or refused) of these users'
    /// notifications, to prepare them again.
    fn forget(&mut self, users: &[&str]) {
        self.prepared
            .retain(|p| !users.contains(&p.notification.user_id.as_str()));
        self.refused.retain(|(_, user), _| !users.contains(user));
    }

    /// Takes in what another round prepared (of other notifications).
    fn absorb(&mut self, other: Round<'b>) {
        self.prepared.extend(other.prepared);
        self.refused.extend(other.refused);
        self.outcome.duplicates.extend(other.outcome.duplicates);
    }

    /// Notifications found stored after preparing (by another transaction
    /// meanwhile, or refused now but stored before): duplicates, neither
    /// stored nor refused again.
    fn found_stored(&mut self, keys: &HashSet<Key<'b>>) {
        self.prepared
            .retain(|p| !keys.contains(&key(&p.notification)));
        self.refused.retain(|key, _| !keys.contains(key));
        self.outcome
            .duplicates
            .extend(keys.iter().map(|(id, _)| *id));
    }

    /// The outcome: what was inserted, and every visible notification of
    /// the batch in batch order (new ones as numbered, redelivered ones as
    /// stored then), and the counts of the users this transaction moved;
    /// every index of a refused notification, with why.
    fn finish(
        mut self,
        batch: &[&'b NewNotification],
        numbered: Numbered<'_>,
        earlier: Vec<Notification>,
        counts: Counts,
    ) -> (StoredBatch, Vec<Unprepared>) {
        let unprepared = batch
            .iter()
            .enumerate()
            .filter_map(|(index, n)| {
                self.refused
                    .get(&key(n))
                    .map(|reason| (index, reason.clone()))
            })
            .collect();
        self.outcome.inserted = numbered.rows.len();
        self.outcome.expired = numbered.expired;
        let mut new: HashMap<Key<'_>, Notification> = numbered
            .rows
            .iter()
            .filter_map(|row| Some(((row.id, row.user_id), row.to_visible()?)))
            .collect();
        let mut earlier: HashMap<(Uuid, String), Notification> = earlier
            .into_iter()
            .map(|n| ((n.id, n.user_id.clone()), n))
            .collect();
        self.outcome.visible = batch
            .iter()
            .filter_map(|n| {
                new.remove(&key(n)).or_else(|| {
                    (!earlier.is_empty())
                        .then(|| earlier.remove(&(n.id, n.user_id.clone())))
                        .flatten()
                })
            })
            .collect();
        self.outcome.counts = counts;
        (self.outcome, unprepared)
    }
}

/// Users getting their first notification: their inbox rows are created
/// with the state this transaction leaves them in. Answers the users whose
/// row this transaction created, with that state (their counters need no
/// update), and the users whose row another transaction created meanwhile
/// (ours waited for it to commit in the insert), for the caller to lock
/// and check like any other: that transaction may have stored some of
/// these notifications (as after a claim), or changed their preferences.
///
/// A row this transaction created is locked by it, and none of that user's
/// notifications can be stored yet (storing one takes the row's lock
/// first), nor their preferences changed (that takes it too), so the state
/// counts every one prepared.
async fn create_inboxes<'u>(
    conn: &AsyncPgConnection,
    users: &[&'u str],
    inboxes: &mut Inboxes,
    round: &Round<'_>,
    now: DateTime<Utc>,
) -> Result<(Counts, Vec<&'u str>), DbError> {
    if inboxes.len() == users.len() {
        return Ok((Counts::new(), Vec::new()));
    }
    let new_users: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| !inboxes.contains_key(*u))
        .collect();
    let fresh = FreshInboxes::of(&new_users, &round.prepared, now);
    let mut shared = conn;
    let created: HashSet<String> = CreateInboxes {
        columns: &fresh.columns,
        versions: &fresh.versions,
    }
    .load::<String>(&mut shared)
    .await?
    .into_iter()
    .collect();
    // Numbered from 0 again below; their rows already hold the result.
    inboxes.extend(created.iter().map(|user| (user.clone(), Inbox::default())));
    let raced = new_users
        .into_iter()
        .filter(|u| !created.contains(*u))
        .collect();
    Ok((fresh.counts_of(&created), raced))
}

/// The inbox state of users getting their first notification, as this
/// transaction leaves it: each one's prepared notifications numbered from
/// 1 and counted (the unmuted ones unread and unseen), the version moved
/// once if any was numbered (as the counter update moves it for everyone
/// else). Expired ones take no number.
struct FreshInboxes<'a> {
    columns: InboxColumns<'a>,
    versions: Vec<i64>,
    /// Each user's state, in the order of `columns.users`.
    inboxes: Vec<Inbox>,
}

impl<'a> FreshInboxes<'a> {
    fn of(users: &[&'a str], prepared: &[Prepared], now: DateTime<Utc>) -> Self {
        let mut inboxes: HashMap<&str, Inbox> =
            users.iter().map(|u| (*u, Inbox::default())).collect();
        for p in prepared {
            let notification = &p.notification;
            if notification.is_expired_at(now) {
                continue;
            }
            if let Some(inbox) = inboxes.get_mut(notification.user_id.as_str()) {
                inbox.last_seq += 1;
                counts::add_stored(&mut inbox.counts, notification.category.as_deref(), p.muted);
            }
        }
        let mut fresh = Self {
            columns: InboxColumns::default(),
            versions: Vec::with_capacity(users.len()),
            inboxes: Vec::with_capacity(users.len()),
        };
        for user in users {
            let inbox = inboxes.remove(user).unwrap_or_default();
            fresh.columns.push(user, &inbox);
            fresh.versions.push(i64::from(inbox.last_seq > 0));
            fresh.inboxes.push(inbox);
        }
        fresh
    }

    /// The state of the rows this transaction created.
    fn counts_of(self, created: &HashSet<String>) -> Counts {
        self.columns
            .users
            .iter()
            .zip(self.inboxes.into_iter().zip(self.versions))
            .filter(|(user, _)| created.contains(**user))
            .map(|(user, (inbox, version))| {
                let counts = InboxCounts {
                    counts: inbox.counts,
                    version,
                };
                ((*user).to_owned(), counts)
            })
            .collect()
    }
}

/// The rows to insert, numbered.
struct Numbered<'p> {
    rows: Vec<NotificationInsert<'p>>,
    /// Users whose inbox existed before this round and got a number.
    moved: HashSet<&'p str>,
    /// Ids stored as expired: no `seq`, not counted, not published.
    expired: HashSet<Uuid>,
}

/// Numbers each user's new rows after their `last_seq` and counts them
/// (moving `inboxes`), in batch order; expired ones take no number. Muted
/// ones take a number but are not counted.
fn number<'p>(
    prepared: &'p [Prepared],
    inboxes: &mut Inboxes,
    created: &Counts,
    now: DateTime<Utc>,
) -> Result<Numbered<'p>, DbError> {
    let mut numbered = Numbered {
        rows: Vec::with_capacity(prepared.len()),
        moved: HashSet::new(),
        expired: HashSet::new(),
    };
    for p in prepared {
        let notification = &p.notification;
        if notification.is_expired_at(now) {
            numbered.expired.insert(notification.id);
            numbered.rows.push(NotificationInsert::new(p, None));
            continue;
        }
        let user = notification.user_id.as_str();
        // Every user of the batch was locked or created above.
        let Some(inbox) = inboxes.get_mut(user) else {
            return Err(diesel::result::Error::NotFound.into());
        };
        inbox.last_seq += 1;
        // Rows created above already hold their final state.
        if !created.contains_key(user) {
            counts::add_stored(&mut inbox.counts, notification.category.as_deref(), p.muted);
            numbered.moved.insert(user);
        }
        numbered
            .rows
            .push(NotificationInsert::new(p, Some(inbox.last_seq)));
    }
    Ok(numbered)
}

/// Last round trip: the rows, the counters of users whose inbox existed,
/// the redelivered notifications read back (to publish them as stored),
/// and `COMMIT`. Answers the redelivered ones, and the counters after it.
async fn write_and_commit(
    conn: &AsyncPgConnection,
    numbered: &Numbered<'_>,
    inboxes: &Inboxes,
    earlier: &Keys<'_>,
) -> Result<(Vec<Notification>, Counts), DbError> {
    let mut columns = InboxColumns::default();
    for user in &numbered.moved {
        columns.push(user, &inboxes[*user]);
    }
    // Every answer is awaited, and the first failure in the order sent is
    // the one reported: the statements after a failed one fail only
    // because the transaction is aborted, and their answers may be polled
    // first. A refused copy must be told from those (see
    // [`is_a_stored_copy`]).
    let (inserted, versions, earlier, committed) = join4(
        insert_rows(conn, &numbered.rows),
        advance_inboxes(conn, &columns),
        load_visible(conn, earlier),
        pipelined_tx::commit(conn),
    )
    .await;
    inserted?;
    let (versions, earlier) = (versions?, earlier?);
    committed?;
    let counts = versions
        .into_iter()
        .map(|(user, version)| {
            let counts = inboxes[&user].counts.clone();
            (user, InboxCounts { counts, version })
        })
        .collect();
    Ok((earlier, counts))
}
