//! `/healthz` (the process answers) and `/readyz` (its dependencies answer).
//! Kubernetes restarts on the first and routes traffic on the second, so a
//! Redis or PostgreSQL outage makes a pod unready, never dead.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::db::{self, DbPool};
use crate::redis::{RedisStore, RedisSubscriber};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks; services fill in what they use.
#[derive(Clone, Default)]
pub struct Dependencies {
    pub database: Option<DbPool>,
    pub redis: Option<RedisStore>,
    pub subscriber: Option<RedisSubscriber>,
}

impl Dependencies {
    /// Runs every check (each bounded in time) and reports name -> error.
    pub async fn check(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut results = Vec::new();
        if let Some(pool) = &self.database {
            results.push(("postgres", bounded(db::ping(pool)).await));
        }
        if let Some(redis) = &self.redis {
            results.push(("redis", bounded(redis.ping()).await));
        }
        if let Some(subscriber) = &self.subscriber {
            results.push(("redis_subscriber", bounded(subscriber.ping()).await));
        }
        results
    }
}

async fn bounded<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Mounts `/healthz` and `/readyz`; the app must hold `web::Data<Dependencies>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Alive: the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", content_type = "application/json"))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready: PostgreSQL and Redis answer (each checked with a deadline).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\",\"checks\":{…}}`", content_type = "application/json"),
        (status = 503, description = "A dependency does not answer, or the service is still starting", content_type = "application/json"),
    )
)]
pub async fn readyz(deps: web::Data<Dependencies>) -> HttpResponse {
    let results = deps.check().await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, result)| {
            let value = match result {
                Ok(()) => json!({ "status": "ok" }),
                Err(error) => {
                    tracing::warn!(dependency = name, %error, "readiness check failed");
                    json!({ "status": "unavailable" })
                }
            };
            (name.to_owned(), value)
        })
        .collect();
    let body = json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
