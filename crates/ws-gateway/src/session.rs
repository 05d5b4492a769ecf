//! One WebSocket connection: forwards the user's frames, answers pings,
//! checks liveness, and closes with a documented code when it must:
//!
//! | code | when |
//! |------|------|
//! | 1000 | the client closed |
//! | 1008 | the client fell too far behind (send queue full) or kept sending bad frames |
//! | 1009 | a frame over the size limit |
//! | 1011 | the hub stopped unexpectedly |
//! | 1012 | the gateway is restarting (drain); reconnect elsewhere |
//! | 4001 | the token expired |
//! | 4408 | no sign of life (not even a pong) within the client timeout |

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use bytestring::ByteString;
use domain::frames::ErrorCode;
use domain::{ClientFrame, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Bad frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 10;

pub struct SessionConfig {
    pub ping_interval: Duration,
    pub client_timeout: Duration,
}

pub struct Connection {
    pub user_id: String,
    pub conn_id: u64,
    pub session: Session,
    pub stream: MessageStream,
    pub frames: mpsc::Receiver<ByteString>,
    pub kicked: CancellationToken,
    pub token_expires_at: Instant,
}

fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

fn slow_consumer() -> Option<CloseReason> {
    close_reason(
        CloseCode::Policy,
        "too slow: send queue full, resume from your last seq",
    )
}

impl Connection {
    /// Sends `hello`, then serves the connection until it closes.
    pub async fn run(
        mut self,
        hello: ServerFrame,
        hub: Hub,
        config: SessionConfig,
        shutdown: CancellationToken,
    ) {
        let reason = self.serve(hello, &config, &shutdown).await;
        hub.leave(&self.user_id, self.conn_id).await;
        tracing::debug!(user_id = %self.user_id, conn_id = self.conn_id, ?reason, "connection closed");
        let _ = self.session.close(reason).await;
    }

    /// Returns the close reason to send (None when the peer is already gone).
    async fn serve(
        &mut self,
        hello: ServerFrame,
        config: &SessionConfig,
        shutdown: &CancellationToken,
    ) -> Option<CloseReason> {
        if self.session.text(hello.to_json()).await.is_err() {
            return None;
        }
        let mut ping = interval(config.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut bad_frames = 0u32;
        loop {
            tokio::select! {
                frame = self.frames.recv() => match frame {
                    Some(frame) => {
                        if self.session.text(frame).await.is_err() {
                            return None;
                        }
                    }
                    // The hub drops a kicked connection's queue: say why.
                    None if self.kicked.is_cancelled() => return slow_consumer(),
                    None => return close_reason(CloseCode::Error, "hub stopped"),
                },
                () = self.kicked.cancelled() => return slow_consumer(),
                () = shutdown.cancelled() => {
                    return close_reason(CloseCode::Restart, "gateway restarting, reconnect");
                }
                () = sleep_until(self.token_expires_at) => {
                    return close_reason(CloseCode::Other(4001), "token expired");
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > config.client_timeout {
                        return close_reason(CloseCode::Other(4408), "no pong within the client timeout");
                    }
                    if self.session.ping(b"").await.is_err() {
                        return None;
                    }
                }
                message = self.stream.recv() => {
                    last_heard = Instant::now();
                    match message {
                        None => return None,
                        Some(Ok(Message::Close(_))) => {
                            return close_reason(CloseCode::Normal, "bye");
                        }
                        Some(Ok(Message::Ping(bytes))) => {
                            if self.session.pong(&bytes).await.is_err() {
                                return None;
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            let reply = self.client_frame(&text, &mut bad_frames);
                            if self.session.text(reply.to_json()).await.is_err() {
                                return None;
                            }
                            if bad_frames > MAX_BAD_FRAMES {
                                return close_reason(CloseCode::Policy, "too many bad frames");
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            bad_frames += 1;
                            let reply = ServerFrame::Error {
                                code: ErrorCode::UnsupportedData,
                                message: "binary frames are not supported; send JSON text".into(),
                            };
                            if self.session.text(reply.to_json()).await.is_err() {
                                return None;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(ProtocolError::Overflow)) => {
                            let reply = ServerFrame::Error {
                                code: ErrorCode::FrameTooLarge,
                                message: "frame larger than the gateway accepts".into(),
                            };
                            let _ = self.session.text(reply.to_json()).await;
                            return close_reason(CloseCode::Size, "frame too large");
                        }
                        Some(Err(err)) => {
                            tracing::debug!(%err, "WebSocket protocol error");
                            return close_reason(CloseCode::Protocol, "protocol error");
                        }
                    }
                }
            }
        }
    }

    /// The answer to a client text frame.
    fn client_frame(&self, text: &str, bad_frames: &mut u32) -> ServerFrame {
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(ClientFrame::Ping) => ServerFrame::Pong,
            Err(err) => {
                *bad_frames += 1;
                ServerFrame::Error {
                    code: ErrorCode::BadFrame,
                    message: format!("not a known frame: {err}"),
                }
            }
        }
    }
}
