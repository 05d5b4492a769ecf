//! `GET /v1/ws`: authenticate, register with the hub, upgrade.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use domain::ServerFrame;
use platform::storage::inbox;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::token_from_request;
use crate::error::GatewayError;
use crate::hub::ConnectionHandle;
use crate::session::{Connection, SessionConfig};
use crate::startup::GatewayState;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/ws", web::get().to(connect));
}

async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    // Authenticate before upgrading, so a bad token is a plain HTTP 401.
    let claims = state.verifier.verify(&token_from_request(&req)?)?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|err| GatewayError::NotWebSocket(err.to_string()))?;

    let user_id = claims.sub;
    let conn_id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (frames_tx, frames) = mpsc::channel(state.send_queue_frames);
    let kicked = CancellationToken::new();
    let handle = ConnectionHandle {
        frames: frames_tx,
        kicked: kicked.clone(),
    };
    // Subscribed before the inbox state is read: a notification stored after
    // the read is published after the subscription, so it reaches this socket.
    state
        .hub
        .join(&user_id, conn_id, handle)
        .await
        .map_err(|err| GatewayError::Unavailable {
            dependency: "redis",
            cause: err.to_string(),
        })?;
    let inbox = match read_inbox(&state, &user_id).await {
        Ok(inbox) => inbox,
        Err(err) => {
            state.hub.leave(&user_id, conn_id).await;
            return Err(err);
        }
    };

    let hello = ServerFrame::Hello {
        user_id: user_id.clone(),
        unread: inbox.unread,
        last_seq: inbox.last_seq,
    };
    let connection = Connection {
        user_id,
        conn_id,
        session,
        stream: stream.max_frame_size(state.max_frame_bytes),
        frames,
        kicked,
        token_expires_at: instant_of(claims.exp),
    };
    let config = SessionConfig {
        ping_interval: state.ping_interval,
        client_timeout: state.client_timeout,
    };
    actix_web::rt::spawn(connection.run(hello, state.hub.clone(), config, state.shutdown.clone()));
    Ok(response)
}

async fn read_inbox(
    state: &GatewayState,
    user_id: &str,
) -> Result<inbox::InboxState, GatewayError> {
    let unavailable = |cause: String| GatewayError::Unavailable {
        dependency: "database",
        cause,
    };
    let mut conn = state
        .db
        .get()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    inbox::state(&mut conn, user_id)
        .await
        .map_err(|e| unavailable(e.to_string()))
}

/// The monotonic instant at which a Unix timestamp (`exp`) is reached.
fn instant_of(unix_secs: u64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Instant::now() + Duration::from_secs(unix_secs.saturating_sub(now_unix))
}
