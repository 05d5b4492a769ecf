//! Prometheus metrics: each service builds its own `Registry` (no process
//! globals, so tests can run several services in one process) and serves it
//! at `/metrics` in the text exposition format.
//!
//! Every service exposes the same base set (names in docs/operations.md):
//! `herald_build_info`, and per request `herald_http_requests_total` and
//! `herald_http_request_duration_seconds`, recorded by [`observe`], which also
//! opens the request's trace span. Labels never carry user ids: the route is
//! the matched pattern (`/v1/users/{user_id}/preferences`), not the path.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tracing::field::Empty;

use crate::telemetry::{self, traceparent};

/// Mounts `GET /metrics`; the app must hold `web::Data<Arc<Registry>>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(render));
}

/// The service's metrics (OpenMetrics text); on `http.admin_port` when set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub async fn render(registry: web::Data<Arc<Registry>>) -> HttpResponse {
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    service: &'static str,
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The method as a label: the standard ones, anything else `OTHER` (a
/// client must not be able to add series by inventing methods).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The metrics every HTTP server of Herald records per request.
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        let route = RouteLabels { method, route };
        self.duration.get_or_create(&route).observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.route,
                status,
            })
            .inc();
    }
}

/// A service's registry with the base set registered: `herald_build_info`
/// and the HTTP metrics ([`observe`] needs the returned `HttpMetrics` as
/// `web::Data`).
pub fn service_registry(service: &'static str) -> (Registry, web::Data<HttpMetrics>) {
    let mut registry = Registry::default();
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            service,
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    let http = HttpMetrics {
        requests: Family::default(),
        duration: Family::new_with_constructor(latency_histogram),
    };
    let herald = registry.sub_registry_with_prefix("herald");
    herald.register("build_info", "Service name and version (always 1)", build);
    let r = herald.sub_registry_with_prefix("http");
    r.register(
        "requests",
        "HTTP requests answered, by method, route pattern and status",
        http.requests.clone(),
    );
    r.register(
        "request_duration_seconds",
        "Time to answer an HTTP request, by method and route pattern",
        http.duration.clone(),
    );
    (registry, web::Data::new(http))
}

/// Paths probed every few seconds: counted, but not traced.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Middleware (`App::wrap(from_fn(observe))`): counts and times every
/// request by its route pattern, and runs it inside a server span that
/// continues the caller's `traceparent` header when there is one.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = method_label(req.method());
    // From the app's resource map, so known before routing runs; a path
    // that matches no route is `unmatched` (its text could hold anything).
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = if !telemetry::exporting() || is_probe(req.path()) {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            http.route = %route,
            http.response.status_code = Empty,
        );
        let caller = req
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok());
        traceparent::adopt(&span, caller);
        span
    };
    let response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Some(metrics) = metrics {
        metrics.observe(method, route, status, started.elapsed().as_secs_f64());
    }
    Ok(response)
}
