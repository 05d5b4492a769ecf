//! HTTP routes of ingest-api.

pub mod admin;
pub mod batch;
pub mod erasures;
pub mod notifications;
pub mod status;
pub mod templates;
pub mod tokens;
pub mod users;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::metrics::count_rejections;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/notifications")
            .wrap(from_fn(count_rejections))
            .route(web::post().to(notifications::create_notification)),
    )
    .service(
        web::resource("/v1/notifications/batch")
            .wrap(from_fn(count_rejections))
            .route(web::post().to(batch::create_batch)),
    )
    // After `batch`, so that `batch` is not taken for an id.
    .route("/v1/notifications/{id}", web::get().to(status::get_status))
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
    )
    .route("/v1/admin/tokens/revoked", web::post().to(tokens::revoke))
    .route("/v1/admin/tokens/revoked", web::get().to(tokens::list))
    .route("/v1/admin/templates", web::get().to(templates::list))
    .route(
        "/v1/admin/templates/{key}",
        web::post().to(templates::create_version),
    )
    .route("/v1/admin/templates/{key}", web::get().to(templates::get))
    .route(
        "/v1/admin/templates/{key}",
        web::delete().to(templates::delete),
    )
    .route(
        "/v1/users/{user_id}/preferences",
        web::put().to(templates::set_user_locale),
    )
    .route(
        "/v1/users/{user_id}/notifications/read",
        web::post().to(users::read),
    )
    .route(
        "/v1/users/{user_id}/notifications/archive",
        web::post().to(users::archive),
    )
    .route(
        "/v1/users/{user_id}",
        web::delete().to(erasures::erase_user),
    )
    .route("/v1/erasures/{id}", web::get().to(erasures::get_erasure));
}
