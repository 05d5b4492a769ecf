//! The user token deny-list (API keys with the `admin` scope): a token
//! revoked by its `jti` is refused by every ws-gateway, and its open
//! sockets are closed, until it would have expired anyway.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use domain::{FieldError, RequestError};
use platform::body::JsonBody;
use platform::storage::revoked_tokens::{self, RevokedToken};
use serde::Deserialize;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest a revocation is kept: no token Herald accepts lives longer.
const MAX_AHEAD_DAYS: i64 = 366;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    /// The token's `jti` claim: 1..=255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub jti: String,
    /// The token's `exp` (RFC 3339): the entry is kept until then, at most
    /// a year ahead.
    pub expires_at: DateTime<Utc>,
}

/// Revoke a user token before it expires.
///
/// Every ws-gateway refuses the token from now on (401) and closes the
/// sockets opened with it (close code 4003), until `expires_at`. Tokens
/// without a `jti` cannot be revoked: keep their lifetime short.
#[utoipa::path(
    post,
    path = "/v1/admin/tokens/revoked",
    tag = "admin",
    request_body(content = RevokeToken, content_type = "application/json"),
    responses(
        (status = 201, description = "Revoked (again: the later expiry is kept)", body = RevokedToken),
        (status = 400, description = "Invalid jti or expires_at (past, or more than a year ahead)", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `admin` scope", content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable; nothing revoked", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn revoke(
    _key: Authorized<scope::Admin>,
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request: RevokeToken = domain::validation::decode_json(&body)?;
    let mut errors = Vec::new();
    if request.jti.is_empty()
        || request.jti.len() > 255
        || !request.jti.bytes().all(|b| b.is_ascii_graphic())
    {
        errors.push(FieldError::new(
            "jti",
            "must be 1..=255 visible ASCII characters",
        ));
    }
    let now = Utc::now();
    if request.expires_at <= now {
        errors.push(FieldError::new(
            "expires_at",
            "is past: the token is refused already",
        ));
    } else if request.expires_at > now + Duration::days(MAX_AHEAD_DAYS) {
        errors.push(FieldError::new(
            "expires_at",
            format!("must be at most {MAX_AHEAD_DAYS} days ahead"),
        ));
    }
    if !errors.is_empty() {
        return Err(RequestError::InvalidFields(errors).into());
    }
    let mut conn = state.conn().await?;
    let revoked = revoked_tokens::revoke(&mut conn, &request.jti, request.expires_at).await?;
    // Stored first: a gateway that misses the announcement reloads the
    // list within `auth.revoked_tokens_reload_secs`.
    if let Err(err) = state.redis.announce_token_revoked(&revoked.jti).await {
        tracing::warn!(%err, "token revocation stored but not announced; gateways pick it up on their next reload");
    }
    tracing::info!(jti = %revoked.jti, expires_at = %revoked.expires_at, "user token revoked");
    Ok(HttpResponse::Created().json(revoked))
}

/// The tokens revoked and not expired yet.
#[utoipa::path(
    get,
    path = "/v1/admin/tokens/revoked",
    tag = "admin",
    responses(
        (status = 200, description = "Revoked tokens, oldest revocation first", body = [RevokedToken]),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `admin` scope", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    _key: Authorized<scope::Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(revoked_tokens::active(&mut conn).await?))
}
