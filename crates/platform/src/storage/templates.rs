//! Template versions. Versions are immutable: an edit inserts the next
//! version; notifications pin the version they were accepted with. Deleting
//! a key hides it from new notifications; queued ones still render.

use ::templates::TemplateSource;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::schema::templates;
use crate::db::DbError;

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredTemplate {
    pub key: String,
    pub version: i32,
    pub source: TemplateSource,
    pub created_at: DateTime<Utc>,
}

type Row = (String, i32, serde_json::Value, DateTime<Utc>);

/// The columns of a [`Row`].
const ROW: (
    templates::key,
    templates::version,
    templates::source,
    templates::created_at,
) = (
    templates::key,
    templates::version,
    templates::source,
    templates::created_at,
);

fn from_row((key, version, source, created_at): Row) -> Option<StoredTemplate> {
    Some(StoredTemplate {
        key,
        version,
        source: serde_json::from_value(source).ok()?,
        created_at,
    })
}

/// Stores `source` as the key's next version and returns it. If it equals
/// the current version (a folder reload), nothing is stored and the current
/// version is returned.
pub async fn create_version(
    conn: &mut AsyncPgConnection,
    key: &str,
    source: &TemplateSource,
) -> Result<i32, DbError> {
    let json = serde_json::to_value(source).map_err(|e| DbError::Migration(e.to_string()))?;
    let version = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // One writer per key at a time: versions are dense and ordered.
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<diesel::sql_types::Text, _>(key)
                .execute(conn)
                .await?;
            let current: Option<(i32, serde_json::Value, Option<DateTime<Utc>>)> = templates::table
                .filter(templates::key.eq(key))
                .order(templates::version.desc())
                .select((templates::version, templates::source, templates::deleted_at))
                .first(conn)
                .await
                .optional()?;
            if let Some((version, existing, None)) = &current
                && *existing == json
            {
                return Ok(*version);
            }
            let next = current.map_or(1, |(v, _, _)| v + 1);
            diesel::insert_into(templates::table)
                .values((
                    templates::key.eq(key),
                    templates::version.eq(next),
                    templates::source.eq(&json),
                ))
                .execute(conn)
                .await?;
            Ok(next)
        })
        .await?;
    Ok(version)
}

/// The current version of a key; `None` if unknown or deleted.
pub async fn latest(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<Option<StoredTemplate>, DbError> {
    let row: Option<(Row, Option<DateTime<Utc>>)> = templates::table
        .filter(templates::key.eq(key))
        .order(templates::version.desc())
        .select((ROW, templates::deleted_at))
        .first(conn)
        .await
        .optional()?;
    Ok(row.and_then(|(row, deleted)| {
        if deleted.is_some() {
            None
        } else {
            from_row(row)
        }
    }))
}

/// One exact version (deleted or not): what a queued notification renders with.
pub async fn version(
    conn: &mut AsyncPgConnection,
    key: &str,
    version: i32,
) -> Result<Option<StoredTemplate>, DbError> {
    let row: Option<Row> = templates::table
        .filter(templates::key.eq(key))
        .filter(templates::version.eq(version))
        .select(ROW)
        .first(conn)
        .await
        .optional()?;
    Ok(row.and_then(from_row))
}

/// The current version of every key not deleted, by key.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<StoredTemplate>, DbError> {
    let rows: Vec<(Row, Option<DateTime<Utc>>)> = templates::table
        .distinct_on(templates::key)
        .order((templates::key, templates::version.desc()))
        .select((ROW, templates::deleted_at))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, deleted)| deleted.is_none())
        .filter_map(|(row, _)| from_row(row))
        .collect())
}

/// Hides a key from new notifications; `false` if it was unknown or already deleted.
pub async fn delete(conn: &mut AsyncPgConnection, key: &str) -> Result<bool, DbError> {
    let deleted = diesel::update(
        templates::table
            .filter(templates::key.eq(key))
            .filter(templates::deleted_at.is_null()),
    )
    .set(templates::deleted_at.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}
