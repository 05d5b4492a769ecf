//! `POST /v1/notifications`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use domain::NotificationRequest;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Producer;
use crate::error::ApiError;
use crate::startup::AppState;

/// Answer to an accepted notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// UUIDv7 assigned to the notification.
    pub id: Uuid,
    /// Always `accepted`: the notification is in the stream.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// Queue one notification for a user.
///
/// Answers 202 only after the notification was appended to its Redis stream.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    request_body(content = NotificationRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Appended to the stream", body = Accepted),
        (status = 400, description = "Malformed JSON or invalid fields", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable; see Retry-After", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_notification(
    _producer: Producer,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_json(&req)?;
    let body = payload
        .to_bytes_limited(state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(state.max_body_bytes))?
        .map_err(|err| ApiError::BadBody(err.to_string()))?;
    let request = NotificationRequest::parse(&body)?;
    let notification = request.into_notification(Uuid::now_v7(), Utc::now());
    let entry =
        serde_json::to_string(&notification).map_err(|err| ApiError::BadBody(err.to_string()))?;
    state
        .redis
        .append(notification.priority, &entry)
        .await
        .map_err(|err| ApiError::Unavailable {
            dependency: "redis",
            cause: err.to_string(),
            retry_after_secs: state.retry_after_secs,
        })?;
    tracing::debug!(id = %notification.id, priority = %notification.priority, "notification accepted");
    Ok(HttpResponse::Accepted().json(Accepted {
        id: notification.id,
        status: "accepted",
    }))
}

/// `application/json`, with or without parameters such as `charset`.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}
