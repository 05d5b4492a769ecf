//! Erasing a user: everything Herald holds of them goes (notifications,
//! inbox state, preferences, dead letters, their entries in the streams),
//! and every connection of theirs is told and closed.
//!
//! ingest-api stores the job (`DELETE /v1/users/{user_id}`); stream-workers
//! carry jobs out, one pass per job at a time, in a transaction that holds
//! the job's row ([`erasures::claim`], so two workers never run one job):
//!
//! 1. The first pass deletes the user's entries from their shard's lanes
//!    and dead-letter stream. A queued one is thus dropped: no worker will
//!    ever read it.
//! 2. One a worker read before the delete is still processed by it. While
//!    any entry up to the highest one deleted is pending in the consumer
//!    group, the pass ends there (the job remembers that id) and the next
//!    pass looks again.
//! 3. Once none is, every row of the user is deleted, under their inbox
//!    lock, and the job finishes, forgetting the user's id; then the
//!    `erased` frame goes to the user's channel (gateways close those
//!    connections).
//!
//! So a notification accepted before the erasure was asked for never
//! remains after it is done; one accepted while it runs may be erased or
//! kept; one accepted after it is done is kept (a new inbox).

use diesel_async::AsyncConnection;
use domain::ServerFrame;
use uuid::Uuid;

use crate::db::{DbError, DbPool};
use crate::redis::{RedisError, RedisStore};
use crate::storage::erasures;

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl From<diesel::result::Error> for ErasureError {
    fn from(err: diesel::result::Error) -> Self {
        ErasureError::Db(DbError::Query(err))
    }
}

/// What one [`pass`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// No job was running (or every running one is held by another worker).
    Idle,
    /// The job's user still has entries being processed: the next pass
    /// looks again.
    Waiting(Uuid),
    /// The job is done: the user's data is gone.
    Done { job: Uuid, notifications: i64 },
}

/// Carries the next running job one step further (see the module's
/// steps); the job waiting longest goes first, a job that had to wait
/// goes behind those that did not.
pub async fn pass(db: &DbPool, redis: &RedisStore) -> Result<Pass, ErasureError> {
    let mut conn = db.get().await.map_err(DbError::from)?;
    let (pass, erased_user) = conn
        .transaction::<_, ErasureError, _>(async |conn| {
            let Some(job) = erasures::claim(conn).await? else {
                return Ok((Pass::Idle, None));
            };
            // The first pass deletes the user's entries; later ones only
            // wait for the ones workers had read (entries accepted since
            // the request may be kept: see the module's note).
            let (through, dropped) = match job.drained_through.clone() {
                Some(through) => (Some(through), 0),
                None => {
                    let dropped = redis.drop_user_entries(&job.user_id).await?;
                    (dropped.highest, dropped.count)
                }
            };
            if let Some(through) = &through
                && !redis.processed_through(&job.user_id, through).await?
            {
                erasures::note_pass(conn, job.id, Some(through), dropped).await?;
                return Ok((Pass::Waiting(job.id), None));
            }
            let notifications = erasures::erase_user(conn, &job, dropped).await?;
            Ok((
                Pass::Done {
                    job: job.id,
                    notifications,
                },
                Some(job.user_id),
            ))
        })
        .await?;
    if let Some(user_id) = erased_user {
        // Connections that miss this (Redis down a moment) find an empty
        // inbox at their next connect.
        if let Err(err) = redis
            .publish_to_users(&[(user_id.as_str(), ServerFrame::Erased.to_json())])
            .await
        {
            tracing::warn!(%err, "user erased but the gateways could not be told");
        }
    }
    Ok(pass)
}
