//! `POST /v1/notifications`.

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use domain::NotificationRequest;
use serde::Serialize;
use uuid::Uuid;

use domain::{FieldError, RequestError};
use platform::hashing::sha256_hex;
use platform::redis::IdempotentAppend;
use platform::telemetry::traceparent;
use platform::template_cache::TemplateLookupError;
use tracing::Instrument;

use crate::auth::Producer;
use crate::error::ApiError;
use crate::startup::{AppState, Appender};

/// Answer to an accepted notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// UUIDv7 assigned to the notification.
    pub id: Uuid,
    /// Always `accepted`: the notification is in the stream.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

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
        ("Idempotency-Key" = Option<String>, Header, description = "1..=255 visible ASCII characters; makes retries safe for 24 hours"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the producer; when ingest-api exports traces, the trace continues through the worker to the gateway's frame write"),
    ),
    request_body(content = NotificationRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Appended to the stream (or replayed: header Idempotent-Replayed: true)", body = Accepted),
        (status = 400, description = "Malformed JSON, invalid fields or Idempotency-Key", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with a different body", content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable; see Retry-After", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_notification(
    producer: Producer,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    let (idempotency_key, body) = read_request(&req, payload, state.max_body_bytes).await?;
    let mut notification = admit(&state, NotificationRequest::parse(&body)?, Utc::now()).await?;
    let xadd = xadd_span(1);
    notification.traceparent = traceparent::of(&xadd);
    let entry =
        serde_json::to_string(&notification).map_err(|err| ApiError::BadBody(err.to_string()))?;
    let unavailable = |err: platform::redis::RedisError| ApiError::Unavailable {
        dependency: "redis",
        cause: err.to_string(),
        retry_after_secs: state.retry_after_secs,
    };

    let Some(key) = idempotency_key else {
        appender
            .append(notification.priority, &entry)
            .instrument(xadd)
            .await
            .map_err(unavailable)?;
        state.metrics.accepted(notification.priority, 1);
        return Ok(accepted(notification.id, false));
    };
    // Scoped to the producer's key, so two producers cannot collide.
    let scoped = format!("{}:{}", producer.key_id, sha256_hex(key.as_bytes()));
    let fingerprint = sha256_hex(&body);
    let appended = appender
        .append_idempotent(
            &[(notification.priority, entry)],
            &scoped,
            &fingerprint,
            &notification.id.to_string(),
            state.idempotency_ttl,
        )
        .instrument(xadd)
        .await
        .map_err(unavailable)?;
    match appended {
        IdempotentAppend::Appended => {
            state.metrics.accepted(notification.priority, 1);
            Ok(accepted(notification.id, false))
        }
        IdempotentAppend::Replayed {
            fingerprint: first,
            answer,
        } if first == fingerprint => {
            let id = Uuid::parse_str(&answer).map_err(|err| ApiError::BadBody(err.to_string()))?;
            Ok(accepted(id, true))
        }
        IdempotentAppend::Replayed { .. } => Err(ApiError::IdempotencyKeyReused),
    }
}

/// The span of appending `entries` notifications to the streams; its
/// `traceparent` goes into each entry, so the worker continues the trace.
pub(crate) fn xadd_span(entries: usize) -> tracing::Span {
    if !platform::telemetry::exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "XADD",
        otel.kind = "producer",
        db.system.name = "redis",
        entries
    )
}

/// What every producer request starts with: a JSON content type, a valid
/// optional `Idempotency-Key`, and a body within `limit`.
pub(crate) async fn read_request(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Option<String>, web::Bytes), ApiError> {
    require_json(req)?;
    let key = idempotency_key(req)?;
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))?
        .map_err(|err| ApiError::BadBody(err.to_string()))?;
    Ok((key, body))
}

/// Stamps a validated request with its id and time, and pins its template
/// to the version its params were checked against.
pub(crate) async fn admit(
    state: &AppState,
    request: NotificationRequest,
    now: chrono::DateTime<Utc>,
) -> Result<domain::NewNotification, ApiError> {
    let mut notification = request.into_notification(Uuid::now_v7(), now);
    if let Some(template) = &mut notification.template {
        template.version = check_template(state, template).await?;
    }
    Ok(notification)
}

/// The current version of the template, if the params fit every locale of it.
/// An unknown template or a missing or mistyped parameter is the producer's
/// to fix now: nothing is queued.
async fn check_template(state: &AppState, template: &domain::TemplateRef) -> Result<i32, ApiError> {
    let mut conn = state.conn().await?;
    let compiled = match state.templates.latest(&mut conn, &template.key).await {
        Ok(compiled) => compiled,
        Err(TemplateLookupError::Db(err)) => return Err(state.db_unavailable(err.to_string())),
        Err(err) => {
            return Err(RequestError::InvalidFields(vec![FieldError::new(
                "template",
                err.to_string(),
            )])
            .into());
        }
    };
    compiled.check_params(&template.params).map_err(|err| {
        RequestError::InvalidFields(vec![FieldError::new(
            format!("params.{}", err.param),
            format!(
                "template `{}`: parameter `{}` {}",
                template.key, err.param, err.problem
            ),
        )])
    })?;
    Ok(compiled.version)
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

/// The optional `Idempotency-Key`: 1..=255 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadIdempotencyKey("must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::BadIdempotencyKey("must be 1..=255 characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey(
            "must be visible ASCII without spaces",
        ));
    }
    Ok(Some(key.to_owned()))
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
