//! The OpenAPI 3.1 document of ingest-api, generated from the handlers and
//! types, served at `/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, batch, erasures, notifications, status, templates, tokens, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald ingest API", description = "Producers send notifications to users."),
    paths(
        notifications::create_notification,
        batch::create_batch,
        status::get_status,
        admin::list_dead_letters,
        admin::replay_dead_letter,
        admin::replay_all_dead_letters,
        templates::create_version,
        templates::list,
        templates::get,
        templates::delete,
        templates::set_user_locale,
        users::read,
        users::archive,
        erasures::erase_user,
        erasures::get_erasure,
        tokens::revoke,
        tokens::list,
    ),
    components(schemas(
        domain::NotificationRequest,
        domain::Priority,
        domain::FieldError,
        domain::DeadLetter,
        notifications::Accepted,
        batch::BatchRequest,
        batch::BatchResult,
        batch::ItemResult,
        status::NotificationStatus,
        status::Place,
        status::UserState,
        status::DeadLetterSummary,
        admin::ReplayRequest,
        admin::Replayed,
        platform::dlq::ReplayReport,
        platform::dlq::ReplayFailure,
        ::templates::TemplateSource,
        ::templates::ParamKind,
        ::templates::TemplateIssue,
        platform::storage::templates::StoredTemplate,
        templates::CreatedVersion,
        templates::UserLocale,
        domain::Preferences,
        users::UserNotifications,
        domain::ChangeResult,
        platform::storage::erasures::Erasure,
        platform::storage::erasures::ErasureStatus,
        tokens::RevokeToken,
        platform::storage::revoked_tokens::RevokedToken,
    )),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "notifications", description = "Send notifications"),
        (name = "admin", description = "Operators: templates, dead letters, revoked user tokens (API keys with the `templates`, `dlq` or `admin` scope)")
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                crate::auth::API_KEY_HEADER.as_str(),
            ))),
        );
    }
}

/// The service's API and the operations endpoints every service has.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(platform::server::OperationsDoc::openapi())
}

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}
