//! HTTP routes of ingest-api.

pub mod notifications;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/notifications",
        web::post().to(notifications::create_notification),
    );
}
