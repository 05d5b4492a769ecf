//! The one way a Herald service serves HTTP: every service's app starts
//! from [`ServerBase::app`] (request metrics and tracing, `Retry-After` on
//! 503 problems, `/healthz`, `/readyz`, `/metrics`) and is served by
//! [`serve`] (the listener from `http.host`/`http.port`, and
//! `http.admin_port` when set: then `/metrics` and `/v1/admin/*` answer
//! only there, and everything but the health endpoints only on `port`;
//! worker threads,
//! no signal handling of its own: a service stops when its shutdown token
//! is cancelled, after finishing the requests in flight). While a service
//! still waits for PostgreSQL and Redis, [`starting`] answers on the same
//! port (`/healthz` 200, `/readyz` 503), so an orchestrator sees it alive
//! but not ready, never dead.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::health::{self, Dependencies};
use crate::metrics::{self, HttpMetrics};
use crate::problem::{Problem, is_problem};
use crate::settings::HttpSettings;

/// What every service's app holds whatever its routes: the dependencies
/// `/readyz` checks, the metrics registry and the HTTP metrics, and the
/// `Retry-After` of its 503 answers.
#[derive(Clone)]
pub struct ServerBase {
    dependencies: web::Data<Dependencies>,
    registry: web::Data<Arc<Registry>>,
    http_metrics: web::Data<HttpMetrics>,
    retry_after: web::Data<RetryAfter>,
    admin_port: web::Data<AdminPort>,
    payload: web::PayloadConfig,
}

/// `http.admin_port` (0: none), for [`split_ports`].
#[derive(Debug, Clone, Copy)]
struct AdminPort(u16);

/// Seconds a 503 answer asks the client to wait (`http.retry_after_secs`).
#[derive(Debug, Clone, Copy)]
pub struct RetryAfter(pub u32);

impl ServerBase {
    /// `registry` and `http_metrics` come from
    /// [`metrics::service_registry`], with the service's own metrics
    /// registered in it.
    pub fn new(
        http: &HttpSettings,
        dependencies: Dependencies,
        registry: Registry,
        http_metrics: web::Data<HttpMetrics>,
    ) -> Self {
        Self {
            dependencies: web::Data::new(dependencies),
            registry: web::Data::new(Arc::new(registry)),
            http_metrics,
            retry_after: web::Data::new(RetryAfter(http.retry_after_secs)),
            admin_port: web::Data::new(AdminPort(http.admin_port)),
            // Bodies read whole (`web::Bytes`) stop at `http.max_body_bytes`
            // on every route (actix's own default is 256 KiB).
            payload: web::PayloadConfig::new(http.max_body_bytes),
        }
    }

    /// An app with the shared middleware, data and routes; the service adds
    /// its own data, routes and answer to unknown paths.
    pub fn app(
        &self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody + use<>>,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        App::new()
            .wrap(from_fn(problems_only))
            .wrap(from_fn(split_ports))
            .wrap(from_fn(retry_after))
            .wrap(from_fn(metrics::observe))
            .app_data(self.dependencies.clone())
            .app_data(self.registry.clone())
            .app_data(self.http_metrics.clone())
            .app_data(self.retry_after.clone())
            .app_data(self.admin_port.clone())
            .app_data(self.payload.clone())
            .configure(health::configure)
            .configure(metrics::configure)
    }
}

/// The OpenAPI document of what every service serves (`/healthz`,
/// `/readyz`, `/metrics`): stream-worker's whole document, merged into the
/// others'.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Herald operations endpoints"),
    paths(health::healthz, health::readyz, metrics::render),
    tags((name = "operations", description = "Health and metrics, on every service"))
)]
pub struct OperationsDoc;

/// The document of a service whose only endpoints are the operations ones.
pub fn operations_document() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    OperationsDoc::openapi()
}

/// `GET /openapi.json` of a service whose only endpoints are the operations ones.
pub async fn operations_openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(operations_document())
}

/// The answer to what no route took: `405 Method Not Allowed` with `Allow`
/// when the path is one of the service's (its OpenAPI document lists the
/// methods each path answers), else `404`; both problem+json. For the
/// app's `default_service`, which actix also hands a known path asked with
/// another method.
pub fn unrouted(
    doc: &utoipa::openapi::OpenApi,
) -> impl Fn(actix_web::HttpRequest) -> std::future::Ready<actix_web::HttpResponse> + Clone + 'static
{
    let allowed: std::collections::HashMap<String, HeaderValue> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let methods = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
                ("OPTIONS", &item.options),
            ]
            .into_iter()
            .filter(|(_, operation)| operation.is_some())
            .map(|(method, _)| method)
            .collect::<Vec<_>>()
            .join(", ");
            HeaderValue::from_str(&methods)
                .ok()
                .map(|value| (path.clone(), value))
        })
        .collect();
    let allowed = std::sync::Arc::new(allowed);
    move |req: actix_web::HttpRequest| {
        let known = req
            .match_pattern()
            .and_then(|pattern| allowed.get(&pattern).cloned());
        std::future::ready(match known {
            Some(methods) => {
                let mut answer = Problem::for_status(StatusCode::METHOD_NOT_ALLOWED)
                    .detail(format!(
                        "{} is not answered here; this path answers {}",
                        req.method(),
                        methods.to_str().unwrap_or_default()
                    ))
                    .respond(&"method not allowed");
                answer.headers_mut().insert(header::ALLOW, methods);
                answer
            }
            None => Problem::for_status(StatusCode::NOT_FOUND)
                .detail("no such endpoint; see /openapi.json")
                .respond(&"no route"),
        })
    }
}

/// Middleware: a problem answer with status 503 that names no
/// `Retry-After` gets the configured one, so every service answers an
/// outage the same way without its error types knowing the setting.
async fn retry_after(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    // Only a 503 looks anything up: other answers pay one comparison.
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && is_problem(response.headers())
        && !response.headers().contains_key(header::RETRY_AFTER)
        && let Some(secs) = response
            .request()
            .app_data::<web::Data<RetryAfter>>()
            .map(|r| r.0)
    {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}

/// Middleware: every refusal is problem+json. A 4xx or 5xx answer that a
/// service's own error types did not render (actix's extractors and router:
/// a malformed query or path, a method the route lacks, a body over the
/// limit) becomes the problem of its status, with the error's message as
/// detail (bounded) and its headers (`Allow`, `Retry-After`) kept.
async fn problems_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let status = response.status();
    if status.as_u16() < 400 || is_problem(response.headers()) {
        return Ok(response.map_into_boxed_body());
    }
    let detail = response.response().error().map(ToString::to_string);
    let (req, original) = response.into_parts();
    let mut problem = Problem::for_status(status);
    if let Some(detail) = detail {
        problem = problem.detail(detail);
    }
    let mut answer = problem.to_response();
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(req, answer))
}

/// Where a path may be asked for when `http.admin_port` is set.
#[derive(Debug, PartialEq, Eq)]
enum PortRole {
    /// `/healthz`, `/readyz`: both ports (probes may use either).
    Both,
    /// `/metrics`, `/v1/admin/*`: the internal admin port only.
    Admin,
    /// Everything else (the API): the main port only.
    Main,
}

fn port_role(path: &str) -> PortRole {
    match path {
        "/healthz" | "/readyz" => PortRole::Both,
        "/metrics" => PortRole::Admin,
        _ if path.starts_with("/v1/admin/") || path == "/v1/admin" => PortRole::Admin,
        _ => PortRole::Main,
    }
}

/// Middleware: with an admin port, a path asked for on the other port is
/// answered 404, as if it did not exist there (an Ingress that forwards
/// the main port can never expose metrics or admin endpoints).
async fn split_ports(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let admin_port = req.app_data::<web::Data<AdminPort>>().map_or(0, |p| p.0);
    if admin_port != 0 {
        let on_admin = req.app_config().local_addr().port() == admin_port;
        let allowed = match port_role(req.path()) {
            PortRole::Both => true,
            PortRole::Admin => on_admin,
            PortRole::Main => !on_admin,
        };
        if !allowed {
            let answer = Problem::for_status(StatusCode::NOT_FOUND)
                .detail(if on_admin {
                    "the admin port serves /metrics, /v1/admin/*, /healthz and /readyz only"
                } else {
                    "no such endpoint on this port"
                })
                .respond(&"wrong port");
            return Ok(req.into_response(answer));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// How many HTTP worker threads a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// `http.workers`, or one per core when it is 0.
    FromSettings,
    /// Exactly this many (the worker's `/metrics` and probes need one).
    Fixed(usize),
}

/// How a service's server behaves beyond its app.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub workers: Workers,
    /// How long a stopping server waits for open connections (actix-web's
    /// default when `None`: 30 s).
    pub shutdown_timeout: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: Workers::FromSettings,
            shutdown_timeout: None,
        }
    }
}

/// A bound, running HTTP server.
pub struct Serving {
    port: u16,
    server: Server,
}

/// Binds `http.host:http.port` (port 0 picks a free one) and starts serving
/// the apps `factory` builds, one per worker thread.
pub fn serve<F, T, B>(
    http: &HttpSettings,
    options: ServerOptions,
    factory: F,
) -> std::io::Result<Serving>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let listener = bind(http)?;
    let port = listener.local_addr()?.port();
    let mut server = HttpServer::new(factory)
        .disable_signals()
        // Answers and frames are small and must leave at once, not wait
        // for the previous segment's ACK.
        .tcp_nodelay(true)
        .listen(listener)?;
    if http.admin_port != 0 {
        server = server.listen(TcpListener::bind((http.host.as_str(), http.admin_port))?)?;
    }
    server = match options.workers {
        Workers::FromSettings if http.workers > 0 => server.workers(http.workers),
        Workers::FromSettings => server,
        Workers::Fixed(n) => server.workers(n),
    };
    if let Some(timeout) = options.shutdown_timeout {
        server = server.shutdown_timeout(timeout.as_secs());
    }
    Ok(Serving {
        port,
        server: server.run(),
    })
}

/// The listener [`starting`] bound, for the service's own server to take
/// over: both serve the one socket until the first stops, so no connection
/// is refused or reset in between.
static STARTED_ON: Mutex<Option<TcpListener>> = Mutex::new(None);

/// The listener of `http.host:http.port`: the one [`starting`] bound when
/// it is that address, else a new one.
fn bind(http: &HttpSettings) -> std::io::Result<TcpListener> {
    let wanted: Vec<SocketAddr> = (http.host.as_str(), http.port).to_socket_addrs()?.collect();
    let started = STARTED_ON.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(listener) = started
        && http.port != 0
        && listener.local_addr().is_ok_and(|a| wanted.contains(&a))
    {
        return Ok(listener);
    }
    TcpListener::bind(wanted.as_slice())
}

/// While a service connects to PostgreSQL and Redis (which can take as
/// long as they are down), its port answers: `/healthz` 200 (alive),
/// `/readyz` 503 (`{"status":"starting"}`), anything else 503
/// problem+json with `Retry-After`. `None` when `http.port` is 0: the
/// service's own server would get another port.
pub fn starting(http: &HttpSettings) -> std::io::Result<Option<Serving>> {
    if http.port == 0 {
        return Ok(None);
    }
    let retry_after = http.retry_after_secs;
    let listener = TcpListener::bind((http.host.as_str(), http.port))?;
    *STARTED_ON.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener.try_clone()?);
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/healthz",
                web::get().to(|| async { web::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/readyz",
                web::get().to(|| async {
                    actix_web::HttpResponse::ServiceUnavailable()
                        .json(serde_json::json!({"status": "starting", "checks": {}}))
                }),
            )
            .default_service(web::to(move || async move {
                let mut answer = Problem::for_status(StatusCode::SERVICE_UNAVAILABLE)
                    .detail("starting: waiting for PostgreSQL and Redis; retry later")
                    .respond(&"starting");
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                answer
            }))
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(Some(Serving { port, server }))
}

impl Serving {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves in the background until [`Starting::stop`].
    pub fn in_background(self) -> Starting {
        let handle = self.server.handle();
        tokio::spawn(self.server);
        Starting { handle }
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in
    /// flight (within the shutdown timeout) and returns.
    pub async fn until_cancelled(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

/// The [`starting`] server, serving in the background.
pub struct Starting {
    handle: actix_web::dev::ServerHandle,
}

impl Starting {
    /// Stops answering (the service's own server serves the socket by
    /// then): first stops accepting, so no connection is taken and then
    /// dropped by a stopping worker, then finishes the requests in flight.
    pub async fn stop(self) {
        self.handle.pause().await;
        self.handle.stop(true).await;
    }
}
