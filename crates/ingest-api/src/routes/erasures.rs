//! Erasing a user's data (API keys with the `preferences` scope: like the
//! user's language, it is the user's own data): `DELETE /v1/users/{user_id}`
//! asks for it, `GET /v1/erasures/{id}` tells when it is done. A
//! stream-worker carries it out (see `platform::erasure`).

use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use domain::FieldError;
use platform::storage::erasures::{self, Erasure};
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::rate_limit::with_headers;
use crate::state::{AppState, Appender};

/// Erase everything Herald holds of a user.
///
/// Every notification (stored, queued, dead-lettered), the inbox state and
/// the preferences of the user go, and their connections are closed (4004
/// after an `erased` frame). Answers at once with the job; asked again
/// while it runs, the same job. Notifications accepted before the request
/// never remain; ones accepted after the job is done start a new inbox.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}",
    tag = "notifications",
    params(("user_id" = String, Path, description = "The user", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")),
    responses(
        (status = 202, description = "The erasure job (its `Location` is its status URL)", body = Erasure,
            headers(("Location" = String, description = "`/v1/erasures/{id}`"))),
        (status = 400, description = "Invalid user id", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `preferences` scope, or may not address this user (a tenant's key)", content_type = "application/problem+json"),
        (status = 429, description = "The key is over its rate; nothing was asked; see Retry-After and RateLimit; or too many failed authentications from this address", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL or Redis unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn erase_user(
    producer: Authorized<scope::Preferences>,
    user_id: web::Path<String>,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    producer.check_user(&user_id)?;
    domain::notification::validate_user_id(&user_id).map_err(|why| {
        domain::RequestError::InvalidFields(vec![FieldError::new("user_id", why)])
    })?;
    // Counts as one notification against the key's rate.
    let rate = state
        .key_rates
        .take(&appender, &producer.identity, 1)
        .await?;
    let mut conn = state.conn().await?;
    let (job, _) = erasures::request(&mut conn, &user_id, producer.identity.tenant.as_deref())
        .await
        .map_err(ApiError::database)?;
    let response = HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/v1/erasures/{}", job.id)))
        .json(job);
    Ok(with_headers(response, rate))
}

/// An erasure job: `running` until nothing of the user remains, then `done`.
#[utoipa::path(
    get,
    path = "/v1/erasures/{id}",
    tag = "notifications",
    params(("id" = Uuid, Path, description = "The job's id (from `DELETE /v1/users/{user_id}`)")),
    responses(
        (status = 200, description = "The job", body = Erasure),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `preferences` scope", content_type = "application/problem+json"),
        (status = 404, description = "No such job (or another tenant's)", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_erasure(
    producer: Authorized<scope::Preferences>,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    let found = erasures::get(&mut conn, *id)
        .await
        .map_err(ApiError::database)?;
    match found {
        Some((job, tenant))
            if visible_to(producer.identity.tenant.as_deref(), tenant.as_deref()) =>
        {
            Ok(HttpResponse::Ok().json(job))
        }
        _ => Err(ApiError::NotFoundDetail("no erasure job with this id")),
    }
}

/// A tenant's key sees its tenant's jobs; a key without one sees every job.
fn visible_to(key_tenant: Option<&str>, job_tenant: Option<&str>) -> bool {
    key_tenant.is_none() || key_tenant == job_tenant
}
