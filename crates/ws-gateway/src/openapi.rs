//! The OpenAPI 3.1 document of the gateway's REST API (the inbox), served
//! at `/openapi.json`. The WebSocket protocol is documented in docs/api.md
//! and typed in `domain::frames`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::inbox;

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald inbox API", description = "A user's notifications, read state and badge."),
    paths(
        inbox::list,
        inbox::unread_count,
        inbox::read_one,
        inbox::unread_one,
        inbox::read_all,
        inbox::archive_all,
        inbox::seen,
        inbox::archive,
        inbox::unarchive,
        inbox::snooze,
        inbox::unsnooze,
        inbox::get_preferences,
        inbox::put_preferences,
    ),
    components(schemas(
        domain::Notification,
        domain::Priority,
        domain::Preferences,
        domain::InboxPage,
        domain::UnreadState,
        domain::ChangeResult,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "inbox", description = "The user's notifications (JWT)"),
        (name = "preferences", description = "The user's language, time zone and muted categories (JWT)")
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
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
