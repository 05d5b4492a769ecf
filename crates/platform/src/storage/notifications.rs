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
//! Round trips: BEGIN + locks + duplicate check + preferences, then rows +
//! counters + COMMIT, each pipelined (see [`super::pipelined_tx`]). A
//! user's inbox row is created the first time the user gets a notification,
//! already in the state the transaction leaves it in (one more round trip
//! for such batches, no update of the new row; those users are locked after
//! the others: two such transactions can, rarely, deadlock; PostgreSQL
//! aborts one and the worker tries its round again).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::DatabaseErrorKind;
use diesel::serialize::ToSql;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Preferences;
use domain::{NewNotification, Notification};
use futures_util::future::{try_join, try_join3, try_join4};
use uuid::Uuid;

use super::models::{NotificationInsert, NotificationRow};
use super::schema::{notifications, user_inbox};
use super::{pipelined_tx, preferences};
use crate::db::DbError;

/// The batch insert: one array per column, so the statement text is the
/// same for every batch size and a batch is not limited by PostgreSQL's
/// 65,535 bind parameters. Written as its own query type, not `sql_query`:
/// diesel never caches a `sql_query` statement, so it would be prepared
/// again (one more round trip) on every call; this one is prepared once
/// per connection.
struct InsertUnnest<'r> {
    columns: InsertColumns<'r>,
}

/// Binds one array parameter followed by `sql` (its cast and separator).
fn bind_array<'b, ST: 'static, T>(
    out: &mut AstPass<'_, 'b, Pg>,
    values: &'b [T],
    sql: &str,
) -> QueryResult<()>
where
    Pg: diesel::sql_types::HasSqlType<Array<ST>>,
    [T]: ToSql<Array<ST>, Pg>,
{
    out.push_bind_param::<Array<ST>, [T]>(values)?;
    out.push_sql(sql);
    Ok(())
}

/// The columns of an [`InsertUnnest`], one vector each.
struct InsertColumns<'r> {
    id: Vec<Uuid>,
    user_id: Vec<&'r str>,
    seq: Vec<Option<i64>>,
    title: Vec<&'r str>,
    body: Vec<&'r str>,
    priority: Vec<&'r str>,
    category: Vec<Option<&'r str>>,
    data: Vec<Option<&'r serde_json::Value>>,
    created_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    expired: Vec<bool>,
    locale: Vec<Option<&'r str>>,
    template_key: Vec<Option<&'r str>>,
    template_version: Vec<Option<i32>>,
    params: Vec<Option<&'r serde_json::Value>>,
    muted: Vec<bool>,
}

impl<'r> InsertColumns<'r> {
    fn of(rows: &'r [NotificationInsert<'_>]) -> Self {
        fn column<'r, 'a: 'r, T>(
            rows: &'r [NotificationInsert<'a>],
            f: impl Fn(&'r NotificationInsert<'a>) -> T,
        ) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        Self {
            id: column(rows, |r| r.id),
            user_id: column(rows, |r| r.user_id),
            seq: column(rows, |r| r.seq),
            title: column(rows, |r| r.title),
            body: column(rows, |r| r.body),
            priority: column(rows, |r| r.priority),
            category: column(rows, |r| r.category),
            data: column(rows, |r| r.data.as_ref()),
            created_at: column(rows, |r| r.created_at),
            expires_at: column(rows, |r| r.expires_at),
            expired: column(rows, |r| r.expired),
            locale: column(rows, |r| r.locale),
            template_key: column(rows, |r| r.template_key),
            template_version: column(rows, |r| r.template_version),
            params: column(rows, |r| r.params.as_ref()),
            muted: column(rows, |r| r.muted),
        }
    }
}

impl QueryFragment<Pg> for InsertUnnest<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let c = &self.columns;
        out.push_sql(
            "INSERT INTO notifications (id, user_id, seq, title, body, priority, category, data, \
             created_at, expires_at, expired, locale, template_key, template_version, params, muted) \
             SELECT * FROM unnest(",
        );
        bind_array::<SqlUuid, _>(&mut out, &c.id, "::uuid[], ")?;
        bind_array::<Text, _>(&mut out, &c.user_id, "::text[], ")?;
        bind_array::<Nullable<BigInt>, _>(&mut out, &c.seq, "::int8[], ")?;
        bind_array::<Text, _>(&mut out, &c.title, "::text[], ")?;
        bind_array::<Text, _>(&mut out, &c.body, "::text[], ")?;
        bind_array::<Text, _>(&mut out, &c.priority, "::text[], ")?;
        bind_array::<Nullable<Text>, _>(&mut out, &c.category, "::text[], ")?;
        bind_array::<Nullable<Jsonb>, _>(&mut out, &c.data, "::jsonb[], ")?;
        bind_array::<Timestamptz, _>(&mut out, &c.created_at, "::timestamptz[], ")?;
        bind_array::<Nullable<Timestamptz>, _>(&mut out, &c.expires_at, "::timestamptz[], ")?;
        bind_array::<Bool, _>(&mut out, &c.expired, "::bool[], ")?;
        bind_array::<Nullable<Text>, _>(&mut out, &c.locale, "::text[], ")?;
        bind_array::<Nullable<Text>, _>(&mut out, &c.template_key, "::text[], ")?;
        bind_array::<Nullable<Integer>, _>(&mut out, &c.template_version, "::int4[], ")?;
        bind_array::<Nullable<Jsonb>, _>(&mut out, &c.params, "::jsonb[], ")?;
        bind_array::<Bool, _>(&mut out, &c.muted, "::bool[])")?;
        Ok(())
    }
}

/// Keyed by its SQL text in the statement cache (which this type allows,
/// unlike `sql_query`): the text is the same for every batch.
impl QueryId for InsertUnnest<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// Moves each user's `last_seq` and unread count past the rows just
/// inserted; cached like [`InsertUnnest`].
struct AdvanceInboxes<'a> {
    users: &'a [String],
    last_seqs: &'a [i64],
    added: &'a [i64],
}

impl QueryFragment<Pg> for AdvanceInboxes<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "UPDATE user_inbox AS u \
             SET last_seq = d.last_seq, unread_count = u.unread_count + d.added, version = u.version + 1 \
             FROM unnest(",
        );
        bind_array::<Text, _>(&mut out, self.users, "::text[], ")?;
        bind_array::<BigInt, _>(&mut out, self.last_seqs, "::bigint[], ")?;
        bind_array::<BigInt, _>(
            &mut out,
            self.added,
            "::bigint[]) AS d(user_id, last_seq, added) WHERE u.user_id = d.user_id",
        )?;
        Ok(())
    }
}

impl QueryId for AdvanceInboxes<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// Creates the inbox rows of users getting their first notification, with
/// their state after this transaction (so they need no update), and returns
/// the users whose row this transaction created (not those another one
/// created first); cached like [`InsertUnnest`] (a `sql_query` would be
/// prepared again, one more round trip, every time).
struct CreateInboxes<'a> {
    users: &'a [&'a str],
    last_seqs: &'a [i64],
    unread: &'a [i64],
    versions: &'a [i64],
}

impl QueryFragment<Pg> for CreateInboxes<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO user_inbox (user_id, last_seq, unread_count, version) SELECT * FROM unnest(",
        );
        bind_array::<Text, _>(&mut out, self.users, "::text[], ")?;
        bind_array::<BigInt, _>(&mut out, self.last_seqs, "::bigint[], ")?;
        bind_array::<BigInt, _>(&mut out, self.unread, "::bigint[], ")?;
        bind_array::<BigInt, _>(
            &mut out,
            self.versions,
            "::bigint[]) ON CONFLICT DO NOTHING RETURNING user_id",
        )
    }
}

impl Query for CreateInboxes<'_> {
    type SqlType = Text;
}

impl QueryId for CreateInboxes<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// The inbox state of users getting their first notification, as this
/// transaction leaves it: each one's prepared notifications numbered from
/// 1, the unmuted ones unread, the version moved once if any was numbered
/// (as [`AdvanceInboxes`] moves it for everyone else). Expired ones take no
/// number.
struct FreshInboxes {
    last_seqs: Vec<i64>,
    unread: Vec<i64>,
    versions: Vec<i64>,
}

impl FreshInboxes {
    fn of(users: &[&str], prepared: &[Prepared], now: DateTime<Utc>) -> Self {
        let mut counts: HashMap<&str, (i64, i64)> = users.iter().map(|u| (*u, (0, 0))).collect();
        for p in prepared {
            let notification = &p.notification;
            if notification.is_expired_at(now) {
                continue;
            }
            if let Some((seq, unread)) = counts.get_mut(notification.user_id.as_str()) {
                *seq += 1;
                *unread += i64::from(!p.muted);
            }
        }
        let (last_seqs, unread): (Vec<i64>, Vec<i64>) = users.iter().map(|u| counts[u]).unzip();
        let versions = last_seqs.iter().map(|&seq| i64::from(seq > 0)).collect();
        Self {
            last_seqs,
            unread,
            versions,
        }
    }
}

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
}

impl StoredBatch {
    /// Adds another batch's outcome to this one.
    pub fn merge(&mut self, other: StoredBatch) {
        self.visible.extend(other.visible);
        self.inserted += other.inserted;
        self.duplicates.extend(other.duplicates);
        self.expired.extend(other.expired);
    }
}

/// A notification ready to store: rendered (title and body filled in), with
/// the locale it was rendered in and whether the user muted its category.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub notification: NewNotification,
    pub locale: Option<String>,
    pub muted: bool,
}

impl From<NewNotification> for Prepared {
    fn from(notification: NewNotification) -> Self {
        Self {
            notification,
            locale: None,
            muted: false,
        }
    }
}

/// Stores plain notifications (see [`store_preparing`]).
pub async fn store_batch(
    conn: &mut AsyncPgConnection,
    batch: &[NewNotification],
    now: DateTime<Utc>,
) -> Result<StoredBatch, DbError> {
    let notifications: Vec<&NewNotification> = batch.iter().collect();
    let (stored, _) = store_preparing(conn, &notifications, now, |i, _| {
        Ok(Prepared::from(batch[i].clone()))
    })
    .await?;
    Ok(stored)
}

/// Stores notifications prepared beforehand (see [`store_preparing`]).
pub async fn store_prepared(
    conn: &mut AsyncPgConnection,
    batch: &[Prepared],
    now: DateTime<Utc>,
) -> Result<StoredBatch, DbError> {
    let notifications: Vec<&NewNotification> = batch.iter().map(|p| &p.notification).collect();
    let (stored, _) =
        store_preparing(conn, &notifications, now, |i, _| Ok(batch[i].clone())).await?;
    Ok(stored)
}

/// A notification `prepare` refused: its index in the batch, and why.
pub type Unprepared = (usize, String);

/// Stores a batch in one transaction. Duplicate ids inside the batch, and
/// ids stored earlier, are stored once. Muted ones take their `seq` but are
/// not counted unread (and are not among `visible`).
///
/// `prepare` turns the notification at an index into what is stored, given
/// its user's preferences (read in the transaction's first round trip, with
/// the locks). It is called once per id not found stored then (in the rare
/// race on a new user's inbox row, also for ids the other transaction had
/// just stored: those are then dropped as duplicates); one it refuses is
/// not stored, and every index of the batch with that id is returned with
/// the reason. It must have no side effects.
///
/// Round trips: BEGIN + locks + duplicate check + preferences, then the
/// rows + counters + read-back of redelivered ones + COMMIT (see
/// [`pipelined_tx`]); batches with first-time users take one more (their
/// inbox rows are created), and one more again in the rare case another
/// transaction created one of those rows first (it is then locked and its
/// user's ids checked).
pub async fn store_preparing(
    conn: &mut AsyncPgConnection,
    batch: &[&NewNotification],
    now: DateTime<Utc>,
    prepare: impl Fn(usize, Option<&Preferences>) -> Result<Prepared, String>,
) -> Result<(StoredBatch, Vec<Unprepared>), DbError> {
    if batch.is_empty() {
        return Ok((StoredBatch::default(), Vec::new()));
    }
    let stored = pipelined_tx::run(conn, async |conn| {
        store_in_tx(conn, batch, now, &prepare).await
    })
    .await?;
    Ok(stored)
}

async fn store_in_tx(
    conn: &AsyncPgConnection,
    batch: &[&NewNotification],
    now: DateTime<Utc>,
    prepare: &impl Fn(usize, Option<&Preferences>) -> Result<Prepared, String>,
) -> Result<(StoredBatch, Vec<Unprepared>), diesel::result::Error> {
    let mut users: Vec<&str> = batch.iter().map(|n| n.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let ids: Vec<Uuid> = batch.iter().map(|n| n.id).collect();

    let ((), (mut last_seq, mut already_stored), preferences) = try_join3(
        pipelined_tx::begin(conn),
        lock_and_check(conn, &users, &ids),
        preferences::load_many(conn, &users),
    )
    .await?;
    let mut outcome = StoredBatch::default();
    let mut refused: HashMap<Uuid, String> = HashMap::new();
    let mut seen = HashSet::with_capacity(batch.len());
    let mut prepared = Vec::with_capacity(batch.len());
    for (index, notification) in batch.iter().enumerate() {
        if !seen.insert(notification.id) {
            continue;
        }
        if already_stored.contains(&notification.id) {
            outcome.duplicates.insert(notification.id);
            continue;
        }
        match prepare(index, preferences.get(&notification.user_id)) {
            Ok(p) => prepared.push(p),
            Err(reason) => {
                refused.insert(notification.id, reason);
            }
        }
    }

    // Users getting their first notification: their inbox rows are created
    // with the state this transaction leaves them in. A row this
    // transaction created is locked by it, and none of that user's
    // notifications can be stored yet (storing one takes the row's lock
    // first), so their ids need no second check and the state counts every
    // one prepared. A row another transaction created meanwhile (ours
    // waited for it to commit in the insert) is locked and checked like any
    // other: that transaction may have stored one of these ids (if one of
    // them was also counted in a created row, the round starts over, below).
    let mut created: HashSet<String> = HashSet::new();
    if last_seq.len() < users.len() {
        let new_users: Vec<&str> = users
            .iter()
            .copied()
            .filter(|u| !last_seq.contains_key(*u))
            .collect();
        let fresh = FreshInboxes::of(&new_users, &prepared, now);
        let mut shared = conn;
        created = CreateInboxes {
            users: &new_users,
            last_seqs: &fresh.last_seqs,
            unread: &fresh.unread,
            versions: &fresh.versions,
        }
        .load::<String>(&mut shared)
        .await?
        .into_iter()
        .collect();
        let raced: Vec<&str> = new_users
            .into_iter()
            .filter(|u| !created.contains(*u))
            .collect();
        last_seq.extend(created.iter().map(|user| (user.clone(), 0)));
        if !raced.is_empty() {
            let raced_ids: Vec<Uuid> = batch
                .iter()
                .filter(|n| raced.contains(&n.user_id.as_str()))
                .map(|n| n.id)
                .collect();
            let (locked, stored) = lock_and_check(conn, &raced, &raced_ids).await?;
            // One id under two users in the batch, stored by the other
            // transaction under the raced one: the row created above already
            // counts it for the other user. Start over; the next attempt
            // finds the id stored in its first round trip.
            if prepared.iter().any(|p| {
                stored.contains(&p.notification.id)
                    && created.contains(p.notification.user_id.as_str())
            }) {
                return Err(diesel::result::Error::DatabaseError(
                    DatabaseErrorKind::SerializationFailure,
                    Box::new("a concurrent round stored an id counted in a new inbox".to_owned()),
                ));
            }
            last_seq.extend(locked);
            // Stored by the other transaction: duplicates, not stored or refused again.
            prepared.retain(|p| !stored.contains(&p.notification.id));
            refused.retain(|id, _| !stored.contains(id));
            outcome.duplicates.extend(stored.iter().copied());
            already_stored.extend(stored);
        }
    }

    // Every copy of a refused id is refused, not only the one prepared.
    let unprepared: Vec<Unprepared> = batch
        .iter()
        .enumerate()
        .filter_map(|(index, n)| refused.get(&n.id).map(|reason| (index, reason.clone())))
        .collect();
    let mut inserts = Vec::with_capacity(prepared.len());
    let mut added: HashMap<&str, i64> = HashMap::new();
    for p in &prepared {
        let notification = &p.notification;
        if notification.is_expired_at(now) {
            outcome.expired.insert(notification.id);
            inserts.push(NotificationInsert::new(p, None));
            continue;
        }
        let user = notification.user_id.as_str();
        let Some(seq) = last_seq.get_mut(user) else {
            return Err(diesel::result::Error::NotFound);
        };
        *seq += 1;
        // Rows created above already hold their final state.
        if !created.contains(user) {
            let unread = added.entry(user).or_default();
            if !p.muted {
                *unread += 1;
            }
        }
        inserts.push(NotificationInsert::new(p, Some(*seq)));
    }
    outcome.inserted = inserts.len();
    // The rows, the counters, the redelivered rows and the COMMIT in one
    // round trip (the server still runs them one after the other).
    let (names, counts): (Vec<String>, Vec<i64>) =
        added.iter().map(|(u, n)| ((*u).to_owned(), *n)).unzip();
    let seqs: Vec<i64> = names.iter().map(|u| last_seq[u.as_str()]).collect();
    let earlier: Vec<Uuid> = already_stored.iter().copied().collect();
    let ((), (), earlier, ()) = try_join4(
        insert_rows(conn, &inserts),
        advance_inboxes(conn, &names, &seqs, &counts),
        load_visible(conn, &earlier),
        pipelined_tx::commit(conn),
    )
    .await?;

    // New rows are published as inserted; a redelivered one as it was stored then.
    let mut by_id: HashMap<Uuid, Notification> = inserts
        .iter()
        .filter_map(NotificationInsert::to_visible)
        .map(|n| (n.id, n))
        .collect();
    by_id.extend(earlier.into_iter().map(|n| (n.id, n)));
    outcome.visible = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok((outcome, unprepared))
}

/// Stored notifications by id, as published: not expired and not muted.
async fn load_visible(
    mut conn: &AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<Notification>, diesel::result::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(notifications::table
        .filter(notifications::id.eq_any(ids))
        .select(NotificationRow::as_select())
        .load::<NotificationRow>(&mut conn)
        .await?
        .into_iter()
        .filter_map(NotificationRow::into_visible)
        .filter(|n| !n.muted)
        .collect())
}

/// Locks the `user_inbox` rows of `users` (in user-id order, so that two
/// transactions with overlapping users cannot deadlock) and finds which of
/// `ids` are stored already, pipelined. They run in this order even when
/// one of them still has to be prepared (see [`pipelined_tx`]), so the
/// check runs with the locks held, and with the users locked no other
/// transaction can be storing these ids (an id belongs to one user): the
/// check is exact. Were it ever not, the primary key would refuse the
/// second copy and the round would be tried again.
async fn lock_and_check(
    mut conn: &AsyncPgConnection,
    users: &[&str],
    ids: &[Uuid],
) -> Result<(HashMap<String, i64>, HashSet<Uuid>), diesel::result::Error> {
    let locked = user_inbox::table
        .filter(user_inbox::user_id.eq_any(users))
        .order(user_inbox::user_id)
        .select((user_inbox::user_id, user_inbox::last_seq))
        .for_update()
        .load::<(String, i64)>(&mut conn);
    let stored = notifications::table
        .filter(notifications::id.eq_any(ids))
        .select(notifications::id)
        .load::<Uuid>(&mut conn);
    let (locked, stored) = try_join(locked, stored).await?;
    Ok((locked.into_iter().collect(), stored.into_iter().collect()))
}

/// Moves each user's `last_seq` and unread count past the rows just inserted.
async fn advance_inboxes(
    mut conn: &AsyncPgConnection,
    users: &[String],
    last_seqs: &[i64],
    added: &[i64],
) -> Result<(), diesel::result::Error> {
    if users.is_empty() {
        return Ok(());
    }
    AdvanceInboxes {
        users,
        last_seqs,
        added,
    }
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Inserts the rows with [`InsertUnnest`].
async fn insert_rows(
    mut conn: &AsyncPgConnection,
    rows: &[NotificationInsert<'_>],
) -> Result<(), diesel::result::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    InsertUnnest {
        columns: InsertColumns::of(rows),
    }
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Ids of every notification stored for a user, expired ones included.
pub async fn ids_for_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<Uuid>, DbError> {
    Ok(notifications::table
        .filter(notifications::user_id.eq(user_id))
        .order(notifications::id.asc())
        .select(notifications::id)
        .load(conn)
        .await?)
}

/// Every stored notification id, for tests that compare what was accepted
/// with what was stored.
pub async fn all_ids(conn: &mut AsyncPgConnection) -> Result<Vec<Uuid>, DbError> {
    Ok(notifications::table
        .select(notifications::id)
        .load(conn)
        .await?)
}

/// How many notifications a user has stored (expired ones included).
pub async fn count_for_user(conn: &mut AsyncPgConnection, user_id: &str) -> Result<i64, DbError> {
    Ok(notifications::table
        .filter(notifications::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await?)
}

/// Every visible notification of a user in `seq` order.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<Notification>, DbError> {
    Ok(notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .order(notifications::seq.asc())
        .select(NotificationRow::as_select())
        .load::<NotificationRow>(conn)
        .await?
        .into_iter()
        .filter_map(NotificationRow::into_visible)
        .collect())
}
