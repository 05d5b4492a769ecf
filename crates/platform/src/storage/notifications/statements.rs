//! The statements of storing a batch: array-bound inserts and updates whose
//! text is the same for every batch size (prepared once per connection and
//! kept in diesel's statement cache), and the locking reads.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{InboxCounts, Notification};
use futures_util::future::try_join;
use uuid::Uuid;

use crate::storage::models::{NotificationInsert, NotificationRow};
use crate::storage::schema::{notifications, user_inbox};

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
/// inserted, and answers each one's state after it (for the live frames);
/// cached like [`InsertUnnest`].
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
            "::bigint[]) AS d(user_id, last_seq, added) WHERE u.user_id = d.user_id \
             RETURNING u.user_id, u.unread_count, u.version",
        )?;
        Ok(())
    }
}

impl Query for AdvanceInboxes<'_> {
    type SqlType = (Text, BigInt, BigInt);
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
pub(super) struct CreateInboxes<'a> {
    pub users: &'a [&'a str],
    pub last_seqs: &'a [i64],
    pub unread: &'a [i64],
    pub versions: &'a [i64],
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

/// Stored notifications by id, as published: not expired and not muted.
pub(super) async fn load_visible(
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
/// one of them still has to be prepared (see [`crate::storage::pipelined_tx`]), so the
/// check runs with the locks held, and with the users locked no other
/// transaction can be storing these ids (an id belongs to one user): the
/// check is exact. Were it ever not, the primary key would refuse the
/// second copy and the round would be tried again.
pub(super) async fn lock_and_check(
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

/// Moves each user's `last_seq` and unread count past the rows just
/// inserted; answers each user's `(unread, version)` after it.
pub(super) async fn advance_inboxes(
    mut conn: &AsyncPgConnection,
    users: &[String],
    last_seqs: &[i64],
    added: &[i64],
) -> Result<HashMap<String, InboxCounts>, diesel::result::Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = AdvanceInboxes {
        users,
        last_seqs,
        added,
    }
    .load::<(String, i64, i64)>(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, unread, version)| (user, InboxCounts { unread, version }))
        .collect())
}

/// Inserts the rows with [`InsertUnnest`].
pub(super) async fn insert_rows(
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
