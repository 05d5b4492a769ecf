//! What ingest-api's handlers share, built once by `startup` and handed to
//! the app as `web::Data`: the state of the producer and admin routes, and
//! the per-worker Redis connection producer requests append over.

use std::time::Duration;

use platform::db::{DbConn, DbPool};
use platform::redis::RedisStore;
use platform::rendering::Renderer;

use crate::error::ApiError;
use crate::metrics::IngestMetrics;
use crate::rate_limit::KeyRates;
use crate::recently_unknown::RecentlyUnknown;

/// What the route handlers reach.
pub struct AppState {
    pub db: DbPool,
    /// Serves the admin routes (dead-letter replays); producer requests
    /// append through their worker's [`Appender`].
    pub redis: RedisStore,
    pub limits: BodyLimits,
    /// How long an `Idempotency-Key` remembers its first answer.
    pub idempotency_ttl: Duration,
    /// Compiled templates, to check a request's params against.
    pub templates: Renderer,
    pub metrics: IngestMetrics,
    /// Template keys found missing a moment ago
    /// (`ingest.unknown_template_cache_secs`).
    pub unknown_templates: RecentlyUnknown<String>,
    /// Each key's rate (shared through Redis).
    pub key_rates: KeyRates,
    /// How long after its minute a notification's count of sockets
    /// written is kept (`gateway.sockets_written_ttl_secs`; zero: none).
    pub sockets_written_ttl: Duration,
}

/// Largest request bodies read, in bytes (413 above them).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub single: usize,
    pub batch: usize,
}

impl AppState {
    /// A pooled connection, or 503.
    pub async fn conn(&self) -> Result<DbConn, ApiError> {
        self.db.get().await.map_err(ApiError::database)
    }
}

/// The Redis connection producer requests append over: one per HTTP worker,
/// connected from the worker's own thread (`App::data_factory`), so fred's
/// connection task runs beside the handlers and an XADD does not hop to
/// another thread and back. Concurrent requests of a worker still share
/// (and pipeline over) its one connection.
pub struct Appender(pub RedisStore);

impl std::ops::Deref for Appender {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.0
    }
}
