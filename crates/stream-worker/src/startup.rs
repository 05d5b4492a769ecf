//! Builds the worker: database pool, Redis connections, consumer group, and
//! the HTTP server for `/healthz` and `/readyz` on `http.port`.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use platform::Settings;
use platform::db;
use platform::health::{self, Dependencies};
use platform::redis::RedisStore;
use tokio_util::sync::CancellationToken;

use crate::consumer::Consumer;

pub struct Worker {
    port: u16,
    server: Server,
    consumer: Consumer,
}

impl Worker {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database)?;
        db::wait_until_reachable(&pool).await;
        let redis = RedisStore::connect(&settings.redis).await?;
        redis.ensure_consumer_group().await?;
        let reader = redis.stream_reader().await?;

        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))?;
        let port = listener.local_addr()?.port();
        let deps = web::Data::new(Dependencies {
            database: Some(pool.clone()),
            redis: Some(redis.clone()),
            subscriber: None,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(deps.clone())
                .configure(health::configure)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();

        let consumer = Consumer {
            name: settings.consumer_name(),
            db: pool,
            redis,
            reader,
            batch_size: settings.worker.batch_size,
            block: Duration::from_millis(settings.worker.block_ms),
        };
        tracing::info!(port, consumer = %consumer.name, "stream-worker ready");
        Ok(Self {
            port,
            server,
            consumer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Consumes until `shutdown` is cancelled, then stops the HTTP server.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        self.consumer.run(shutdown).await;
        handle.stop(true).await;
        server.await??;
        Ok(())
    }
}
