//! The user's inbox over REST, with the same JWT as the socket. Every query
//! is scoped to the token's user: another user's notification id answers
//! 404, exactly like an unknown one.

use actix_cors::Cors;
use actix_web::dev::HttpServiceFactory;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use domain::Preferences;
use domain::{ChangeResult, InboxPage, Notification, SeenRequest, SnoozeRequest, UnreadState};
use platform::body::JsonBody;
use platform::rendering::Wanted;
use platform::storage::inbox::{self, Change, Filter, PageQuery, Status, Target};
use platform::storage::preferences;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::GatewayError;
use crate::origins;
use crate::state::GatewayState;
use crate::user::User;
use platform::inbox_changes;

/// `/v1/me/*`, behind CORS for the pages in `gateway.allowed_origins`.
pub fn scope(cors: Cors) -> impl HttpServiceFactory {
    web::scope("/v1/me")
        .wrap(cors)
        .wrap(from_fn(origins::cors_errors_as_problems))
        .route("/notifications", web::get().to(list))
        .route("/unread-count", web::get().to(unread_count))
        // Before `{id}/read` so that `read-all` and `archive-all` are not taken for ids.
        .route("/notifications/read-all", web::post().to(read_all))
        .route("/notifications/archive-all", web::post().to(archive_all))
        .route("/notifications/seen", web::post().to(seen))
        .route("/notifications/{id}/read", web::post().to(read_one))
        .route("/notifications/{id}/unread", web::post().to(unread_one))
        .route("/notifications/{id}/archive", web::post().to(archive))
        .route("/notifications/{id}/unarchive", web::post().to(unarchive))
        .route("/notifications/{id}/snooze", web::post().to(snooze))
        .route("/notifications/{id}/unsnooze", web::post().to(unsnooze))
        .route("/preferences", web::get().to(get_preferences))
        .route("/preferences", web::put().to(put_preferences))
}

/// The user's preferences (defaults when never set).
#[utoipa::path(
    get,
    path = "/v1/me/preferences",
    tag = "preferences",
    responses(
        (status = 200, description = "Preferences", body = Preferences),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_preferences(
    user: User,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let mut conn = state.conn().await?;
    let current = preferences::get(&mut conn, &user.id).await?;
    Ok(HttpResponse::Ok().json(current))
}

/// Replace the user's preferences: locale (BCP 47), timezone (IANA), muted categories (retroactive: a muted category leaves the counts at once, with a `muted` frame to every device).
#[utoipa::path(
    put,
    path = "/v1/me/preferences",
    tag = "preferences",
    request_body(content = Preferences, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (normalized)", body = Preferences),
        (status = 400, description = "Invalid locale, time zone or category", content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 429, description = "Too many writes by this user (see Retry-After), or too many failed authentications from this address", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_preferences(
    user: User,
    JsonBody(body): JsonBody,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    state.clients.write(&user.id)?;
    let wanted = validated(&body, Preferences::field_errors)?.normalized();
    inbox_changes::set_preferences(&state.db, &state.redis, &user.id, &wanted).await?;
    Ok(HttpResponse::Ok().json(wanted))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Cursor: only notifications with `seq` below this (`next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only unread ones.
    #[serde(default)]
    pub unread: bool,
    /// Only this category.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub category: Option<String>,
    /// `active` (default): the inbox, archived and snoozed ones left out.
    /// `archived`: archived ones only. `snoozed`: snoozed ones only (with
    /// `snoozed_until`). `all`: every one. Expired ones are never listed.
    #[param(pattern = "^(active|archived|snoozed|all)$")]
    pub status: Option<String>,
    /// `delivered` (default): the text as first delivered. `current`:
    /// templated notifications rendered again in the user's current locale.
    #[param(pattern = "^(delivered|current)$")]
    pub render: Option<String>,
}

/// List the inbox, newest first, by pages.
#[utoipa::path(
    get,
    path = "/v1/me/notifications",
    tag = "inbox",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = InboxPage),
        (status = 400, description = "Invalid query", content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    user: User,
    query: web::Query<ListQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(GatewayError::BadQuery("limit must be 1..=100".into()));
    }
    if let Some(category) = &query.category {
        domain::notification::validate_category(category)
            .map_err(|why| GatewayError::BadQuery(format!("category {why}")))?;
    }
    let status = match query.status.as_deref() {
        None | Some("active") => Status::Active,
        Some("archived") => Status::Archived,
        Some("snoozed") => Status::Snoozed,
        Some("all") => Status::All,
        Some(_) => {
            return Err(GatewayError::BadQuery(
                "status must be `active`, `archived`, `snoozed` or `all`".into(),
            ));
        }
    };
    let page_query = PageQuery {
        before: query.before,
        limit,
        unread_only: query.unread,
        category: query.category.clone(),
        status,
    };
    let render_current = match query.render.as_deref() {
        None | Some("delivered") => false,
        Some("current") => true,
        Some(_) => {
            return Err(GatewayError::BadQuery(
                "render must be `delivered` or `current`".into(),
            ));
        }
    };
    let mut conn = state.conn().await?;
    let (mut items, next_before) = inbox::page(&mut conn, &user.id, &page_query).await?;
    if render_current {
        render_again(&state, &mut conn, &user.id, &mut items).await?;
    }
    Ok(HttpResponse::Ok().json(InboxPage { items, next_before }))
}

/// Renders templated items again in the user's current locale, with the
/// template's current version (else the version they were rendered with).
/// An item whose template cannot render keeps the text it was delivered with.
async fn render_again(
    state: &GatewayState,
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: &str,
    items: &mut [Notification],
) -> Result<(), GatewayError> {
    let ids: Vec<Uuid> = items.iter().map(|n| n.id).collect();
    let refs = inbox::template_refs(conn, user_id, &ids).await?;
    if refs.is_empty() {
        return Ok(());
    }
    let locale = preferences::get(conn, user_id).await?.locale;
    for item in items.iter_mut() {
        let Some((key, version, params)) = refs.get(&item.id) else {
            continue;
        };
        let template = match state.renderer.latest(conn, key).await {
            Ok(template) => Ok(template),
            Err(_) => state.renderer.version(conn, key, *version).await,
        };
        let params = params.as_object().cloned().unwrap_or_default();
        if let Ok(rendered) = template.map_err(|e| e.to_string()).and_then(|t| {
            let wanted = Wanted {
                request: None,
                user: locale.as_deref(),
            };
            state.renderer.render(&t, wanted, &params)
        }) {
            item.title = rendered.title;
            item.body = rendered.body;
            item.locale = Some(rendered.locale);
        }
    }
    Ok(())
}

/// The unread count (the badge) and the state version.
#[utoipa::path(
    get,
    path = "/v1/me/unread-count",
    tag = "inbox",
    responses(
        (status = 200, description = "Current state", body = UnreadState),
        (status = 401, description = "Missing or invalid token", content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", content_type = "application/problem+json"),
        (status = 503, description = "PostgreSQL unavailable", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn unread_count(
    user: User,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let mut conn = state.conn().await?;
    let current = inbox::state(&mut conn, &user.id).await?;
    Ok(HttpResponse::Ok().json(UnreadState {
        unread: current.counts.unread,
        version: current.version,
        last_seq: current.last_seq,
        counts: current.counts,
    }))
}

/// Mark every notification up to `up_to_seq` seen (the feed was opened):
/// the `unseen` count drops, `unread` stays; 5,000 at a time.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/seen",
    tag = "inbox",
    request_body(content = SeenRequest, content_type = "application/json"),
    responses(ChangeAllResponses),
    security(("bearer" = []))
)]
pub async fn seen(
    user: User,
    JsonBody(body): JsonBody,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let wanted: SeenRequest =
        domain::validation::decode_json(&body).map_err(GatewayError::Invalid)?;
    let filter = seen_filter(wanted.up_to_seq).ok_or_else(|| {
        GatewayError::Invalid(domain::RequestError::InvalidFields(vec![
            domain::FieldError::new("up_to_seq", "must be 0 or more"),
        ]))
    })?;
    change_all(&state, &user, filter, Change::Seen).await
}

/// The notifications a `seen` up to `up_to_seq` covers; `None` when it is
/// negative.
pub fn seen_filter(up_to_seq: i64) -> Option<Filter<'static>> {
    (up_to_seq >= 0).then(|| Filter {
        before_seq: Some(up_to_seq.saturating_add(1)),
        ..Filter::default()
    })
}

/// Mark one notification read (again: no change).
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/read",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(ChangeOneResponses),
    security(("bearer" = []))
)]
pub async fn read_one(
    user: User,
    id: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    change_one(&state, &user, &id, Change::Read).await
}

/// Mark one notification unread again (it counts again unless archived or muted; again: no change).
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/unread",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(ChangeOneResponses),
    security(("bearer" = []))
)]
pub async fn unread_one(
    user: User,
    id: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    change_one(&state, &user, &id, Change::Unread).await
}

/// What a change of one notification answers.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes the answers for the OpenAPI document only"
)]
enum ChangeOneResponses {
    /// State after the change
    #[response(status = 200)]
    Changed(ChangeResult),
    /// Missing or invalid token
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated,
    /// No such notification of yours
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound,
    /// Too many writes by this user (see Retry-After), or too many failed authentications from this address
    #[response(status = 429, content_type = "application/problem+json")]
    TooMany,
    /// PostgreSQL unavailable
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable,
}

/// What a change of every notification (read-all, archive-all, seen) answers.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "describes the answers for the OpenAPI document only"
)]
enum ChangeAllResponses {
    /// State after the change
    #[response(status = 200)]
    Changed(ChangeResult),
    /// Invalid query or body
    #[response(status = 400, content_type = "application/problem+json")]
    Invalid,
    /// Missing or invalid token
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated,
    /// Too many writes by this user (see Retry-After), or too many failed authentications from this address
    #[response(status = 429, content_type = "application/problem+json")]
    TooMany,
    /// PostgreSQL unavailable
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable,
}

/// Which notifications read-all changes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadAllQuery {
    /// Only this category.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub category: Option<String>,
    /// Only notifications with `seq` below this (the newest one a screen
    /// showed plus one: ones that arrived since are left alone).
    #[param(minimum = 1)]
    pub before_seq: Option<i64>,
}

/// Which notifications archive-all changes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ArchiveAllQuery {
    /// Only this category.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub category: Option<String>,
    /// Only notifications with `seq` below this.
    #[param(minimum = 1)]
    pub before_seq: Option<i64>,
    /// Only read ones ("archive everything read").
    #[serde(default)]
    pub read: bool,
}

/// The filter of a bulk change, or why its query is refused.
fn filter(
    category: Option<&str>,
    before_seq: Option<i64>,
    read_only: bool,
) -> Result<Filter<'_>, GatewayError> {
    if let Some(category) = category {
        domain::notification::validate_category(category)
            .map_err(|why| GatewayError::BadQuery(format!("category {why}")))?;
    }
    if before_seq.is_some_and(|seq| seq < 1) {
        return Err(GatewayError::BadQuery(
            "before_seq must be 1 or more".into(),
        ));
    }
    Ok(Filter {
        category,
        before_seq,
        read_only,
    })
}

/// Mark every notification read (or those the query selects), 5,000 at a
/// time.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/read-all",
    tag = "inbox",
    params(ReadAllQuery),
    responses(ChangeAllResponses),
    security(("bearer" = []))
)]
pub async fn read_all(
    user: User,
    query: web::Query<ReadAllQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let filter = filter(query.category.as_deref(), query.before_seq, false)?;
    change_all(&state, &user, filter, Change::Read).await
}

/// Archive every notification (or those the query selects: say, every
/// read one), 5,000 at a time.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/archive-all",
    tag = "inbox",
    params(ArchiveAllQuery),
    responses(ChangeAllResponses),
    security(("bearer" = []))
)]
pub async fn archive_all(
    user: User,
    query: web::Query<ArchiveAllQuery>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let filter = filter(query.category.as_deref(), query.before_seq, query.read)?;
    change_all(&state, &user, filter, Change::Archive).await
}

/// `change` of every notification of the user `filter` lets through (the
/// query already checked: a refused one costs no write).
async fn change_all(
    state: &GatewayState,
    user: &User,
    filter: Filter<'_>,
    change: Change,
) -> Result<HttpResponse, GatewayError> {
    state.clients.write(&user.id)?;
    let target = Target::All(filter);
    let change = inbox_changes::apply(&state.db, &state.redis, &user.id, target, change).await?;
    Ok(HttpResponse::Ok().json(change))
}

/// Archive one notification: it leaves the default list and the unread count.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/archive",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(ChangeOneResponses),
    security(("bearer" = []))
)]
pub async fn archive(
    user: User,
    id: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    change_one(&state, &user, &id, Change::Archive).await
}

/// Unarchive one notification: back in the default list, and counted again if unread and not muted.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/unarchive",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(ChangeOneResponses),
    security(("bearer" = []))
)]
pub async fn unarchive(
    user: User,
    id: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    change_one(&state, &user, &id, Change::Unarchive).await
}

/// Snooze one notification: it leaves the list and the counts until
/// `until`, then comes back (an `unsnoozed` frame to every device). One
/// snoozed already is snoozed until `until` instead.
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/snooze",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    request_body(content = SnoozeRequest, content_type = "application/json"),
    responses(
        ChangeOneResponses,
        (status = 400, description = "Invalid body", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn snooze(
    user: User,
    id: web::Path<String>,
    JsonBody(body): JsonBody,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    let now = chrono::Utc::now();
    let wanted = validated(&body, |wanted: &SnoozeRequest| wanted.field_errors(now))?;
    change_one(&state, &user, &id, Change::Snooze(wanted.until)).await
}

/// Bring a snoozed notification back now (one not snoozed: no change).
#[utoipa::path(
    post,
    path = "/v1/me/notifications/{id}/unsnooze",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(ChangeOneResponses),
    security(("bearer" = []))
)]
pub async fn unsnooze(
    user: User,
    id: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    change_one(&state, &user, &id, Change::Unsnooze).await
}

/// A JSON body decoded and checked by `check` (its field errors): 400
/// naming every field that is wrong.
fn validated<T: serde::de::DeserializeOwned>(
    body: &[u8],
    check: impl FnOnce(&T) -> Vec<domain::FieldError>,
) -> Result<T, GatewayError> {
    let wanted: T = domain::validation::decode_json(body).map_err(GatewayError::Invalid)?;
    let errors = check(&wanted);
    if errors.is_empty() {
        Ok(wanted)
    } else {
        Err(GatewayError::Invalid(domain::RequestError::InvalidFields(
            errors,
        )))
    }
}

/// An id that is not a UUID cannot be the user's: 404 like any other.
fn parse_id(raw: &str) -> Result<Uuid, GatewayError> {
    Uuid::parse_str(raw).map_err(|_| GatewayError::NoSuchNotification)
}

/// `change` of one notification of the user's: 404 unless it is listed
/// for them.
async fn change_one(
    state: &GatewayState,
    user: &User,
    raw_id: &str,
    change: Change,
) -> Result<HttpResponse, GatewayError> {
    state.clients.write(&user.id)?;
    let id = parse_id(raw_id)?;
    let mut conn = state.conn().await?;
    if !inbox::owns(&mut conn, &user.id, id).await? {
        return Err(GatewayError::NoSuchNotification);
    }
    drop(conn);
    let change = inbox_changes::apply(
        &state.db,
        &state.redis,
        &user.id,
        Target::Ids(&[id]),
        change,
    )
    .await?;
    Ok(HttpResponse::Ok().json(change))
}
