//! HTTP routes of ingest-api.

pub mod admin;
pub mod notifications;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/notifications",
        web::post().to(notifications::create_notification),
    )
    .route(
        "/v1/admin/dead-letters",
        web::get().to(admin::list_dead_letters),
    )
    // Registered before `{id}/replay` so that `replay` is not taken for an id.
    .route(
        "/v1/admin/dead-letters/replay",
        web::post().to(admin::replay_all_dead_letters),
    )
    .route(
        "/v1/admin/dead-letters/{id}/replay",
        web::post().to(admin::replay_dead_letter),
    );
}
