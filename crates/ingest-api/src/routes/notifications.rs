//! `POST /v1/notifications`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use domain::NotificationRequest;
use platform::telemetry::traceparent;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::pipeline::{self, Appended, Entries, IDEMPOTENT_REPLAYED, Idempotency};
use crate::rate_limit::with_headers;
use crate::state::{AppState, Appender};

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
/// With an `Idempotency-Key` header, a retry of the same request (same key,
/// same body, within 24 hours) appends nothing and answers the first `id`
/// again with `Idempotent-Replayed: true`; the same key with another body is
/// refused with 409.
#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1..=255 visible ASCII characters; makes retries safe for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the producer; when ingest-api exports traces, the trace continues through the worker to the gateway's frame write"),
    ),
    request_body(content = NotificationRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Appended to the stream (or replayed: header Idempotent-Replayed: true)", body = Accepted),
        (status = 400, description = "Malformed JSON, invalid fields or Idempotency-Key", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `notify` scope, or may not address this user (a tenant's key)", content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with a different body", content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 429, description = "The key is over its rate; nothing accepted; see Retry-After and RateLimit; or too many failed authentications from this address", content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable; see Retry-After", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_notification(
    producer: Authorized<scope::Notify>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    let (idempotency_key, body) =
        pipeline::read_request(&req, payload, state.limits.single).await?;
    let request = NotificationRequest::parse(&body)?;
    producer.check_user(&request.user_id)?;
    let rate = state
        .key_rates
        .take(&appender, &producer.identity, 1)
        .await?;
    let mut notification = pipeline::admit(
        &state,
        request,
        Utc::now(),
        &mut pipeline::TemplateLookups::default(),
    )
    .await?;
    let xadd = pipeline::xadd_span(1);
    notification.traceparent = traceparent::of(&xadd);
    let entry =
        serde_json::to_string(&notification).map_err(|err| ApiError::BadBody(err.to_string()))?;
    let idempotency = Idempotency::of(
        idempotency_key.as_deref(),
        &producer,
        None,
        &body,
        state.idempotency_ttl,
    );
    let mut entries = Entries::default();
    let lane = appender
        .keys()
        .lane_of(&notification.user_id, notification.priority);
    entries.push(lane, entry);
    let appended = pipeline::append(&appender, &entries, xadd, idempotency, |_| {
        Ok(notification.id.to_string())
    })
    .await?;
    match appended {
        Appended::Now => {
            state.metrics.accepted(notification.priority, 1);
            Ok(with_headers(accepted(notification.id, false), rate))
        }
        Appended::Earlier(first) => {
            let (_, first) = first
                .first()
                .ok_or_else(|| ApiError::redis("an idempotency record without an answer"))?;
            let id = Uuid::parse_str(first).map_err(|err| ApiError::BadBody(err.to_string()))?;
            Ok(with_headers(accepted(id, true), rate))
        }
    }
}

fn accepted(id: Uuid, replayed: bool) -> HttpResponse {
    tracing::debug!(%id, replayed, "notification accepted");
    let mut response = HttpResponse::Accepted();
    if replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    response.json(Accepted {
        id,
        status: "accepted",
    })
}
