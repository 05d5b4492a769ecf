//! `GET /v1/notifications/{id}`: where a notification is, for the producer
//! that sent it (API keys with the `notify` scope; a tenant's key sees its
//! tenant's users' only).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::DeadLetter;
use platform::redis::QueuedEntry;
use platform::storage::dead_letters;
use platform::storage::notifications::status::{self as stored, StoredState};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::state::AppState;

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// In its stream, not read by a worker yet.
    Queued,
    /// A worker read it and is storing it (or waits to retry).
    Processing,
    /// In the user's inbox (see `state`).
    Stored,
    /// Stored while its category was muted: in the inbox, never pushed.
    Muted,
    /// Its `expires_at` passed (before delivery, or after: then it left the
    /// inbox and the counts).
    Expired,
    /// It could not be processed (see `dead_letter`).
    DeadLettered,
}

/// The user's state of a stored notification (each `null` until it happens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserState {
    pub seen_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    /// Out of the list and the counts until then.
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// Why a dead-lettered notification was not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadLetterSummary {
    /// The dead letter (`/v1/admin/dead-letters/{id}/replay`).
    pub id: Uuid,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// A notification's place, and the user's state of it once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotificationStatus {
    pub id: Uuid,
    pub status: Place,
    pub user_id: String,
    /// Its place in the user's sequence (stored ones; `null` when it was
    /// stored already expired).
    pub seq: Option<i64>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub stored_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Stored ones only.
    pub state: Option<UserState>,
    /// How many sockets it was written to (live, or on a resume; counted
    /// by the gateways and added up about every second). Stored ones
    /// only, and only within `gateway.sockets_written_ttl_secs` (an hour)
    /// of its creation; `null` otherwise.
    pub sockets_written: Option<u64>,
    /// Dead-lettered ones only.
    pub dead_letter: Option<DeadLetterSummary>,
}

/// Where a notification is: queued, processing, stored (with the user's
/// state of it: seen, read, archived, snoozed), muted, expired or
/// dead-lettered.
#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "notifications",
    params(("id" = Uuid, Path, description = "The id answered 202")),
    responses(
        (status = 200, description = "Where it is", body = NotificationStatus),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `notify` scope", content_type = "application/problem+json"),
        (status = 404, description = "No notification with this id (never accepted, or erased), or another tenant's", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL or Redis unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_status(
    producer: Authorized<scope::Notify>,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    let may_see = |user_id: &str| producer.identity.may_address(user_id);
    let mut conn = state.conn().await?;
    // Most asked for are stored: look there first. One not stored may be
    // stored (or dead-lettered) while it is looked for in the streams: a
    // worker commits before it acknowledges, so one no longer queued is
    // found by looking again.
    for attempt in 0..2 {
        let rows = stored::stored_states(&mut conn, id)
            .await
            .map_err(ApiError::database)?;
        if let Some(row) = rows.into_iter().find(|row| may_see(&row.user_id)) {
            let mut status = of_stored(id, row);
            status.sockets_written = sockets_written(&state, &status).await;
            return Ok(HttpResponse::Ok().json(status));
        }
        if attempt == 1 {
            break;
        }
        let Some(made_at) = domain::ids::made_at(id) else {
            break;
        };
        let queued = state
            .redis
            .find_queued(id, made_at)
            .await
            .map_err(ApiError::redis)?;
        if let Some(entry) = queued.filter(|entry| may_see(&entry.user_id)) {
            return Ok(HttpResponse::Ok().json(of_queued(id, entry)));
        }
    }
    let letter = dead_letters::of_notification(&mut conn, id)
        .await
        .map_err(ApiError::database)?;
    match letter.and_then(|letter| of_dead_letter(id, letter).filter(|s| may_see(&s.user_id))) {
        Some(status) => Ok(HttpResponse::Ok().json(status)),
        None => Err(ApiError::NotFoundDetail("no notification with this id")),
    }
}

/// How many sockets a stored notification was written to, while it is
/// counted (see [`NotificationStatus::sockets_written`]).
async fn sockets_written(state: &AppState, status: &NotificationStatus) -> Option<u64> {
    let counted = domain::ids::made_at(status.id)
        .and_then(|made_at| made_at.checked_add_signed(ttl_of(state)?))
        .is_some_and(|until| Utc::now() < until);
    if !counted {
        return None;
    }
    // Best-effort, like the count itself: Redis down leaves it unknown.
    match state
        .redis
        .sockets_written(&status.user_id, status.id)
        .await
    {
        Ok(count) => Some(count),
        Err(err) => {
            tracing::warn!(%err, "sockets written unknown");
            None
        }
    }
}

/// How long counts are kept (`None`: not counted).
fn ttl_of(state: &AppState) -> Option<chrono::Duration> {
    let ttl = state.sockets_written_ttl;
    if ttl.is_zero() {
        return None;
    }
    chrono::Duration::from_std(ttl).ok()
}

fn of_stored(id: Uuid, row: StoredState) -> NotificationStatus {
    let status = if row.expired {
        Place::Expired
    } else if row.muted {
        Place::Muted
    } else {
        Place::Stored
    };
    NotificationStatus {
        id,
        status,
        user_id: row.user_id,
        seq: row.seq,
        category: row.category,
        priority: Some(row.priority),
        created_at: Some(row.created_at),
        stored_at: Some(row.stored_at),
        expires_at: row.expires_at,
        state: Some(UserState {
            // Reading one sees it (the row's `seen_at` is only set by
            // marking seen), as the inbox API reports it.
            seen_at: row.seen_at.or(row.read_at),
            read_at: row.read_at,
            archived_at: row.archived_at,
            snoozed_until: row.snoozed_until,
        }),
        sockets_written: None,
        dead_letter: None,
    }
}

fn of_queued(id: Uuid, entry: QueuedEntry) -> NotificationStatus {
    NotificationStatus {
        id,
        status: if entry.delivered {
            Place::Processing
        } else {
            Place::Queued
        },
        user_id: entry.user_id,
        seq: None,
        category: None,
        priority: Some(entry.lane.priority.as_str().to_owned()),
        created_at: None,
        stored_at: None,
        expires_at: None,
        state: None,
        sockets_written: None,
        dead_letter: None,
    }
}

/// A dead letter's notification, when its payload names a user.
fn of_dead_letter(id: Uuid, letter: DeadLetter) -> Option<NotificationStatus> {
    let user_id = domain::notification::user_of_entry(&letter.payload)?;
    Some(NotificationStatus {
        id,
        status: Place::DeadLettered,
        user_id,
        seq: None,
        category: None,
        priority: Some(letter.priority.as_str().to_owned()),
        created_at: None,
        stored_at: None,
        expires_at: None,
        state: None,
        sockets_written: None,
        dead_letter: Some(DeadLetterSummary {
            id: letter.id,
            error: letter.error,
            created_at: letter.created_at,
            replayed_at: letter.replayed_at,
        }),
    })
}
