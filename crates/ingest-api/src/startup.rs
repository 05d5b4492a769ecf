//! Builds ingest-api from settings: connects to PostgreSQL and Redis
//! (waiting for them at start), binds the listener (port 0 picks a free
//! one), and runs until the shutdown token is cancelled.

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

use crate::error::ApiError;
use crate::key_cache::{self, KeyCache};
use crate::metrics::IngestMetrics;
use crate::{openapi, routes};

/// What every request handler can reach.
pub struct AppState {
    pub db: DbPool,
    pub redis: RedisStore,
    pub max_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    pub retry_after_secs: u32,
    pub idempotency_ttl: std::time::Duration,
    pub templates: platform::template_cache::TemplateCache,
    pub api_keys: Arc<KeyCache>,
    pub metrics: IngestMetrics,
}

impl AppState {
    pub fn db_unavailable(&self, cause: impl std::fmt::Display) -> ApiError {
        ApiError::Unavailable {
            dependency: "database",
            cause: cause.to_string(),
            retry_after_secs: self.retry_after_secs,
        }
    }

    /// A pooled connection, or 503.
    pub async fn conn(&self) -> Result<db::DbConn, ApiError> {
        self.db.get().await.map_err(|e| self.db_unavailable(e))
    }
}

/// The Redis connection producer requests append over: one per HTTP worker,
/// connected from the worker's own thread (`App::data_factory`), so fred's
/// connection task runs beside the handlers and an XADD does not hop to
/// another thread and back. Concurrent requests of a worker still share
/// (and pipeline over) its one connection.
pub struct Appender(RedisStore);

impl std::ops::Deref for Appender {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.0
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let db = db::pool(&settings.database)?;
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
        let api_keys = Arc::new(KeyCache::new(Duration::from_secs(
            settings.auth.api_key_cache_secs,
        )));
        let revocations = RedisSubscriber::connect_for_control(&settings.redis).await?;
        revocations.subscribe_key_revocations().await?;
        tokio::spawn(key_cache::watch_revocations(revocations, api_keys.clone()));
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();

        let (mut registry, http_metrics) = platform::metrics::service_registry("ingest-api");
        let metrics = IngestMetrics::register(&mut registry);
        let registry = web::Data::new(Arc::new(registry));
        let state = web::Data::new(AppState {
            db: db.clone(),
            redis: redis.clone(),
            max_body_bytes: settings.http.max_body_bytes,
            max_batch_body_bytes: settings.http.max_batch_body_bytes,
            retry_after_secs: settings.http.retry_after_secs,
            idempotency_ttl: std::time::Duration::from_secs(settings.ingest.idempotency_ttl_secs),
            templates: platform::template_cache::TemplateCache::default(),
            api_keys,
            metrics,
        });
        let deps = web::Data::new(Dependencies {
            database: Some(db),
            redis: Some(redis),
            subscriber: None,
        });
        let redis_settings = settings.redis.clone();
        let mut server = HttpServer::new(move || {
            let redis_settings = redis_settings.clone();
            App::new()
                .wrap(from_fn(platform::metrics::observe))
                .data_factory(move || {
                    // Never waits for Redis: a worker (re)started during an
                    // outage must still serve /readyz (503) and shut down.
                    let settings = redis_settings.clone();
                    async move { RedisStore::connect_in_background(&settings).map(Appender) }
                })
                .app_data(state.clone())
                .app_data(deps.clone())
                .app_data(registry.clone())
                .app_data(http_metrics.clone())
                .configure(health::configure)
                .configure(platform::metrics::configure)
                .configure(routes::configure)
                .route("/openapi.json", web::get().to(openapi::openapi_json))
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::NotFound)
                }))
        })
        .disable_signals()
        .tcp_nodelay(true)
        .listen(listener)?;
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        tracing::info!(port, "ingest-api listening");
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}
