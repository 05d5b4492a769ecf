//! Builds ws-gateway from settings: database pool, a Redis connection for
//! publishing read events, the process's one Redis subscriber and the hub,
//! metrics, and the HTTP server (port 0 picks a free one).

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use platform::Settings;
use platform::db;
use platform::health::Dependencies;
use platform::redis::{RedisStore, RedisSubscriber};
use platform::rendering::Renderer;
use platform::server::{self, ServerBase, ServerOptions, Serving, Workers};
use platform::service::Service;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::auth::revoked::{self, RevokedTokens};
use crate::hub::Hub;
use crate::limits::ClientLimits;
use crate::metrics::GatewayMetrics;
use crate::origins::AllowedOrigins;
use crate::state::{GatewayState, SessionLimits};
use crate::written::SocketsWritten;
use crate::{connect, inbox, openapi};

/// How long a draining gateway waits for its sessions to close (they are
/// told with 1012 at once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Application {
    serving: Serving,
    shutdown: CancellationToken,
}

impl Service for Application {
    async fn build(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        settings.require_token_keys()?;
        let db = db::pool(&settings.database, db::Planning::OncePerConnection)?;
        db::wait_until_reachable(&db).await;
        let redis = RedisStore::connect(&settings.redis).await?;
        redis.agree_on_stream_shards().await?;
        let subscriber =
            RedisSubscriber::connect(&settings.redis, settings.gateway.subscriber_buffer_messages)
                .await?;

        let (mut registry, http_metrics) = platform::metrics::service_registry("ws-gateway");
        let metrics = Arc::new(GatewayMetrics::register(&mut registry));
        let hub = Hub::start(subscriber.clone(), metrics.clone());
        // Revoked tokens are known before the first one is verified.
        let revoked = RevokedTokens::new();
        revoked.reload(&db).await?;
        let revocations = RedisSubscriber::connect_for_control(&settings.redis).await?;
        revocations.subscribe_token_revocations().await?;
        tokio::spawn(revoked::keep_current(
            revoked.clone(),
            revocations,
            db.clone(),
            Duration::from_secs(settings.auth.revoked_tokens_reload_secs),
            shutdown.clone(),
        ));
        let verifier = Arc::new(
            TokenVerifier::from_settings(&settings.auth, shutdown.clone())
                .await?
                .refusing(revoked.clone()),
        );
        let base = ServerBase::new(
            &settings.http,
            Dependencies {
                database: Some(db.clone()),
                redis: Some(redis.clone()),
                subscriber: Some(subscriber),
            },
            registry,
            http_metrics,
        );
        let gateway = &settings.gateway;
        let origins = AllowedOrigins::new(&gateway.allowed_origins);
        let written = Arc::new(SocketsWritten::new(Duration::from_secs(
            gateway.sockets_written_ttl_secs,
        )));
        tokio::spawn(
            written
                .clone()
                .keep_flushing(redis.clone(), shutdown.clone()),
        );
        let state = web::Data::new(GatewayState {
            db,
            redis,
            hub,
            verifier,
            revoked,
            origins: origins.clone(),
            metrics,
            renderer: Renderer::new(settings.templates.default_locale.clone()),
            sessions: SessionLimits {
                send_queue_frames: gateway.send_queue_frames,
                max_frame_bytes: gateway.max_frame_bytes,
                ping_interval: Duration::from_secs(gateway.ping_interval_secs),
                client_timeout: Duration::from_secs(gateway.client_timeout_secs),
                max_connections: gateway.max_connections,
                max_connections_per_user: gateway.max_connections_per_user,
                requests: crate::budget::RequestBudget {
                    burst: gateway.client_requests_burst,
                    per_sec: gateway.client_requests_per_sec,
                },
            },
            clients: ClientLimits::from_settings(settings),
            written,
            shutdown: shutdown.clone(),
        });
        let options = ServerOptions {
            workers: Workers::FromSettings,
            shutdown_timeout: Some(DRAIN_TIMEOUT),
        };
        let unrouted = server::unrouted(&openapi::document());
        let serving = server::serve(&settings.http, options, move || {
            base.app()
                .app_data(state.clone())
                .service(inbox::scope(origins.cors()))
                .route("/v1/ws", web::get().to(connect::connect))
                .route("/openapi.json", web::get().to(openapi::openapi_json))
                .default_service(web::to(unrouted.clone()))
        })?;
        tracing::info!(port = serving.port(), "ws-gateway listening");
        Ok(Self { serving, shutdown })
    }

    fn port(&self) -> u16 {
        self.serving.port()
    }

    /// Serves until the shutdown token is cancelled: connections are closed
    /// with 1012 so clients reconnect elsewhere, then the server stops.
    async fn run_until_stopped(self) -> anyhow::Result<()> {
        Ok(self.serving.until_cancelled(self.shutdown).await?)
    }
}
