//! Builds the worker: database pool, Redis connections, consumer group,
//! metrics, the trimmer, and the HTTP server for `/metrics`, `/healthz` and
//! `/readyz` on `http.port`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use platform::Settings;
use platform::db;
use platform::health::{self, Dependencies};
use platform::redis::RedisStore;
use tokio_util::sync::CancellationToken;

use crate::consumer::Consumer;
use crate::lanes::LanePolicy;
use crate::metrics::WorkerMetrics;
use crate::trimmer::Trimmer;
use domain::Priority;

pub struct Worker {
    port: u16,
    server: Server,
    consumers: Vec<Consumer>,
    trimmer: Trimmer,
    shutdown_timeout: Duration,
}

impl Worker {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::wait_until_reachable(&pool).await;
        let redis = RedisStore::connect(&settings.redis).await?;
        redis.ensure_consumer_group().await?;

        let (mut registry, http_metrics) = platform::metrics::service_registry("stream-worker");
        let metrics = Arc::new(WorkerMetrics::register(&mut registry));
        let registry = web::Data::new(Arc::new(registry));

        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();
        let deps = web::Data::new(Dependencies {
            database: Some(pool.clone()),
            redis: Some(redis.clone()),
            subscriber: None,
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(platform::metrics::observe))
                .app_data(deps.clone())
                .app_data(registry.clone())
                .app_data(http_metrics.clone())
                .configure(health::configure)
                .configure(platform::metrics::configure)
        })
        .workers(1)
        .disable_signals()
        .tcp_nodelay(true)
        .listen(listener)?
        .run();

        let worker = &settings.worker;
        // `concurrency` consumers over all lanes, plus the express one.
        let base = settings.consumer_name();
        let mut roles: Vec<(String, &'static [Priority])> = (0..worker.concurrency)
            .map(|i| match i {
                0 => (base.clone(), &Priority::ALL[..]),
                i => (format!("{base}-{i}"), &Priority::ALL[..]),
            })
            .collect();
        if worker.high_express {
            roles.push((format!("{base}-high"), &[Priority::High]));
        }
        let mut consumers = Vec::with_capacity(roles.len());
        for (i, (name, reads)) in roles.into_iter().enumerate() {
            consumers.push(Consumer {
                name,
                reads,
                claims: i == 0,
                db: pool.clone(),
                redis: redis.clone(),
                reader: redis.stream_reader().await?,
                lanes: LanePolicy {
                    batch_size: worker.batch_size,
                    normal_min: worker.min_count(worker.normal_share),
                    low_min: worker.min_count(worker.low_share),
                },
                block: Duration::from_millis(worker.block_ms),
                claim_min_idle: Duration::from_millis(worker.claim_min_idle_ms),
                claim_interval: Duration::from_millis(worker.claim_interval_ms),
                max_deliveries: worker.max_deliveries,
                metrics: metrics.clone(),
                templates: platform::template_cache::TemplateCache::default(),
                default_locale: settings.templates.default_locale.clone(),
            });
        }
        let trimmer = Trimmer {
            redis,
            db: pool.clone(),
            target_len: worker.trim_target_len,
            interval: Duration::from_millis(worker.trim_interval_ms),
            prune_idle_consumers: (worker.prune_idle_consumers_secs > 0)
                .then(|| Duration::from_secs(worker.prune_idle_consumers_secs)),
            metrics,
        };
        tracing::info!(port, consumer = %settings.consumer_name(), concurrency = consumers.len(), "stream-worker ready");
        Ok(Self {
            port,
            server,
            consumers,
            trimmer,
            shutdown_timeout: Duration::from_millis(worker.shutdown_timeout_ms),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Consumes until `shutdown` is cancelled, finishes the round in hand
    /// (bounded by the shutdown timeout), then stops the HTTP server.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let trimmer = tokio::spawn(self.trimmer.run(shutdown.clone()));
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        tokio::select! {
            _ = futures_util::future::join_all(
                self.consumers.iter().map(|c| c.run(shutdown.clone())),
            ) => {}
            () = deadline => {
                tracing::warn!("shutdown timeout reached; unfinished entries stay pending for other workers");
            }
        }
        trimmer.abort();
        leave_group(&self.consumers).await;
        handle.stop(true).await;
        server.await??;
        Ok(())
    }
}

/// Deletes this process's consumers from the group on every lane where
/// they hold nothing pending, so rollouts do not leave pod names behind.
/// One holding entries stays (another worker claims them).
async fn leave_group(consumers: &[Consumer]) {
    let Some(redis) = consumers.first().map(|c| &c.redis) else {
        return;
    };
    let names: Vec<String> = consumers.iter().map(|c| c.name.clone()).collect();
    for priority in Priority::ALL {
        match redis
            .prune_consumers(priority, Duration::ZERO, &names)
            .await
        {
            Ok(gone) => tracing::debug!(%priority, ?gone, "left the consumer group"),
            Err(err) => tracing::warn!(%err, %priority, "cannot leave the consumer group"),
        }
    }
}
