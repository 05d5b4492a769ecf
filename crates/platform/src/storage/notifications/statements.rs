//! The statements of storing a batch: array-bound inserts and updates whose
//! text is the same for every batch size (prepared once per connection and
//! kept in diesel's statement cache), and the locking reads.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::expression::{AppearsOnTable, Expression, ValidGrouping, is_aggregate};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Counts, NewNotification, Notification};
use uuid::Uuid;

use crate::storage::counts;
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

/// The state of users' inbox rows, one array per column, as a round
/// leaves them: their `last_seq` and counts (the counts read with the rows'
/// locks and moved by the round's rows).
#[derive(Debug, Default)]
pub(super) struct InboxColumns<'a> {
    pub users: Vec<&'a str>,
    pub last_seqs: Vec<i64>,
    pub unread: Vec<i64>,
    pub unseen: Vec<i64>,
    pub by_category: Vec<serde_json::Value>,
}

impl<'a> InboxColumns<'a> {
    pub fn push(&mut self, user: &'a str, inbox: &Inbox) {
        self.users.push(user);
        self.last_seqs.push(inbox.last_seq);
        self.unread.push(inbox.counts.unread);
        self.unseen.push(inbox.counts.unseen);
        self.by_category
            .push(counts::by_category_column(&inbox.counts));
    }

    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, last: &str) -> QueryResult<()> {
        bind_array::<Text, _>(out, &self.users, "::text[], ")?;
        bind_array::<BigInt, _>(out, &self.last_seqs, "::bigint[], ")?;
        bind_array::<BigInt, _>(out, &self.unread, "::bigint[], ")?;
        bind_array::<BigInt, _>(out, &self.unseen, "::bigint[], ")?;
        bind_array::<Jsonb, _>(out, &self.by_category, last)
    }
}

/// A user's inbox row as a round reads it with its lock, and moves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Inbox {
    pub last_seq: i64,
    pub counts: Counts,
}

/// Writes each user's `last_seq` and counts past the rows just inserted
/// and bumps `version`, answering it (for the live frames); cached like
/// [`InsertUnnest`].
struct AdvanceInboxes<'a> {
    columns: &'a InboxColumns<'a>,
}

impl QueryFragment<Pg> for AdvanceInboxes<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "UPDATE user_inbox AS u \
             SET last_seq = d.last_seq, unread_count = d.unread, unseen_count = d.unseen, \
             by_category = d.by_category, version = u.version + 1 \
             FROM unnest(",
        );
        self.columns.bind(
            &mut out,
            "::jsonb[]) AS d(user_id, last_seq, unread, unseen, by_category) \
             WHERE u.user_id = d.user_id RETURNING u.user_id, u.version",
        )
    }
}

impl Query for AdvanceInboxes<'_> {
    type SqlType = (Text, BigInt);
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
    pub columns: &'a InboxColumns<'a>,
    pub versions: &'a [i64],
}

impl QueryFragment<Pg> for CreateInboxes<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO user_inbox \
             (user_id, last_seq, unread_count, unseen_count, by_category, version) \
             SELECT * FROM unnest(",
        );
        self.columns.bind(&mut out, "::jsonb[], ")?;
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

/// The `(user_id, id)` pairs of some notifications, as two parallel
/// columns: how every lookup of stored notifications by id names them, so
/// each is one probe of the primary key `(id, user_id)` (and, with the
/// table distributed by `user_id`, names the node that holds it).
#[derive(Debug, Default)]
pub(super) struct Keys<'a> {
    users: Vec<&'a str>,
    ids: Vec<Uuid>,
}

impl<'a> Keys<'a> {
    /// The keys of the notifications for which `wanted` holds.
    pub fn of(batch: &[&'a NewNotification], wanted: impl Fn(&NewNotification) -> bool) -> Self {
        let (users, ids) = batch
            .iter()
            .filter(|n| wanted(n))
            .map(|n| (n.user_id.as_str(), n.id))
            .unzip();
        Self { users, ids }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// `(user_id, id) IN (...)`, as a filter on `notifications`.
    fn matched(&self) -> KeysIn<'_> {
        KeysIn { keys: self }
    }
}

/// The filter of [`Keys::matched`]: one array per key column, so its text
/// is the same for any number of keys and it is prepared once per
/// connection (diesel's `sql` literals never are). Not `id = ANY($ids)`:
/// the primary key has two columns, so without statistics (a new table,
/// autovacuum off) PostgreSQL cannot know ids are unique and plans a
/// sequential scan for a round's few hundred; the pairs are probed
/// through the primary key whatever the statistics say.
struct KeysIn<'a> {
    keys: &'a Keys<'a>,
}

impl Expression for KeysIn<'_> {
    type SqlType = Bool;
}

impl AppearsOnTable<notifications::table> for KeysIn<'_> {}

impl ValidGrouping<()> for KeysIn<'_> {
    type IsAggregate = is_aggregate::No;
}

impl QueryFragment<Pg> for KeysIn<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("(notifications.user_id, notifications.id) IN (SELECT * FROM unnest(");
        bind_array::<Text, _>(&mut out, &self.keys.users, "::text[], ")?;
        bind_array::<SqlUuid, _>(&mut out, &self.keys.ids, "::uuid[]))")
    }
}

impl QueryId for KeysIn<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// Stored notifications by key, as published: not expired and not muted.
pub(super) async fn load_visible(
    mut conn: &AsyncPgConnection,
    keys: &Keys<'_>,
) -> Result<Vec<Notification>, diesel::result::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(notifications::table
        .filter(keys.matched())
        .select(NotificationRow::as_select())
        .load::<NotificationRow>(&mut conn)
        .await?
        .into_iter()
        .filter_map(NotificationRow::into_visible)
        .filter(|n| !n.muted)
        .collect())
}

/// Locks the `user_inbox` rows of `users`, in user-id order, so that two
/// transactions with overlapping users cannot deadlock; answers each one's
/// `last_seq` and counts.
pub(super) async fn lock(
    mut conn: &AsyncPgConnection,
    users: &[&str],
) -> Result<HashMap<String, Inbox>, diesel::result::Error> {
    let locked = user_inbox::table
        .filter(user_inbox::user_id.eq_any(users))
        .order(user_inbox::user_id)
        .select((
            user_inbox::user_id,
            user_inbox::last_seq,
            (
                user_inbox::unread_count,
                user_inbox::unseen_count,
                user_inbox::by_category,
            ),
        ))
        .for_update()
        .load::<(String, i64, counts::Columns)>(&mut conn)
        .await?;
    locked
        .into_iter()
        .map(|(user, last_seq, columns)| {
            let counts = counts::from_columns(columns)?;
            Ok((user, Inbox { last_seq, counts }))
        })
        .collect()
}

/// Which of `keys` are stored already. Joined after [`lock`] of their
/// users, it runs with the locks held even when it still has to be
/// prepared (see [`crate::storage::pipelined_tx`]), and with the users
/// locked no other transaction can be storing these keys: the check is
/// exact.
pub(super) async fn already_stored(
    mut conn: &AsyncPgConnection,
    keys: &Keys<'_>,
) -> Result<Vec<(Uuid, String)>, diesel::result::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    notifications::table
        .filter(keys.matched())
        .select((notifications::id, notifications::user_id))
        .load(&mut conn)
        .await
}

/// Writes the users' inbox rows as `columns` says; answers each user's
/// `version` after it.
pub(super) async fn advance_inboxes(
    mut conn: &AsyncPgConnection,
    columns: &InboxColumns<'_>,
) -> Result<HashMap<String, i64>, diesel::result::Error> {
    if columns.users.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = AdvanceInboxes { columns }
        .load::<(String, i64)>(&mut conn)
        .await?;
    Ok(rows.into_iter().collect())
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
