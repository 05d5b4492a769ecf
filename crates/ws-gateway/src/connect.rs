//! `GET /v1/ws`: authenticate, register with the hub, upgrade.

use crate::budget::TokenBucket;
use crate::hub::HubError;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use domain::ServerFrame;
use platform::storage::inbox;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, websocket_token};
use crate::error::GatewayError;
use crate::hub::ConnectionHandle;
use crate::session::{Connection, Resume};
use crate::state::GatewayState;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    /// Resume: send every notification with `seq > since` first.
    since: Option<i64>,
    /// Resume: first tell what changed since this state version of the
    /// notifications up to `since`.
    since_version: Option<i64>,
    /// Which inbox `since` and `since_version` count in (the `epoch` of
    /// the `hello` they came from).
    epoch: Option<i64>,
}

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, GatewayError> {
    // Refuse other sites' pages and bad tokens before upgrading, so both
    // are plain HTTP answers (403, 401).
    state.origins.check(&req)?;
    let limit = state.sessions.max_connections;
    if limit > 0 && state.metrics.connections.get() >= i64::try_from(limit).unwrap_or(i64::MAX) {
        return Err(GatewayError::Full);
    }
    check_offered_protocols(&req)?;
    let address = state.clients.address(&req);
    let address_slot = state.clients.handshake(address)?;
    // Watching for revocations from before the token is checked: one
    // revoked between the check and the session's start still closes it.
    let revocations = state.revoked.changes();
    let token = state
        .clients
        .verify(&state.verifier, address, websocket_token(&req))
        .await?;
    let ConnectQuery {
        since,
        since_version,
        epoch,
    } = web::Query::<ConnectQuery>::from_query(req.query_string())
        .map_err(|err| GatewayError::BadQuery(err.to_string()))?
        .into_inner();
    if [since, since_version, epoch]
        .iter()
        .any(|n| n.is_some_and(|n| n < 0))
    {
        return Err(GatewayError::BadQuery(
            "since, since_version and epoch must be 0 or more".into(),
        ));
    }
    // A browser that offered `herald.v1` (with its token as a second
    // subprotocol) gets it selected, as the WebSocket handshake requires.
    let (response, session, stream) =
        actix_ws::handle_with_protocols(&req, body, &[auth::PROTOCOL])
            .map_err(|err| GatewayError::NotWebSocket(err.to_string()))?;

    let token_expires_at = token.expires_at();
    let token_jti = token.jti.clone();
    let user_id = token.user_id;
    let conn_id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let (frames_tx, frames) = mpsc::channel(state.sessions.send_queue_frames);
    let kicked = CancellationToken::new();
    let handle = ConnectionHandle {
        frames: frames_tx,
        kicked: kicked.clone(),
    };
    // Subscribed before the inbox state is read: a notification committed
    // after the read is published after the subscription, so it reaches this
    // socket; one committed before it is in storage for a resume.
    state
        .hub
        .join(
            &user_id,
            conn_id,
            handle,
            state.sessions.max_connections_per_user,
        )
        .await
        .map_err(|err| match err {
            HubError::UserFull(held) => GatewayError::UserFull(held),
            err => GatewayError::Unavailable {
                dependency: "redis",
                cause: err.to_string(),
            },
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
        unread: inbox.counts.unread,
        last_seq: inbox.last_seq,
        version: inbox.version,
        counts: inbox.counts,
        trimmed_through: inbox.trimmed_through,
        epoch: inbox.epoch,
    };
    // `since` counted in another inbox of the user's (erased since): this
    // one is new to the device, from its start.
    let (since, since_version) = match epoch {
        Some(held) if held != 0 && held != inbox.epoch => (since.map(|_| 0), None),
        _ => (since, since_version),
    };
    // A client claiming more than exists (its storage was reset) starts from what exists.
    let since = since.map(|s| s.min(inbox.last_seq));
    let connection = Connection {
        shard: state.redis.keys().shard_of(&user_id),
        user_id,
        conn_id,
        session,
        stream: stream.max_frame_size(state.sessions.max_frame_bytes),
        frames,
        kicked,
        token_expires_at,
        token_jti,
        revocations,
        last_sent: since.unwrap_or(inbox.last_seq),
        change_in_flight: None,
        requests: TokenBucket::new(state.sessions.requests),
        held_back: None,
        _address_slot: address_slot,
    };
    let resume = Resume {
        since,
        since_version,
        version: inbox.version,
    };
    actix_web::rt::spawn(connection.run(hello, resume, state));
    Ok(response)
}

/// A client that offers subprotocols must offer `herald.v1`: the handshake
/// has to select one of them, and a browser fails a connection whose answer
/// names none, after the server has already set it up.
fn check_offered_protocols(req: &HttpRequest) -> Result<(), GatewayError> {
    let mut offered = auth::offered_protocols(req).peekable();
    if offered.peek().is_none() || offered.any(|protocol| protocol == auth::PROTOCOL) {
        Ok(())
    } else {
        Err(GatewayError::BadQuery(format!(
            "offer the subprotocol {p} (Sec-WebSocket-Protocol: {p}, herald.token.<jwt>)",
            p = auth::PROTOCOL
        )))
    }
}

async fn read_inbox(
    state: &GatewayState,
    user_id: &str,
) -> Result<inbox::InboxState, GatewayError> {
    let mut conn = state.conn().await?;
    Ok(inbox::state(&mut conn, user_id).await?)
}
