//! Admin endpoints for templates (API keys with the `templates` scope), and
//! the producers' endpoint for a user's locale (the `preferences` scope).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use domain::{FieldError, Preferences, RequestError};
use platform::body::JsonBody;
use platform::problem::Problem;
use platform::storage::{preferences, templates as stored};
use serde::{Deserialize, Serialize};
use templates::{Template, TemplateIssue, TemplateSource};

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::rate_limit::with_headers;
use crate::state::AppState;
use crate::state::Appender;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedVersion {
    pub key: String,
    pub version: i32,
}

/// Invalid template: every issue with its locale, line and column.
fn invalid_template(issues: Vec<TemplateIssue>) -> HttpResponse {
    let errors = issues
        .iter()
        .map(|issue| {
            let field = match &issue.locale {
                Some(locale) => format!("locales.{locale}"),
                None => "template".to_owned(),
            };
            let message = match (issue.line, issue.column) {
                (Some(line), Some(column)) => {
                    format!("line {line}, column {column}: {}", issue.message)
                }
                _ => issue.message.clone(),
            };
            FieldError::new(field, message)
        })
        .collect();
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-template",
        "Invalid template",
    )
    .detail("the template was not stored; see errors and issues")
    .errors(errors)
    .extension("issues", serde_json::to_value(&issues).unwrap_or_default())
    .to_response()
}

/// Create a new version of a template (the first one creates the template).
#[utoipa::path(
    post,
    path = "/v1/admin/templates/{key}",
    tag = "admin",
    params(("key" = String, Path, description = "Template key: 1..=64 of a-z 0-9 _ . -")),
    request_body(content = TemplateSource, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored as a new version (or equal to the current one)", body = CreatedVersion),
        (status = 400, description = "Invalid template: `errors` and `issues` give locale, line and column", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `templates` scope", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_version(
    _key: Authorized<scope::Templates>,
    key: web::Path<String>,
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let source: TemplateSource = domain::validation::decode_json(&body)?;
    if let Err(issues) = Template::compile(&key, 0, &source) {
        return Ok(invalid_template(issues));
    }
    let mut conn = state.conn().await?;
    let version = stored::create_version(&mut conn, &key, &source).await?;
    state.unknown_templates.remove(key.as_str());
    Ok(HttpResponse::Created().json(CreatedVersion {
        key: key.into_inner(),
        version,
    }))
}

/// The current version of every template.
#[utoipa::path(
    get,
    path = "/v1/admin/templates",
    tag = "admin",
    responses(
        (status = 200, description = "Templates", body = [stored::StoredTemplate]),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `templates` scope", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    _key: Authorized<scope::Templates>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    let all = stored::list(&mut conn).await?;
    Ok(HttpResponse::Ok().json(all))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A specific version (default: the current one).
    #[param(minimum = 1)]
    pub version: Option<i32>,
}

/// One template: its current version, or `?version=N`.
#[utoipa::path(
    get,
    path = "/v1/admin/templates/{key}",
    tag = "admin",
    params(("key" = String, Path, description = "Template key"), VersionQuery),
    responses(
        (status = 200, description = "The template", body = stored::StoredTemplate),
        (status = 400, description = "A malformed `version`", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `templates` scope", content_type = "application/problem+json"),
        (status = 404, description = "No such template (or version)", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    _key: Authorized<scope::Templates>,
    key: web::Path<String>,
    query: web::Query<VersionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    let found = match query.version {
        Some(version) => stored::version(&mut conn, &key, version).await,
        None => stored::latest(&mut conn, &key).await,
    }?;
    match found {
        Some(template) => Ok(HttpResponse::Ok().json(template)),
        None => Err(ApiError::NotFoundDetail("no such template")),
    }
}

/// Delete a template: new notifications can no longer use it; queued ones still render.
#[utoipa::path(
    delete,
    path = "/v1/admin/templates/{key}",
    tag = "admin",
    params(("key" = String, Path, description = "Template key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `templates` scope", content_type = "application/problem+json"),
        (status = 404, description = "No such template", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    _key: Authorized<scope::Templates>,
    key: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.conn().await?;
    if stored::delete(&mut conn, &key).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFoundDetail("no such template"))
    }
}

/// What a producer may set for a user: language and time zone.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserLocale {
    /// BCP 47 locale (`pt-BR`); `null` clears it.
    pub locale: Option<String>,
    /// IANA time zone (`Europe/Warsaw`); `null` clears it.
    pub timezone: Option<String>,
}

/// Set a user's locale (and time zone): producers often know it first.
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}/preferences",
    tag = "notifications",
    params(("user_id" = String, Path, description = "The user", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")),
    request_body(content = UserLocale, content_type = "application/json"),
    responses(
        (status = 200, description = "The user's preferences now", body = Preferences),
        (status = 400, description = "Invalid locale, time zone or user id", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `preferences` scope, or may not address this user (a tenant's key)", content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 429, description = "The key is over its rate; nothing changed; see Retry-After and RateLimit; or too many failed authentications from this address", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL or Redis unavailable", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn set_user_locale(
    producer: Authorized<scope::Preferences>,
    user_id: web::Path<String>,
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    producer.check_user(&user_id)?;
    let request: UserLocale = domain::validation::decode_json(&body)?;
    let mut errors = Vec::new();
    if let Err(why) = domain::notification::validate_user_id(&user_id) {
        errors.push(FieldError::new("user_id", why));
    }
    let wanted = Preferences {
        locale: request.locale,
        timezone: request.timezone,
        muted_categories: Vec::new(),
    };
    errors.extend(wanted.field_errors());
    if !errors.is_empty() {
        return Err(RequestError::InvalidFields(errors).into());
    }
    let wanted = wanted.normalized();
    // A preferences write counts as one notification against the key's rate.
    let rate = state
        .key_rates
        .take(&appender, &producer.identity, 1)
        .await?;
    let mut conn = state.conn().await?;
    preferences::set_locale(
        &mut conn,
        &user_id,
        wanted.locale.as_deref(),
        wanted.timezone.as_deref(),
    )
    .await?;
    let now = preferences::get(&mut conn, &user_id).await?;
    Ok(with_headers(HttpResponse::Ok().json(now), rate))
}
