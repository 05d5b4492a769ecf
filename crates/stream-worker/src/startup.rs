//! Builds the worker: database pool, Redis connections, consumer group,
//! metrics, the consumers, the trimmer, the timers, retention, and the
//! HTTP server for `/metrics`, `/healthz` and `/readyz` on `http.port`.

use std::sync::Arc;
use std::time::Duration;

use platform::Settings;
use platform::db;
use platform::health::Dependencies;
use platform::redis::RedisStore;
use platform::rendering::Renderer;
use platform::server::{self, ServerBase, ServerOptions, Serving, Workers};
use platform::service::Service;
use tokio_util::sync::CancellationToken;

use crate::consumer::Consumer;
use crate::lanes::LanePolicy;
use crate::metrics::WorkerMetrics;
use crate::retention::Retention;
use crate::timers::Timers;
use crate::trimmer::Trimmer;
use domain::Priority;

pub struct Worker {
    serving: Serving,
    consumers: Vec<Consumer>,
    trimmer: Trimmer,
    timers: Timers,
    retention: Option<Retention>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
}

impl Service for Worker {
    async fn build(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database, db::Planning::EachExecution)?;
        db::wait_until_reachable(&pool).await;
        let redis = RedisStore::connect(&settings.redis).await?;
        redis.agree_on_stream_shards().await?;
        redis.ensure_consumer_group().await?;

        let (mut registry, http_metrics) = platform::metrics::service_registry("stream-worker");
        let metrics = Arc::new(WorkerMetrics::register(&mut registry));
        let base = ServerBase::new(
            &settings.http,
            Dependencies {
                database: Some(pool.clone()),
                redis: Some(redis.clone()),
                subscriber: None,
            },
            registry,
            http_metrics,
        );
        // Probes and /metrics only: one thread is plenty.
        let options = ServerOptions {
            workers: Workers::Fixed(1),
            ..ServerOptions::default()
        };
        let serving = server::serve(&settings.http, options, move || {
            base.app()
                .route(
                    "/openapi.json",
                    actix_web::web::get().to(server::operations_openapi_json),
                )
                .default_service(actix_web::web::to(server::unrouted(
                    &server::operations_document(),
                )))
        })?;

        let worker = &settings.worker;
        // On every shard: `concurrency` consumers over all lanes, plus the
        // express one. Every worker reads every shard; the group shares
        // each shard's entries among them.
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
        let renderer = Renderer::new(settings.templates.default_locale.clone());
        let shards: Vec<_> = redis.keys().shards().collect();
        let mut consumers = Vec::with_capacity(roles.len() * shards.len());
        for shard in shards {
            for (i, (name, reads)) in roles.iter().enumerate() {
                consumers.push(Consumer {
                    name: name.clone(),
                    shard,
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
                    renderer: renderer.clone(),
                });
            }
        }
        let timers = Timers {
            db: pool.clone(),
            redis: redis.clone(),
            interval: Duration::from_millis(worker.timers_interval_ms),
        };
        let retention = settings.retention.period().map(|period| Retention {
            db: pool.clone(),
            redis: redis.clone(),
            period,
            interval: Duration::from_millis(settings.retention.interval_ms),
            metrics: metrics.clone(),
        });
        let trimmer = Trimmer {
            redis,
            db: pool,
            target_len: worker.trim_target_len,
            interval: Duration::from_millis(worker.trim_interval_ms),
            prune_idle_consumers: (worker.prune_idle_consumers_secs > 0)
                .then(|| Duration::from_secs(worker.prune_idle_consumers_secs)),
            metrics,
        };
        tracing::info!(port = serving.port(), consumer = %settings.consumer_name(), concurrency = consumers.len(), "stream-worker ready");
        Ok(Self {
            serving,
            consumers,
            trimmer,
            timers,
            retention,
            shutdown,
            shutdown_timeout: Duration::from_millis(worker.shutdown_timeout_ms),
        })
    }

    fn port(&self) -> u16 {
        self.serving.port()
    }

    /// Consumes until the shutdown token is cancelled, finishes the round in
    /// hand (bounded by the shutdown timeout), leaves the group, then stops
    /// the HTTP server (probes answer while it drains).
    async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown;
        let server_stop = CancellationToken::new();
        let server = tokio::spawn(self.serving.until_cancelled(server_stop.clone()));
        let trimmer = tokio::spawn(self.trimmer.run(shutdown.clone()));
        let timers = tokio::spawn(self.timers.run(shutdown.clone()));
        let retention = self
            .retention
            .map(|retention| tokio::spawn(retention.run(shutdown.clone())));
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
        timers.abort();
        if let Some(retention) = retention {
            retention.abort();
        }
        leave_group(&self.consumers).await;
        server_stop.cancel();
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
    let mut names: Vec<String> = consumers.iter().map(|c| c.name.clone()).collect();
    names.sort();
    names.dedup();
    for lane in redis.lanes() {
        match redis.prune_consumers(lane, Duration::ZERO, &names).await {
            Ok(gone) => {
                tracing::debug!(priority = %lane.priority, shard = %lane.shard, ?gone, "left the consumer group")
            }
            Err(err) => {
                tracing::warn!(%err, priority = %lane.priority, "cannot leave the consumer group")
            }
        }
    }
}
