//! User tokens revoked before their `exp`, by `jti` (the deny-list). A row
//! is kept until the token would have expired; ws-gateway holds the live
//! ones in memory and refuses those tokens.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::schema::revoked_tokens;
use crate::db::DbError;

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Serialize, utoipa::ToSchema)]
pub struct RevokedToken {
    pub jti: String,
    /// When the token expires anyway; the entry is dropped after it.
    pub expires_at: DateTime<Utc>,
    pub revoked_at: DateTime<Utc>,
}

/// Revokes `jti` until `expires_at` (a later expiry of the same `jti`
/// extends it); answers the stored entry.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> Result<RevokedToken, DbError> {
    Ok(diesel::insert_into(revoked_tokens::table)
        .values((
            revoked_tokens::jti.eq(jti),
            revoked_tokens::expires_at.eq(expires_at),
        ))
        .on_conflict(revoked_tokens::jti)
        .do_update()
        .set(
            revoked_tokens::expires_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                "GREATEST(revoked_tokens.expires_at, excluded.expires_at)",
            )),
        )
        .returning((
            revoked_tokens::jti,
            revoked_tokens::expires_at,
            revoked_tokens::revoked_at,
        ))
        .get_result(conn)
        .await?)
}

/// The entries whose token has not expired yet, oldest revocation first.
pub async fn active(conn: &mut AsyncPgConnection) -> Result<Vec<RevokedToken>, DbError> {
    Ok(revoked_tokens::table
        .filter(revoked_tokens::expires_at.gt(diesel::dsl::now))
        .order(revoked_tokens::revoked_at)
        .select((
            revoked_tokens::jti,
            revoked_tokens::expires_at,
            revoked_tokens::revoked_at,
        ))
        .load(conn)
        .await?)
}

/// Deletes the entries whose token has expired; answers how many.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
    Ok(diesel::delete(
        revoked_tokens::table.filter(revoked_tokens::expires_at.le(diesel::dsl::now)),
    )
    .execute(conn)
    .await?)
}
