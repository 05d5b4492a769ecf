//! Replaying dead letters: an operator's way back from "could not process".
//! Shared by `stream-worker dlq` and ingest-api's admin endpoints.
//!
//! A replay appends the dead letter's payload (or a corrected one) to its
//! priority stream again and marks the record replayed. The payload is
//! validated first, so garbage is never put back. The notification keeps its
//! id and its user, so a replay of something already stored is stored once.
//! The record's row is locked from the check to the mark (one transaction
//! around the append), so concurrent replays of one letter append it once:
//! the others wait, then find it replayed.

use diesel_async::AsyncConnection;
use domain::{FieldError, NewNotification, RequestError};
use uuid::Uuid;

use crate::db::{DbError, DbPool};
use crate::redis::{RedisError, RedisStore};
use crate::storage::{dead_letters, notifications};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter with this id")]
    NotFound,
    #[error("this dead letter was already replayed")]
    AlreadyReplayed,
    #[error("the payload is not a valid notification: {0}")]
    InvalidPayload(RequestError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl From<diesel::result::Error> for ReplayError {
    fn from(err: diesel::result::Error) -> Self {
        ReplayError::Db(DbError::Query(err))
    }
}

impl From<deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>>
    for ReplayError
{
    fn from(err: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>) -> Self {
        ReplayError::Db(DbError::Pool(err))
    }
}

/// Replays one dead letter, with `replacement` as its payload when given;
/// returns the new stream entry id.
pub async fn replay(
    db: &DbPool,
    redis: &RedisStore,
    id: Uuid,
    replacement: Option<&str>,
) -> Result<String, ReplayError> {
    let mut conn = db.get().await?;
    let entry_id = conn
        .transaction::<_, ReplayError, _>(async |conn| {
            let letter = dead_letters::get_for_update(conn, id)
                .await?
                .ok_or(ReplayError::NotFound)?;
            if letter.replayed_at.is_some() {
                return Err(ReplayError::AlreadyReplayed);
            }
            let payload = replacement.unwrap_or(&letter.payload);
            let notification = NewNotification::decode_entry(payload.as_bytes())
                .map_err(ReplayError::InvalidPayload)?;
            keeps_identity(&letter.payload, &notification)?;
            names_no_other_users_notification(conn, &notification).await?;
            // Re-encode: the stream only ever holds what Herald itself writes.
            let entry = serde_json::to_string(&notification).map_err(|err| {
                ReplayError::InvalidPayload(RequestError::MalformedJson(err.to_string()))
            })?;
            // If the commit below fails after this, the letter stays
            // unreplayed with its entry appended: a second replay appends it
            // again, and the notification (same id) is still stored once.
            let lane = redis
                .keys()
                .lane_of(&notification.user_id, notification.priority);
            let entry_id = redis.append(lane, &entry).await?;
            dead_letters::mark_replayed(conn, id, &entry_id).await?;
            Ok(entry_id)
        })
        .await?;
    tracing::info!(dead_letter = %id, entry = %entry_id, "dead letter replayed");
    Ok(entry_id)
}

/// A corrected payload may fix anything but which notification it is: an
/// id names one notification of one user, and the worker takes an id it
/// has stored as a redelivery, so a correction moving the id to another
/// user would be dropped unseen. When the dead letter's own payload
/// decodes, the correction keeps its `id` and `user_id`.
fn keeps_identity(original: &str, corrected: &NewNotification) -> Result<(), ReplayError> {
    let Ok(original) = NewNotification::decode_entry(original.as_bytes()) else {
        return Ok(());
    };
    let kept = [
        ("id", corrected.id == original.id, original.id.to_string()),
        (
            "user_id",
            corrected.user_id == original.user_id,
            format!("{:?}", original.user_id),
        ),
    ];
    let changed: Vec<FieldError> = kept
        .into_iter()
        .filter(|(_, same, _)| !same)
        .map(|(field, _, was)| {
            FieldError::new(
                field,
                format!("a corrected payload keeps the notification's {field} {was}"),
            )
        })
        .collect();
    if changed.is_empty() {
        Ok(())
    } else {
        Err(ReplayError::InvalidPayload(RequestError::InvalidFields(
            changed,
        )))
    }
}

/// A correction of a payload that did not decode may name any id: one of
/// another user's stored notifications would be stored a second time,
/// under a second user (rows are keyed by id and user). Refused.
async fn names_no_other_users_notification(
    conn: &mut diesel_async::AsyncPgConnection,
    notification: &NewNotification,
) -> Result<(), ReplayError> {
    let holders = notifications::users_with_id(conn, notification.id).await?;
    match holders
        .into_iter()
        .find(|user| *user != notification.user_id)
    {
        None => Ok(()),
        Some(other) => Err(ReplayError::InvalidPayload(RequestError::InvalidFields(
            vec![FieldError::new(
                "id",
                format!(
                    "{} is the id of a notification stored for user {other:?}, not {:?}",
                    notification.id, notification.user_id
                ),
            )],
        ))),
    }
}

/// What `replay --all` did.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub replayed: Vec<Uuid>,
    /// Dead letters that could not be replayed as they are, with the reason.
    pub failed: Vec<ReplayFailure>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReplayFailure {
    pub id: Uuid,
    pub error: String,
}

/// Replays every dead letter not replayed yet. Ones whose payload is still
/// invalid are reported and left for a corrected replay.
pub async fn replay_all(db: &DbPool, redis: &RedisStore) -> Result<ReplayReport, ReplayError> {
    let ids = dead_letters::not_replayed_ids(&mut *db.get().await?).await?;
    let mut report = ReplayReport::default();
    for id in ids {
        match replay(db, redis, id, None).await {
            Ok(_) => report.replayed.push(id),
            Err(err @ (ReplayError::InvalidPayload(_) | ReplayError::AlreadyReplayed)) => {
                report.failed.push(ReplayFailure {
                    id,
                    error: err.to_string(),
                });
            }
            Err(err) => return Err(err),
        }
    }
    Ok(report)
}
