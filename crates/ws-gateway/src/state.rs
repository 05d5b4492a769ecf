//! What ws-gateway's handlers and sessions share, built once by `startup`:
//! the app holds it as `web::Data<GatewayState>`, and each WebSocket
//! session keeps a clone of that handle for its life.

use std::sync::Arc;
use std::time::Duration;

use platform::db::{DbConn, DbPool};
use platform::redis::RedisStore;
use platform::rendering::Renderer;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::auth::revoked::RevokedTokens;
use crate::error::GatewayError;
use crate::hub::Hub;
use crate::limits::ClientLimits;
use crate::metrics::GatewayMetrics;
use crate::origins::AllowedOrigins;
use crate::written::SocketsWritten;

pub struct GatewayState {
    pub db: DbPool,
    /// Publishes read-state changes to the user's channel.
    pub redis: RedisStore,
    /// The process's one subscriber, fanned out to the connections.
    pub hub: Hub,
    /// Verifies the tokens of new connections and of `refresh` frames.
    pub verifier: Arc<TokenVerifier>,
    /// Tokens revoked by `jti`: sessions holding one close.
    pub revoked: Arc<RevokedTokens>,
    /// Browser pages that may open a socket (`gateway.allowed_origins`).
    pub origins: AllowedOrigins,
    pub metrics: Arc<GatewayMetrics>,
    /// `render=current` of the inbox.
    pub renderer: Renderer,
    pub sessions: SessionLimits,
    /// Limits per client address and per user.
    pub clients: ClientLimits,
    /// How many sockets each notification was written to (for producers).
    pub written: Arc<SocketsWritten>,
    /// Cancelled when the gateway drains: sessions close with 1012.
    pub shutdown: CancellationToken,
}

impl GatewayState {
    /// A pooled connection, or 503.
    pub async fn conn(&self) -> Result<DbConn, GatewayError> {
        self.db.get().await.map_err(GatewayError::database)
    }
}

/// How a WebSocket session behaves (`gateway.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Live frames queued for a connection before it counts as too slow.
    pub send_queue_frames: usize,
    /// Largest client frame accepted.
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    /// A connection silent this long (not even a pong) is closed with 4408.
    pub client_timeout: Duration,
    /// Most connections this process holds; 0: no limit.
    pub max_connections: usize,
    /// Most connections one user holds on this process; 0: no limit.
    pub max_connections_per_user: usize,
    /// Storage frames per connection (`resume`, `read`, `read_all`).
    pub requests: crate::budget::RequestBudget,
}
