//! Users' preferences.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Preferences;

use super::schema::user_preferences;
use crate::db::DbError;

type Row = (String, Option<String>, Option<String>, Vec<String>);

fn from_row((_, locale, timezone, muted_categories): Row) -> Preferences {
    Preferences {
        locale,
        timezone,
        muted_categories,
    }
}

pub async fn get(conn: &mut AsyncPgConnection, user_id: &str) -> Result<Preferences, DbError> {
    Ok(get_many(conn, &[user_id])
        .await?
        .remove(user_id)
        .unwrap_or_default())
}

/// Preferences of several users at once (users without any are absent).
pub async fn get_many(
    conn: &mut AsyncPgConnection,
    user_ids: &[&str],
) -> Result<HashMap<String, Preferences>, DbError> {
    Ok(load_many(conn, user_ids).await?)
}

/// [`get_many`] on a shared connection, to join it with other statements.
pub(crate) async fn load_many(
    mut conn: &AsyncPgConnection,
    user_ids: &[&str],
) -> QueryResult<HashMap<String, Preferences>> {
    let rows: Vec<Row> = user_preferences::table
        .filter(user_preferences::user_id.eq_any(user_ids))
        .select((
            user_preferences::user_id,
            user_preferences::locale,
            user_preferences::timezone,
            user_preferences::muted_categories,
        ))
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.0.clone(), from_row(row)))
        .collect())
}

/// Replaces a user's preferences.
pub async fn put(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    preferences: &Preferences,
) -> Result<(), DbError> {
    diesel::insert_into(user_preferences::table)
        .values((
            user_preferences::user_id.eq(user_id),
            user_preferences::locale.eq(&preferences.locale),
            user_preferences::timezone.eq(&preferences.timezone),
            user_preferences::muted_categories.eq(&preferences.muted_categories),
        ))
        .on_conflict(user_preferences::user_id)
        .do_update()
        .set((
            user_preferences::locale.eq(excluded(user_preferences::locale)),
            user_preferences::timezone.eq(excluded(user_preferences::timezone)),
            user_preferences::muted_categories.eq(excluded(user_preferences::muted_categories)),
            user_preferences::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets only the locale and time zone (what a producer may know), keeping mutes.
pub async fn set_locale(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    locale: Option<&str>,
    timezone: Option<&str>,
) -> Result<(), DbError> {
    diesel::insert_into(user_preferences::table)
        .values((
            user_preferences::user_id.eq(user_id),
            user_preferences::locale.eq(locale),
            user_preferences::timezone.eq(timezone),
        ))
        .on_conflict(user_preferences::user_id)
        .do_update()
        .set((
            user_preferences::locale.eq(excluded(user_preferences::locale)),
            user_preferences::timezone.eq(excluded(user_preferences::timezone)),
            user_preferences::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
