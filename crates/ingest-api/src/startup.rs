//! Builds ingest-api from settings: connects to PostgreSQL and Redis
//! (waiting for them at start), loads the template folder, binds the
//! listener (port 0 picks a free one), and runs until the shutdown token is
//! cancelled.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use platform::Settings;
use platform::client_limits::FailureGate;
use platform::db;
use platform::health::Dependencies;
use platform::redis::{RedisStore, RedisSubscriber};
use platform::rendering::Renderer;
use platform::server::{self, ServerBase, ServerOptions, Serving};
use platform::service::Service;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::key_cache::{self, KeyCache};
use crate::metrics::IngestMetrics;
use crate::rate_limit::KeyRates;
use crate::recently_unknown::RecentlyUnknown;
use crate::state::{AppState, Appender, BodyLimits};
use crate::{openapi, routes};

pub struct Application {
    serving: Serving,
    shutdown: CancellationToken,
}

impl Service for Application {
    async fn build(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let db = db::pool(&settings.database, db::Planning::EachExecution)?;
        db::wait_until_reachable(&db).await;
        if !settings.templates.dir.is_empty() {
            let loaded = platform::template_dir::load(
                &mut *db.get().await?,
                std::path::Path::new(&settings.templates.dir),
            )
            .await?;
            tracing::info!(?loaded, dir = %settings.templates.dir, "templates loaded from folder");
        }
        let redis = RedisStore::connect(&settings.redis).await?;
        redis.agree_on_stream_shards().await?;
        let key_cache = Arc::new(
            KeyCache::new(Duration::from_secs(settings.auth.api_key_cache_secs))
                .remembering_unknown_for(Duration::from_secs(
                    settings.auth.unknown_api_key_cache_secs,
                )),
        );
        let revocations = RedisSubscriber::connect_for_control(&settings.redis).await?;
        revocations.subscribe_key_revocations().await?;
        tokio::spawn(key_cache::watch_revocations(revocations, key_cache.clone()));

        let (mut registry, http_metrics) = platform::metrics::service_registry("ingest-api");
        let metrics = IngestMetrics::register(&mut registry);
        let base = ServerBase::new(
            &settings.http,
            Dependencies {
                database: Some(db.clone()),
                redis: Some(redis.clone()),
                subscriber: None,
            },
            registry,
            http_metrics,
        );
        let api_keys = web::Data::new(ApiKeys {
            cache: key_cache,
            db: db.clone(),
            failures: FailureGate::new(settings.auth.failures_per_address()),
            trusted_proxy_hops: settings.http.trusted_proxy_hops,
        });
        let rejections = web::Data::new(metrics.clone());
        let state = web::Data::new(AppState {
            db,
            redis,
            limits: BodyLimits {
                single: settings.http.max_body_bytes,
                batch: settings.http.max_batch_body_bytes,
            },
            idempotency_ttl: Duration::from_secs(settings.ingest.idempotency_ttl_secs),
            templates: Renderer::new(settings.templates.default_locale.clone()),
            metrics,
            unknown_templates: RecentlyUnknown::new(Duration::from_secs(
                settings.ingest.unknown_template_cache_secs,
            )),
            key_rates: KeyRates::new(settings.ingest.default_key_rate()),
            sockets_written_ttl: Duration::from_secs(settings.gateway.sockets_written_ttl_secs),
        });
        let redis_settings = settings.redis.clone();
        let unrouted = server::unrouted(&openapi::document());
        let serving = server::serve(&settings.http, ServerOptions::default(), move || {
            let redis_settings = redis_settings.clone();
            base.app()
                .data_factory(move || {
                    // Never waits for Redis: a worker (re)started during an
                    // outage must still serve /readyz (503) and shut down.
                    let settings = redis_settings.clone();
                    async move { RedisStore::connect_in_background(&settings).map(Appender) }
                })
                .app_data(state.clone())
                .app_data(api_keys.clone())
                .app_data(rejections.clone())
                .configure(routes::configure)
                .route("/openapi.json", web::get().to(openapi::openapi_json))
                .default_service(web::to(unrouted.clone()))
        })?;
        tracing::info!(port = serving.port(), "ingest-api listening");
        Ok(Self { serving, shutdown })
    }

    fn port(&self) -> u16 {
        self.serving.port()
    }

    /// Serves until the shutdown token is cancelled, then finishes in-flight requests.
    async fn run_until_stopped(self) -> anyhow::Result<()> {
        Ok(self.serving.until_cancelled(self.shutdown).await?)
    }
}
