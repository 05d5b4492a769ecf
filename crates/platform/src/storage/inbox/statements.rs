//! Statements of the inbox that diesel's query builder would not let
//! PostgreSQL keep prepared: the two `UPDATE`s of every state change
//! (diesel's own `UPDATE` is never kept in the statement cache:
//! `UpdateStatement` marks itself unsafe to cache, so it would be parsed
//! again at every change; these have a fixed text per change kind and are
//! cached by it, like the storing round's statements), and a literal the
//! resume's query needs for its index.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use uuid::Uuid;

/// Writes a user's counts (locked by the caller's transaction) and bumps
/// `version`, answering the new one; with `trimmed_through`, retention's
/// floor in the same write.
pub(super) struct WriteCounts<'a> {
    pub user_id: &'a str,
    pub unread: i64,
    pub unseen: i64,
    pub by_category: serde_json::Value,
    pub trimmed_through: Option<i64>,
}

impl QueryFragment<Pg> for WriteCounts<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE user_inbox SET unread_count = ");
        out.push_bind_param::<BigInt, _>(&self.unread)?;
        out.push_sql(", unseen_count = ");
        out.push_bind_param::<BigInt, _>(&self.unseen)?;
        out.push_sql(", by_category = ");
        out.push_bind_param::<Jsonb, _>(&self.by_category)?;
        if let Some(seq) = &self.trimmed_through {
            out.push_sql(", trimmed_through = ");
            out.push_bind_param::<BigInt, _>(seq)?;
        }
        out.push_sql(", version = version + 1 WHERE user_id = ");
        out.push_bind_param::<Text, _>(self.user_id)?;
        out.push_sql(" RETURNING version");
        Ok(())
    }
}

impl Query for WriteCounts<'_> {
    type SqlType = BigInt;
}

impl QueryId for WriteCounts<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// A change of these ids of the user's (at most [`super::CHUNK`]): the
/// listed rows not in the wanted state yet, stamped with the version the
/// change makes (the locked inbox row's plus one, read by the statement
/// itself, so it may travel in the same round trip as the lock), answered
/// as the change left them (a `ChangedRow`), each with whether the user
/// mutes its category now (read by the statement too: one reply less).
pub(super) struct ChangeIds<'a> {
    pub user_id: &'a str,
    pub ids: &'a [Uuid],
    /// What the change sets, and which rows it takes (`Change::sql`): `at`
    /// follows the one that ends in `= ` (or neither).
    pub set: &'static str,
    pub wanted: &'static str,
    /// Now (read, seen, archived, woken, expired) or the snooze's end.
    pub at: DateTime<Utc>,
}

impl QueryFragment<Pg> for ChangeIds<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let (set, wanted) = (self.set, self.wanted);
        let takes_at = |sql: &str| sql.ends_with("= ");
        out.push_sql("UPDATE notifications SET ");
        out.push_sql(set);
        if takes_at(set) {
            out.push_bind_param::<Timestamptz, _>(&self.at)?;
        }
        out.push_sql(", state_version = (SELECT version + 1 FROM user_inbox WHERE user_id = ");
        out.push_bind_param::<Text, _>(self.user_id)?;
        out.push_sql(") WHERE user_id = ");
        out.push_bind_param::<Text, _>(self.user_id)?;
        out.push_sql(" AND id = ANY(");
        out.push_bind_param::<Array<diesel::sql_types::Uuid>, [Uuid]>(self.ids)?;
        out.push_sql(") AND seq IS NOT NULL AND NOT expired AND ");
        out.push_sql(wanted);
        if takes_at(wanted) {
            out.push_bind_param::<Timestamptz, _>(&self.at)?;
        }
        out.push_sql(
            " RETURNING id, seq, category, read_at, seen_at, archived_at, snoozed_until, expired, \
             COALESCE(category = ANY(COALESCE(\
             (SELECT muted_categories FROM user_preferences WHERE user_id = ",
        );
        out.push_bind_param::<Text, _>(self.user_id)?;
        out.push_sql("), '{}')), false)");
        Ok(())
    }
}

impl Query for ChangeIds<'_> {
    type SqlType = (
        (
            diesel::sql_types::Uuid,
            Nullable<BigInt>,
            Nullable<Text>,
            Nullable<Timestamptz>,
            Nullable<Timestamptz>,
            Nullable<Timestamptz>,
            Nullable<Timestamptz>,
            Bool,
        ),
        Bool,
    );
}

impl QueryId for ChangeIds<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `notifications.state_version > 0` spelled out, not bound: a plan made
/// once for every version (the gateway's, see
/// [`crate::db::Planning::OncePerConnection`]) then still proves
/// `notifications_state`'s predicate and reads only changed rows. Unlike
/// `diesel::dsl::sql`, it leaves the query cacheable.
#[derive(Debug, Clone, Copy, QueryId, diesel::expression::ValidGrouping)]
pub(super) struct StateEverChanged;

impl diesel::Expression for StateEverChanged {
    type SqlType = Bool;
}

impl<QS> diesel::AppearsOnTable<QS> for StateEverChanged {}

impl<QS> diesel::SelectableExpression<QS> for StateEverChanged {}

impl QueryFragment<Pg> for StateEverChanged {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("notifications.state_version > 0");
        Ok(())
    }
}
