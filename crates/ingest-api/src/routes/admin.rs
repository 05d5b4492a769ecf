//! Operators' endpoints (API keys with the `dlq` scope): dead letters.

use actix_web::{HttpResponse, web};
use domain::DeadLetter;
use domain::{FieldError, RequestError};
use platform::body::JsonBody;
use platform::dlq::{self, ReplayReport};
use platform::storage::dead_letters;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Include dead letters already replayed.
    #[serde(default)]
    pub all: bool,
    /// At most this many, newest first (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// List dead letters, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    params(ListQuery),
    responses(
        (status = 200, description = "Dead letters", body = [DeadLetter]),
        (status = 400, description = "`limit` outside 1..=1000, or a malformed query", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `dlq` scope", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_dead_letters(
    _key: Authorized<scope::Dlq>,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(RequestError::InvalidFields(vec![FieldError::new(
            "limit",
            "must be 1..=1000",
        )])
        .into());
    }
    let mut conn = state.conn().await?;
    let letters = dead_letters::list(&mut conn, query.all, limit).await?;
    Ok(HttpResponse::Ok().json(letters))
}

/// Optional body of a replay: a corrected notification to append instead.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The notification as a JSON object (the stream entry's form: `id`,
    /// `user_id`, `title`, `body`, `priority`, `created_at`, ...).
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Id of the new stream entry.
    pub entry_id: String,
}

/// Append one dead letter to its stream again, optionally corrected.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/{id}/replay",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Dead letter id")),
    request_body(content = Option<ReplayRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Appended again", body = Replayed),
        (status = 400, description = "The (corrected) payload is not a valid notification", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `dlq` scope", content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", content_type = "application/problem+json"),
        (status = 409, description = "Already replayed", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL or Redis unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replay_dead_letter(
    _key: Authorized<scope::Dlq>,
    id: web::Path<Uuid>,
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // No body, or `null`: replay the letter as it is.
    let request: ReplayRequest = if body.is_empty() || body.trim_ascii() == b"null" {
        ReplayRequest::default()
    } else {
        domain::validation::decode_json(&body)?
    };
    let replacement = request.payload.map(|p| p.to_string());
    let entry_id = dlq::replay(&state.db, &state.redis, *id, replacement.as_deref()).await?;
    Ok(HttpResponse::Ok().json(Replayed { entry_id }))
}

/// Append every dead letter not replayed yet to its stream again.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/replay",
    tag = "admin",
    responses(
        (status = 200, description = "What was replayed and what could not be", body = ReplayReport),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `dlq` scope", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL or Redis unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replay_all_dead_letters(
    _key: Authorized<scope::Dlq>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let report = dlq::replay_all(&state.db, &state.redis).await?;
    Ok(HttpResponse::Ok().json(report))
}
