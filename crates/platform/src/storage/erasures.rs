//! Erasure jobs: a producer asked Herald to forget a user. The job row
//! holds the user's id only while it runs; [`erase_user`] deletes every
//! row of the user and clears it in one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::schema::{dead_letters, erasures, notifications, user_inbox, user_preferences};
use crate::db::DbError;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStatus {
    /// Asked for; a stream-worker carries it out within a second or so
    /// (longer while the user's queued notifications are in flight).
    Running,
    /// Nothing of the user remains.
    Done,
}

/// An erasure job as producers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub id: Uuid,
    pub status: ErasureStatus,
    pub requested_at: DateTime<Utc>,
    /// When the user's data was gone (`done` only).
    pub finished_at: Option<DateTime<Utc>>,
    /// Notifications deleted.
    pub notifications_erased: i64,
    /// The user's entries deleted from the streams (queued, or kept after
    /// processing until trimmed) and from the dead letters.
    pub entries_dropped: i64,
}

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = erasures)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct ErasureRow {
    id: Uuid,
    tenant: Option<String>,
    requested_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    notifications_erased: i64,
    entries_dropped: i64,
}

impl From<ErasureRow> for Erasure {
    fn from(row: ErasureRow) -> Self {
        Self {
            id: row.id,
            status: match row.finished_at {
                None => ErasureStatus::Running,
                Some(_) => ErasureStatus::Done,
            },
            requested_at: row.requested_at,
            finished_at: row.finished_at,
            notifications_erased: row.notifications_erased,
            entries_dropped: row.entries_dropped,
        }
    }
}

/// Asks for the user's erasure on behalf of a key of `tenant`: a new job,
/// or the one already running for the user (`false`).
pub async fn request(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    tenant: Option<&str>,
) -> Result<(Erasure, bool), DbError> {
    // The running one may finish between the two statements: then ask again.
    for _ in 0..3 {
        let inserted = diesel::sql_query(
            "INSERT INTO erasures (id, erasing, tenant) VALUES ($1, $2, $3) \
             ON CONFLICT (erasing) WHERE finished_at IS NULL DO NOTHING \
             RETURNING id, tenant, requested_at, finished_at, notifications_erased, entries_dropped",
        )
        .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
        .bind::<diesel::sql_types::Text, _>(user_id)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(tenant)
        .get_result::<ErasureRow>(conn)
        .await
        .optional()?;
        if let Some(row) = inserted {
            return Ok((row.into(), true));
        }
        let running = erasures::table
            .filter(erasures::erasing.eq(user_id))
            .select(ErasureRow::as_select())
            .first::<ErasureRow>(conn)
            .await
            .optional()?;
        if let Some(row) = running {
            return Ok((row.into(), false));
        }
    }
    Err(DbError::Conflict("erasures of this user kept finishing"))
}

/// A job and the tenant of the key that asked for it.
pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<(Erasure, Option<String>)>, DbError> {
    Ok(erasures::table
        .find(id)
        .select(ErasureRow::as_select())
        .first::<ErasureRow>(conn)
        .await
        .optional()?
        .map(|row| {
            let tenant = row.tenant.clone();
            (row.into(), tenant)
        }))
}

/// A running job, as the worker carrying it out holds it.
#[derive(Debug, Clone)]
pub struct Running {
    pub id: Uuid,
    pub user_id: String,
    /// The highest stream entry id of the user's deleted by earlier passes.
    pub drained_through: Option<String>,
}

/// The running job no other worker holds that waited the fewest passes,
/// then the oldest, its row locked until the transaction ends (call inside
/// one).
pub async fn claim(conn: &mut AsyncPgConnection) -> Result<Option<Running>, DbError> {
    let claimed = erasures::table
        .filter(erasures::finished_at.is_null())
        .order((erasures::passes, erasures::requested_at))
        .select((erasures::id, erasures::erasing, erasures::drained_through))
        .for_update()
        .skip_locked()
        .first::<(Uuid, Option<String>, Option<String>)>(conn)
        .await
        .optional()?;
    Ok(claimed.and_then(|(id, user_id, drained_through)| {
        Some(Running {
            id,
            user_id: user_id?,
            drained_through,
        })
    }))
}

/// Records a pass that could not finish yet: entries of the user up to
/// `drained_through` are still being processed.
pub async fn note_pass(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    drained_through: Option<&str>,
    dropped: u64,
) -> Result<(), DbError> {
    diesel::update(erasures::table.find(id))
        .set((
            erasures::drained_through.eq(drained_through),
            erasures::passes.eq(erasures::passes + 1),
            erasures::entries_dropped.eq(erasures::entries_dropped + to_i64(dropped)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes every row of the job's user (notifications, inbox, preferences,
/// dead letters) and finishes the job, forgetting the user's id; call
/// inside the transaction that claimed it. The inbox row is locked first,
/// so a storing round or a state change of the user either committed
/// before (and is erased) or waits and finds no row. Answers how many
/// notifications were deleted.
pub async fn erase_user(
    conn: &mut AsyncPgConnection,
    job: &Running,
    dropped: u64,
) -> Result<i64, DbError> {
    let user_id = job.user_id.as_str();
    user_inbox::table
        .filter(user_inbox::user_id.eq(user_id))
        .select(user_inbox::user_id)
        .for_update()
        .load::<String>(conn)
        .await?;
    let erased = diesel::delete(notifications::table.filter(notifications::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::delete(user_inbox::table.filter(user_inbox::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::delete(user_preferences::table.filter(user_preferences::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    let letters = dead_letters_of(conn, user_id).await?;
    let letters_dropped = letters.len() as u64;
    if !letters.is_empty() {
        diesel::delete(dead_letters::table.filter(dead_letters::id.eq_any(&letters)))
            .execute(conn)
            .await?;
    }
    let erased = to_i64(erased as u64);
    diesel::update(erasures::table.find(job.id))
        .set((
            erasures::erasing.eq(None::<String>),
            erasures::finished_at.eq(diesel::dsl::now),
            erasures::drained_through.eq(None::<String>),
            erasures::passes.eq(erasures::passes + 1),
            erasures::notifications_erased.eq(erased),
            erasures::entries_dropped
                .eq(erasures::entries_dropped + to_i64(dropped + letters_dropped)),
        ))
        .execute(conn)
        .await?;
    Ok(erased)
}

/// The dead letters holding a notification of the user: those whose
/// payload mentions the id, then checked as JSON (a payload that is not
/// JSON, or names another user, is not the user's).
async fn dead_letters_of(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<Uuid>, DbError> {
    let mentioning: Vec<(Uuid, String)> = dead_letters::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("strpos(payload, ")
                .bind::<diesel::sql_types::Text, _>(user_id)
                .sql(") > 0"),
        )
        .select((dead_letters::id, dead_letters::payload))
        .load(conn)
        .await?;
    Ok(mentioning
        .into_iter()
        .filter(|(_, payload)| {
            domain::notification::user_of_entry(payload).as_deref() == Some(user_id)
        })
        .map(|(id, _)| id)
        .collect())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
