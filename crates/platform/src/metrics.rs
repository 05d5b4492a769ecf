//! Prometheus metrics: each service builds its own `Registry` (no process
//! globals, so tests can run several services in one process) and serves it
//! at `/metrics` in the text exposition format.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Mounts `GET /metrics`; the app must hold `web::Data<Arc<Registry>>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(render));
}

async fn render(registry: web::Data<Arc<Registry>>) -> HttpResponse {
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(err) => {
            tracing::error!(%err, "cannot encode metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// Buckets for latencies from 1 ms to about 30 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}
