//! Dead letters in PostgreSQL: the durable list operators query and replay
//! from. Recording is idempotent per stream entry.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{DeadLetter, Priority, Shard};
use uuid::Uuid;

use super::schema::dead_letters;
use crate::db::DbError;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dead_letters)]
pub struct NewDeadLetter {
    pub id: Uuid,
    pub shard: i32,
    pub priority: String,
    pub entry_id: String,
    pub payload: String,
    pub error: String,
    pub deliveries: i64,
}

impl NewDeadLetter {
    pub fn new(
        shard: Shard,
        priority: Priority,
        entry_id: &str,
        payload: &str,
        error: &str,
        deliveries: u64,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            shard: i32::from(shard.index()),
            priority: priority.as_str().to_owned(),
            entry_id: entry_id.to_owned(),
            payload: payload.to_owned(),
            error: error.to_owned(),
            deliveries: i64::try_from(deliveries).unwrap_or(i64::MAX),
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = dead_letters)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct DeadLetterRow {
    id: Uuid,
    shard: i32,
    priority: String,
    entry_id: String,
    payload: String,
    error: String,
    deliveries: i64,
    created_at: DateTime<Utc>,
    replayed_at: Option<DateTime<Utc>>,
    replay_entry_id: Option<String>,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(row: DeadLetterRow) -> Self {
        DeadLetter {
            id: row.id,
            shard: u16::try_from(row.shard).unwrap_or_default(),
            priority: row.priority.parse().unwrap_or_default(),
            entry_id: row.entry_id,
            payload: row.payload,
            error: row.error,
            deliveries: row.deliveries,
            created_at: row.created_at,
            replayed_at: row.replayed_at,
            replay_entry_id: row.replay_entry_id,
        }
    }
}

/// Records dead letters; an entry recorded before (redelivery: the same
/// shard, lane and entry id) is kept as it was.
pub async fn record(
    conn: &mut AsyncPgConnection,
    letters: &[NewDeadLetter],
) -> Result<(), DbError> {
    if letters.is_empty() {
        return Ok(());
    }
    diesel::insert_into(dead_letters::table)
        .values(letters)
        .on_conflict((
            dead_letters::shard,
            dead_letters::priority,
            dead_letters::entry_id,
        ))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Newest first; replayed ones only when asked.
pub async fn list(
    conn: &mut AsyncPgConnection,
    include_replayed: bool,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let mut query = dead_letters::table
        .select(DeadLetterRow::as_select())
        .order(dead_letters::created_at.desc())
        .limit(limit)
        .into_boxed();
    if !include_replayed {
        query = query.filter(dead_letters::replayed_at.is_null());
    }
    Ok(query
        .load::<DeadLetterRow>(conn)
        .await?
        .into_iter()
        .map(DeadLetter::from)
        .collect())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<DeadLetter>, DbError> {
    Ok(dead_letters::table
        .find(id)
        .select(DeadLetterRow::as_select())
        .first::<DeadLetterRow>(conn)
        .await
        .optional()?
        .map(DeadLetter::from))
}

/// The dead letter, its row locked until the transaction ends: a replay
/// holds it while it appends, so two replays of one letter cannot both
/// append.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<DeadLetter>, DbError> {
    Ok(dead_letters::table
        .find(id)
        .select(DeadLetterRow::as_select())
        .for_update()
        .first::<DeadLetterRow>(conn)
        .await
        .optional()?
        .map(DeadLetter::from))
}

/// Ids of every dead letter not replayed yet, oldest first.
pub async fn not_replayed_ids(conn: &mut AsyncPgConnection) -> Result<Vec<Uuid>, DbError> {
    Ok(dead_letters::table
        .filter(dead_letters::replayed_at.is_null())
        .order(dead_letters::created_at.asc())
        .select(dead_letters::id)
        .load(conn)
        .await?)
}

pub async fn count_not_replayed(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(dead_letters::table
        .filter(dead_letters::replayed_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// Marks a dead letter replayed; `false` if it already was.
pub async fn mark_replayed(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    replay_entry_id: &str,
) -> Result<bool, DbError> {
    let updated = diesel::update(
        dead_letters::table
            .find(id)
            .filter(dead_letters::replayed_at.is_null()),
    )
    .set((
        dead_letters::replayed_at.eq(diesel::dsl::now),
        dead_letters::replay_entry_id.eq(replay_entry_id),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// The newest dead letter holding the notification with this id (its
/// payload names it; a payload that is not JSON never matches).
pub async fn of_notification(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<DeadLetter>, DbError> {
    let text = id.to_string();
    let mentioning: Vec<DeadLetterRow> = dead_letters::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("strpos(payload, ")
                .bind::<diesel::sql_types::Text, _>(&text)
                .sql(") > 0"),
        )
        .order(dead_letters::created_at.desc())
        .select(DeadLetterRow::as_select())
        .load(conn)
        .await?;
    Ok(mentioning
        .into_iter()
        .find(|row| domain::notification::id_of_entry(&row.payload) == Some(id))
        .map(DeadLetter::from))
}
