//! One WebSocket connection: delivers the user's notifications gapless and
//! in `seq` order, answers client frames, checks liveness, and closes with a
//! documented code when it must:
//!
//! | code | when |
//! |------|------|
//! | 1000 | the client closed |
//! | 1008 | the client fell too far behind (send queue full) or kept sending bad frames |
//! | 1009 | a frame over the size limit |
//! | 1011 | internal error (the hub stopped, or storage was unreachable during a catch-up) |
//! | 1012 | the gateway is restarting (drain); reconnect elsewhere with `since` |
//! | 4001 | the token expired (send `refresh` before it does) |
//! | 4003 | the token was revoked (its `jti` is on the deny-list) |
//! | 4004 | the user's data was erased (after the `erased` frame) |
//! | 4408 | no sign of life (not even a pong) within the client timeout |
//!
//! Gapless delivery: the session remembers the last `seq` it wrote. A live
//! frame with that `seq + 1` is written as is; one at or below it is a
//! duplicate and dropped; one further ahead means frames are missing (they
//! were published before this connection subscribed, or arrived out of
//! order from two workers), so the session first writes the missing ones
//! from storage. A notification is published only after it committed, so
//! storage always has what a live frame implies. `resume` (or `?since=`) is
//! the same catch-up, from the client's own last `seq`.

use std::sync::Arc;

use actix_web::web;
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use chrono::Utc;
use domain::frames::ErrorCode;
use domain::{ClientFrame, ServerFrame};
use futures_util::future::LocalBoxFuture;
use platform::storage::inbox;
use platform::telemetry::{self, traceparent};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client_frames::{self, Action, Request};
use crate::hub::LiveFrame;
use crate::state::GatewayState;
use platform::inbox_changes;

/// Bad frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 10;
/// Notifications read from storage per query during a catch-up.
const CATCH_UP_PAGE: i64 = 200;

pub struct Connection {
    pub user_id: String,
    /// The user's stream shard (where counts of sockets written go).
    pub shard: domain::Shard,
    pub conn_id: u64,
    pub session: Session,
    pub stream: MessageStream,
    pub frames: mpsc::Receiver<Arc<LiveFrame>>,
    pub kicked: CancellationToken,
    pub token_expires_at: Instant,
    /// The token's `jti`: when it is revoked, the connection closes (4003).
    pub token_jti: Option<String>,
    pub revocations: tokio::sync::watch::Receiver<u64>,
    /// The last `seq` written to this client (or known to it).
    pub last_sent: i64,
    /// The read-state change being applied, if any.
    pub change_in_flight: Option<tokio::task::JoinHandle<()>>,
    /// What is left of the connection's budget of storage frames.
    pub requests: crate::budget::TokenBucket,
    /// A message read from the client while coalescing resumes, to be
    /// handled next.
    pub held_back: Option<Received>,
    /// Counts this connection against its client address until it ends.
    pub _address_slot: Option<platform::client_limits::AddressSlot>,
}

/// What reading the client's stream gives: a message, a protocol error, or
/// the end.
pub type Received = Option<Result<Message, ProtocolError>>;

/// The next message from the client: the one held back first.
async fn next_message(held_back: &mut Option<Received>, stream: &mut MessageStream) -> Received {
    match held_back.take() {
        Some(received) => received,
        None => stream.recv().await,
    }
}

/// Why serving stopped: the close frame to send, if the peer is still there.
type Closing = Option<CloseReason>;

fn close_reason(code: CloseCode, description: &str) -> Closing {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

fn slow_consumer() -> Closing {
    close_reason(
        CloseCode::Policy,
        "too slow: send queue full, resume from your last seq",
    )
}

/// A send failed: the client is gone.
struct Gone;

/// Where a connecting client says it left off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume {
    /// The last `seq` it holds: send the notifications after it.
    pub since: Option<i64>,
    /// The state version it last applied: tell it what changed since of
    /// the notifications it holds.
    pub since_version: Option<i64>,
    /// The user's state version the `hello` carried.
    pub version: i64,
}

/// Items per `state` frame.
const STATE_FRAME_ITEMS: usize = 200;

/// The `state` frames telling `items` (oldest change first), at least one:
/// each says up to which version the client holds every change once it
/// applied it (the next frame's first change less one; `version`, the
/// hello's, for the last).
fn state_frames(items: Vec<domain::ItemState>, version: i64) -> Vec<ServerFrame> {
    let chunks: Vec<Vec<domain::ItemState>> =
        items.chunks(STATE_FRAME_ITEMS).map(<[_]>::to_vec).collect();
    if chunks.is_empty() {
        return vec![ServerFrame::State {
            items: Vec::new(),
            version,
        }];
    }
    let upto: Vec<i64> = chunks
        .iter()
        .skip(1)
        .map(|next| next[0].version - 1)
        .chain([version])
        .collect();
    chunks
        .into_iter()
        .zip(upto)
        .map(|(items, version)| ServerFrame::State { items, version })
        .collect()
}

impl Connection {
    /// Sends `hello`, what changed since `since_version` and the backlog
    /// after `since` if asked, then serves the connection until it closes.
    pub async fn run(mut self, hello: ServerFrame, resume: Resume, ctx: web::Data<GatewayState>) {
        ctx.metrics.connections.inc();
        let reason = self.serve(hello, resume, &ctx).await;
        if let Some(change) = self.change_in_flight.take() {
            let _ = change.await;
        }
        ctx.hub.leave(&self.user_id, self.conn_id).await;
        ctx.metrics.connections.dec();
        tracing::debug!(user_id = %self.user_id, conn_id = self.conn_id, ?reason, "connection closed");
        let _ = self.session.close(reason).await;
    }

    async fn serve(
        &mut self,
        hello: ServerFrame,
        resume: Resume,
        ctx: &web::Data<GatewayState>,
    ) -> Closing {
        if self.send(hello).await.is_err() {
            return None;
        }
        if let Some(since_version) = resume.since_version {
            match self.sync_state(since_version, resume, ctx).await {
                Ok(None) => {}
                Ok(closing) => return closing,
                Err(Gone) => return None,
            }
        }
        if let Some(since) = resume.since {
            match self.catch_up(since, 0, ctx).await {
                Ok(closing) => {
                    if closing.is_some() {
                        return closing;
                    }
                }
                Err(Gone) => return None,
            }
        }
        let mut ping = interval(ctx.sessions.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut bad_frames = 0u32;
        loop {
            tokio::select! {
                frame = self.frames.recv() => match frame {
                    Some(frame) => match self.deliver(frame, ctx).await {
                        Ok(None) => {}
                        Ok(closing) => return closing,
                        Err(Gone) => return None,
                    },
                    // The hub drops a kicked connection's queue: say why.
                    None if self.kicked.is_cancelled() => return slow_consumer(),
                    None => return close_reason(CloseCode::Error, "hub stopped"),
                },
                // The hub counted the drop when it kicked this connection.
                () = self.kicked.cancelled() => return slow_consumer(),
                () = ctx.shutdown.cancelled() => {
                    return close_reason(CloseCode::Restart, "gateway restarting, reconnect with since");
                }
                () = sleep_until(self.token_expires_at) => {
                    return close_reason(CloseCode::Other(4001), "token expired");
                }
                Ok(()) = self.revocations.changed(), if self.token_jti.is_some() => {
                    if self.token_jti.as_deref().is_some_and(|jti| ctx.revoked.contains(jti)) {
                        return close_reason(CloseCode::Other(4003), "token revoked");
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > ctx.sessions.client_timeout {
                        return close_reason(CloseCode::Other(4408), "no pong within the client timeout");
                    }
                    if self.session.ping(b"").await.is_err() {
                        return None;
                    }
                }
                message = next_message(&mut self.held_back, &mut self.stream) => {
                    last_heard = Instant::now();
                    let outcome = match message {
                        None => return None,
                        Some(Ok(Message::Close(_))) => return close_reason(CloseCode::Normal, "bye"),
                        Some(Ok(Message::Ping(bytes))) => {
                            self.session.pong(&bytes).await.map(|()| None).map_err(|_| Gone)
                        }
                        Some(Ok(Message::Text(text))) => {
                            self.client_frame(&text, &mut bad_frames, ctx).await
                        }
                        Some(Ok(Message::Binary(_))) => {
                            bad_frames += 1;
                            self.error(ErrorCode::UnsupportedData, "binary frames are not supported; send JSON text").await
                        }
                        Some(Ok(_)) => Ok(None),
                        Some(Err(ProtocolError::Overflow)) => {
                            let _ = self.error(ErrorCode::FrameTooLarge, "frame larger than the gateway accepts").await;
                            return close_reason(CloseCode::Size, "frame too large");
                        }
                        Some(Err(err)) => {
                            tracing::debug!(%err, "WebSocket protocol error");
                            return close_reason(CloseCode::Protocol, "protocol error");
                        }
                    };
                    match outcome {
                        Ok(None) => {}
                        Ok(closing) => return closing,
                        Err(Gone) => return None,
                    }
                    if bad_frames > MAX_BAD_FRAMES {
                        return close_reason(CloseCode::Policy, "too many bad frames");
                    }
                }
            }
        }
    }

    /// Writes a live frame in order, filling a gap from storage first.
    async fn deliver(
        &mut self,
        frame: Arc<LiveFrame>,
        ctx: &GatewayState,
    ) -> Result<Closing, Gone> {
        if frame.resync {
            // The hub may have missed frames (Redis reconnect, lag): read what
            // this connection has not seen from storage.
            return self.catch_up(self.last_sent, 0, ctx).await;
        }
        if frame.erased {
            self.write(&frame, ctx).await?;
            return Ok(close_reason(
                CloseCode::Other(4004),
                "user data erased; connect again without since",
            ));
        }
        let Some(seq) = frame.seq else {
            // Not a notification (read state): order does not matter, `version` does.
            return self.write(&frame, ctx).await.map(|()| None);
        };
        if seq <= self.last_sent {
            return Ok(None);
        }
        if seq > self.last_sent + 1 {
            return self.catch_up(self.last_sent, seq, ctx).await;
        }
        self.write(&frame, ctx).await?;
        self.last_sent = seq;
        Ok(None)
    }

    /// Writes the stored notifications with `seq > since` in order, at least
    /// up to `until` (`0`: everything stored now), then updates `last_sent`
    /// to the highest `seq` actually written. Live frames that arrive
    /// meanwhile are drained so the queue cannot overflow; their `seq`
    /// extends what must be covered before the catch-up ends (they are in
    /// storage: a notification is published only after it committed).
    ///
    /// Boxed, like `client_frame`: every idle connection's task is as large
    /// as the largest future it may await, and these two (database reads)
    /// made it 4.5 KiB instead of 2.2.
    fn catch_up<'a>(
        &'a mut self,
        since: i64,
        until: i64,
        ctx: &'a GatewayState,
    ) -> LocalBoxFuture<'a, Result<Closing, Gone>> {
        Box::pin(self.catch_up_from_storage(since, until, ctx))
    }

    async fn catch_up_from_storage(
        &mut self,
        since: i64,
        until: i64,
        ctx: &GatewayState,
    ) -> Result<Closing, Gone> {
        let mut cursor = since.max(0);
        let mut want = until;
        let mut highest_read = 0;
        let mut sent = 0u64;
        loop {
            let page = match ctx.db.get().await {
                Ok(mut conn) => inbox::after(&mut conn, &self.user_id, cursor, CATCH_UP_PAGE).await,
                Err(err) => Err(err.into()),
            };
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(%err, "catch-up failed; closing so the client resumes");
                    return Ok(close_reason(
                        CloseCode::Error,
                        "storage unavailable, resume later",
                    ));
                }
            };
            let full = page.len() as i64 == CATCH_UP_PAGE;
            let read_any = !page.is_empty();
            for notification in page {
                cursor = notification.seq;
                highest_read = highest_read.max(notification.seq);
                // Muted: in the history, never pushed.
                if notification.muted {
                    continue;
                }
                let id = notification.id;
                self.send(ServerFrame::Notification(notification.into()))
                    .await?;
                ctx.written.record(self.shard, id);
                sent += 1;
                // After every frame, not only every page: writing a page to
                // a slow socket can take as long as the live queue takes to
                // fill, and a full queue gets the connection kicked.
                want = self.drain_live(want, ctx).await?;
            }
            self.last_sent = self.last_sent.max(highest_read);
            want = self.drain_live(want, ctx).await?;
            // Everything stored was read, unless the page was full or a live
            // frame showed a newer one (the next query finds it). A query
            // that finds nothing ends it either way: no spinning.
            if !read_any || (!full && cursor >= want) {
                break;
            }
        }
        ctx.metrics.resume_backlog.observe(sent as f64);
        ctx.metrics.frames_sent.inc_by(sent);
        Ok(None)
    }

    /// Tells a resuming client what changed since `since_version` of the
    /// notifications it holds (up to its `since`), as `state` frames; or
    /// `resync` when that cannot be told. Changes committed after the
    /// `hello` come live as well (the connection subscribed before it):
    /// a client keeps the newest state of each item by its `version`.
    async fn sync_state(
        &mut self,
        since_version: i64,
        resume: Resume,
        ctx: &GatewayState,
    ) -> Result<Closing, Gone> {
        // Nothing held, nothing to tell.
        let Some(held) = resume.since.map(|since| since.min(self.last_sent)) else {
            return Ok(None);
        };
        if since_version > resume.version {
            // A version this server never had (its storage was reset).
            self.send(ServerFrame::Resync).await?;
            return Ok(None);
        }
        let changed = match ctx.db.get().await {
            Ok(mut conn) => {
                inbox::changed_since(&mut conn, &self.user_id, since_version, held).await
            }
            Err(err) => Err(err.into()),
        };
        match changed {
            Ok(Some(items)) => {
                for frame in state_frames(items, resume.version) {
                    self.send(frame).await?;
                }
                Ok(None)
            }
            Ok(None) => self.send(ServerFrame::Resync).await.map(|()| None),
            Err(err) => {
                tracing::warn!(%err, "state sync failed; closing so the client resumes");
                Ok(close_reason(
                    CloseCode::Error,
                    "storage unavailable, resume later",
                ))
            }
        }
    }

    /// Takes the live frames queued during a catch-up without waiting:
    /// notifications only raise `want` (they are in storage and the
    /// catch-up sends them in order), other frames are written now.
    async fn drain_live(&mut self, mut want: i64, ctx: &GatewayState) -> Result<i64, Gone> {
        while let Ok(frame) = self.frames.try_recv() {
            match frame.seq {
                Some(seq) => want = want.max(seq),
                None if frame.resync => {}
                None => self.write(&frame, ctx).await?,
            }
        }
        Ok(want)
    }

    /// Boxed (see `catch_up`).
    fn client_frame<'a>(
        &'a mut self,
        text: &'a str,
        bad_frames: &'a mut u32,
        ctx: &'a web::Data<GatewayState>,
    ) -> LocalBoxFuture<'a, Result<Closing, Gone>> {
        Box::pin(self.handle_client_frame(text, bad_frames, ctx))
    }

    /// `resume` frames already waiting behind this one (a client that
    /// repeats it while the first is served) are merged into one catch-up
    /// from the earliest `since`, which covers what each asked for; the
    /// first other message is held back and handled next, in order.
    fn coalesce_resumes(&mut self, mut since: i64) -> i64 {
        use futures_util::FutureExt;
        let mut merged = 0u32;
        while let Some(received) = self.stream.recv().now_or_never() {
            if let Some(Ok(Message::Text(text))) = &received
                && let Ok(ClientFrame::Resume { since: next }) = serde_json::from_str(text)
            {
                since = since.min(next);
                merged += 1;
                continue;
            }
            self.held_back = Some(received);
            break;
        }
        if merged > 0 {
            tracing::debug!(user_id = %self.user_id, merged, since, "resume frames coalesced");
        }
        since
    }

    async fn handle_client_frame(
        &mut self,
        text: &str,
        bad_frames: &mut u32,
        ctx: &web::Data<GatewayState>,
    ) -> Result<Closing, Gone> {
        let request = match client_frames::decode(text, Utc::now()) {
            Ok(request) => request,
            Err(refused) => {
                *bad_frames += 1;
                return self.error(refused.code, &refused.message).await;
            }
        };
        if request.costs_storage()
            && let Err(wait) = self.requests.take()
        {
            ctx.metrics.frames_rate_limited.inc();
            return self
                .error(
                    ErrorCode::RateLimited,
                    &format!(
                        "too many frames that read or change storage; not applied, retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                )
                .await;
        }
        match request {
            Request::Ping => self.send(ServerFrame::Pong).await.map(|()| None),
            Request::Resume { since } => {
                let since = self.coalesce_resumes(since);
                self.catch_up(since, 0, ctx).await
            }
            Request::Change(action) => self.change(action, ctx).await,
            Request::Refresh { token } => match ctx.verifier.verify(&token).await {
                Ok(token) if token.user_id == self.user_id => {
                    self.token_expires_at = token.expires_at();
                    self.token_jti = token.jti;
                    Ok(None)
                }
                Ok(_) => {
                    self.error(ErrorCode::BadToken, "the token is for another user")
                        .await
                }
                Err(err) => self.error(ErrorCode::BadToken, &err.to_string()).await,
            },
        }
    }

    /// Applies a state change off the delivery loop (a slow database must
    /// not stall frames); the resulting frame (`read`, `unread`, `seen`) comes back to this
    /// connection, and every other one of the user, through the channel.
    /// One change at a time per connection, so they apply in the order sent.
    async fn change(
        &mut self,
        action: Action,
        ctx: &web::Data<GatewayState>,
    ) -> Result<Closing, Gone> {
        if let Some(previous) = self.change_in_flight.take() {
            let _ = previous.await;
        }
        let ctx = ctx.clone();
        let user_id = self.user_id.clone();
        let mut session = self.session.clone();
        self.change_in_flight = Some(actix_web::rt::spawn(async move {
            if let Err(err) = inbox_changes::apply(
                &ctx.db,
                &ctx.redis,
                &user_id,
                action.target(),
                action.change,
            )
            .await
            {
                tracing::warn!(%err, "read state change failed");
                let frame = ServerFrame::Error {
                    code: ErrorCode::Unavailable,
                    message: "storage unavailable; nothing changed, try again".into(),
                };
                let _ = session.text(frame.to_json()).await;
            }
        }));
        Ok(None)
    }

    async fn error(&mut self, code: ErrorCode, message: &str) -> Result<Closing, Gone> {
        self.send(ServerFrame::Error {
            code,
            message: message.to_owned(),
        })
        .await
        .map(|()| None)
    }

    async fn send(&mut self, frame: ServerFrame) -> Result<(), Gone> {
        self.session.text(frame.to_json()).await.map_err(|_| Gone)
    }

    /// Writes a live frame's shared bytes, recording delivery latency.
    async fn write(&mut self, frame: &LiveFrame, ctx: &GatewayState) -> Result<(), Gone> {
        match frame
            .traceparent
            .as_deref()
            .filter(|_| telemetry::exporting())
        {
            None => self
                .session
                .text(frame.bytes.clone())
                .await
                .map_err(|_| Gone)?,
            Some(context) => {
                let span = tracing::info_span!(
                    parent: None,
                    "frame write",
                    otel.kind = "consumer",
                    seq = frame.seq,
                );
                traceparent::adopt(&span, Some(context));
                self.session
                    .text(frame.bytes.clone())
                    .instrument(span)
                    .await
                    .map_err(|_| Gone)?;
            }
        }
        ctx.metrics.frames_sent.inc();
        if let Some(id) = frame.id {
            ctx.written.record(self.shard, id);
        }
        if let Some(created_at) = frame.created_at {
            let age = (Utc::now() - created_at).to_std().unwrap_or_default();
            ctx.metrics.delivery_seconds.observe(age.as_secs_f64());
        }
        Ok(())
    }
}
