//! Producers changing a user's notification state for them (API keys with
//! the `notify` scope): the user read or dealt with something elsewhere in
//! the product. Same frames and counts as when the user does it.

use actix_web::{HttpResponse, web};
use domain::{ChangeResult, FieldError, RequestError};
use platform::body::JsonBody;
use platform::inbox_changes;
use platform::storage::inbox::{Change, Filter, Target};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::rate_limit::with_headers;
use crate::state::{AppState, Appender};

/// Most ids one request may name.
pub const MAX_IDS: usize = 1_000;

/// Which of the user's notifications: `ids`, or `all` (optionally of one
/// `category`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserNotifications {
    /// Up to 1,000 of the user's notification ids (others are ignored).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<Uuid>>,
    /// Every notification of the user (instead of `ids`).
    #[serde(default)]
    pub all: bool,
    /// With `all`: only this category.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub category: Option<String>,
}

impl UserNotifications {
    /// The target, or every reason the request names none.
    fn target(&self) -> Result<Target<'_>, Vec<FieldError>> {
        let mut errors = Vec::new();
        let target = match (&self.ids, self.all) {
            (Some(_), true) | (None, false) => {
                errors.push(FieldError::new("ids", "give either `ids` or `all: true`"));
                None
            }
            (Some(ids), false) if ids.is_empty() || ids.len() > MAX_IDS => {
                errors.push(FieldError::new(
                    "ids",
                    format!("1 to {MAX_IDS} ids, got {}", ids.len()),
                ));
                None
            }
            (Some(ids), false) => Some(Target::Ids(ids)),
            (None, true) => Some(Target::All(Filter {
                category: self.category.as_deref(),
                ..Filter::default()
            })),
        };
        if let Some(category) = &self.category {
            if self.ids.is_some() {
                errors.push(FieldError::new("category", "only with `all`"));
            } else if let Err(why) = domain::notification::validate_category(category) {
                errors.push(FieldError::new("category", why));
            }
        }
        match target {
            Some(target) if errors.is_empty() => Ok(target),
            _ => Err(errors),
        }
    }
}

/// What both endpoints answer.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes the answers for the OpenAPI document only"
)]
enum ChangeResponses {
    /// What changed, and the user's state after it
    #[response(status = 200)]
    Changed(ChangeResult),
    /// Neither or both of `ids` and `all`, too many ids, an invalid category or user id
    #[response(status = 400, content_type = "application/problem+json")]
    Invalid,
    /// Missing or unknown API key
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated,
    /// The key lacks the `notify` scope, or may not address this user (a tenant's key)
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden,
    /// Body over the size limit
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge,
    /// Content type is not JSON
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson,
    /// The key is over its rate; nothing changed; see Retry-After and RateLimit; or too many failed authentications from this address
    #[response(status = 429, content_type = "application/problem+json")]
    TooMany,
    /// PostgreSQL unavailable
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable,
}

/// Mark some or all of a user's notifications read, for them.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/notifications/read",
    tag = "notifications",
    params(("user_id" = String, Path, description = "The user", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")),
    request_body(content = UserNotifications, content_type = "application/json"),
    responses(ChangeResponses),
    security(("api_key" = []))
)]
pub async fn read(
    producer: Authorized<scope::Notify>,
    user_id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    change(producer, &user_id, body, &state, &appender, Change::Read).await
}

/// Archive some or all of a user's notifications, for them.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/notifications/archive",
    tag = "notifications",
    params(("user_id" = String, Path, description = "The user", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")),
    request_body(content = UserNotifications, content_type = "application/json"),
    responses(ChangeResponses),
    security(("api_key" = []))
)]
pub async fn archive(
    producer: Authorized<scope::Notify>,
    user_id: web::Path<String>,
    body: JsonBody,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    change(producer, &user_id, body, &state, &appender, Change::Archive).await
}

async fn change(
    producer: Authorized<scope::Notify>,
    user_id: &str,
    JsonBody(body): JsonBody,
    state: &AppState,
    appender: &Appender,
    change: Change,
) -> Result<HttpResponse, ApiError> {
    producer.check_user(user_id)?;
    let request: UserNotifications = domain::validation::decode_json(&body)?;
    let user = domain::notification::validate_user_id(user_id)
        .map_err(|why| FieldError::new("user_id", why));
    let target = match (request.target(), user) {
        (Ok(target), Ok(())) => target,
        (target, user) => {
            let errors = target.err().into_iter().flatten().chain(user.err());
            return Err(RequestError::InvalidFields(errors.collect()).into());
        }
    };
    // A change counts as one notification against the key's rate.
    let rate = state
        .key_rates
        .take(appender, &producer.identity, 1)
        .await?;
    let changed = inbox_changes::apply(&state.db, &state.redis, user_id, target, change).await?;
    Ok(with_headers(HttpResponse::Ok().json(changed), rate))
}
