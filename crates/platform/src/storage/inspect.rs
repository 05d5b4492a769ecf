//! Reads only tests need, to check Herald's promises against the rows
//! themselves (built with the `test-support` feature only).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Counts, Notification};
use uuid::Uuid;

use super::schema::notifications;
use crate::db::DbError;

/// Every stored notification id: what was accepted, compared with what was stored.
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
    // Every `seq` is 1 or more.
    super::inbox::after(conn, user_id, 0, i64::MAX).await
}

/// Unread rows counted the slow way, to check `unread_count` against in tests.
pub async fn count_unread_rows(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<i64, DbError> {
    Ok(recount(conn, user_id).await?.unread)
}

/// A user's counts recounted from the rows (see [`super::counts`]), to
/// check the kept ones against in tests.
pub async fn recount(conn: &mut AsyncPgConnection, user_id: &str) -> Result<Counts, DbError> {
    // Counted the slow way, from the definition: listed, neither archived
    // nor in a category muted now, unread; unseen if not marked seen either.
    let muted = super::preferences::get(conn, user_id)
        .await?
        .muted_categories;
    let rows: Vec<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::seq.is_not_null())
        .filter(notifications::expired.eq(false))
        .filter(notifications::snoozed_until.is_null())
        .filter(notifications::archived_at.is_null())
        .filter(notifications::read_at.is_null())
        .select((notifications::category, notifications::seen_at))
        .load(conn)
        .await?;
    let mut counts = Counts::default();
    for (category, seen_at) in rows {
        if category.as_ref().is_some_and(|c| muted.contains(c)) {
            continue;
        }
        counts.add(category.as_deref(), 1, i64::from(seen_at.is_none()));
    }
    Ok(counts)
}

/// Every table holding a row that mentions `needle` anywhere (any column,
/// as the row reads as text), with how many rows: what an erasure must
/// leave empty.
pub async fn tables_mentioning(
    conn: &mut AsyncPgConnection,
    needle: &str,
) -> Result<Vec<(String, i64)>, DbError> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .load(conn)
    .await?;
    let mut mentioning = Vec::new();
    for table in tables {
        let quoted = table.name.replace('"', "\"\"");
        let count: Count = diesel::sql_query(format!(
            "SELECT count(*) AS rows FROM \"{quoted}\" AS r WHERE strpos(r::text, $1) > 0"
        ))
        .bind::<diesel::sql_types::Text, _>(needle)
        .get_result(conn)
        .await?;
        if count.rows > 0 {
            mentioning.push((table.name, count.rows));
        }
    }
    Ok(mentioning)
}
