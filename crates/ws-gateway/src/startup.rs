//! Builds ws-gateway from settings: database pool, a Redis connection for
//! publishing read events, the process's one Redis subscriber and the hub,
//! metrics, and the HTTP server (port 0 picks a free one).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use platform::Settings;
use platform::db::{self, DbPool};
use platform::health::{self, Dependencies};
use platform::redis::{RedisStore, RedisSubscriber};
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::error::GatewayError;
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::session::SessionContext;
use crate::{inbox, openapi, routes};

/// What the HTTP handlers need.
pub struct GatewayState {
    pub db: DbPool,
    pub redis: RedisStore,
    pub verifier: TokenVerifier,
    pub send_queue_frames: usize,
    pub max_frame_bytes: usize,
    pub templates: platform::template_cache::TemplateCache,
    pub default_locale: String,
}

pub struct Application {
    port: u16,
    server: Server,
    shutdown: CancellationToken,
}

impl Application {
    pub async fn build(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        settings.require_jwt_secret()?;
        let db = db::pool(&settings.database)?;
        db::wait_until_reachable(&db).await;
        let redis = RedisStore::connect(&settings.redis).await?;
        let subscriber =
            RedisSubscriber::connect(&settings.redis, settings.gateway.subscriber_buffer_messages)
                .await?;

        let (mut registry, http_metrics) = platform::metrics::service_registry("ws-gateway");
        let metrics = Arc::new(GatewayMetrics::register(&mut registry));
        let registry = web::Data::new(Arc::new(registry));
        let hub = Hub::start(subscriber.clone(), metrics.clone());
        let verifier = TokenVerifier::new(&settings.auth.jwt_secret, settings.auth.jwt_leeway_secs);

        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(GatewayState {
            db: db.clone(),
            redis: redis.clone(),
            verifier: verifier.clone(),
            send_queue_frames: settings.gateway.send_queue_frames,
            max_frame_bytes: settings.gateway.max_frame_bytes,
            templates: platform::template_cache::TemplateCache::default(),
            default_locale: settings.templates.default_locale.clone(),
        });
        let sessions = web::Data::new(Arc::new(SessionContext {
            hub,
            db: db.clone(),
            redis: redis.clone(),
            verifier,
            metrics,
            ping_interval: Duration::from_secs(settings.gateway.ping_interval_secs),
            client_timeout: Duration::from_secs(settings.gateway.client_timeout_secs),
            shutdown: shutdown.clone(),
        }));
        let deps = web::Data::new(Dependencies {
            database: Some(db),
            redis: Some(redis),
            subscriber: Some(subscriber),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(platform::metrics::observe))
                .app_data(state.clone())
                .app_data(http_metrics.clone())
                .app_data(sessions.clone())
                .app_data(deps.clone())
                .app_data(registry.clone())
                .configure(health::configure)
                .configure(platform::metrics::configure)
                .configure(inbox::configure)
                .route("/v1/ws", web::get().to(routes::connect))
                .route("/openapi.json", web::get().to(openapi::openapi_json))
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(GatewayError::NotFound)
                }))
        })
        .disable_signals()
        // Frames are small and must leave at once, not wait for an ACK.
        .tcp_nodelay(true)
        .shutdown_timeout(10)
        .listen(listener)?;
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        tracing::info!(port, "ws-gateway listening");
        Ok(Self {
            port,
            server: server.run(),
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the shutdown token is cancelled: connections are closed
    /// with 1012 so clients reconnect elsewhere, then the server stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}
