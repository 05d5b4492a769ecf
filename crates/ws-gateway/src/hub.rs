//! The hub owns which connections each user has on this instance and the
//! process's single Redis subscription per online user.
//!
//! It is one task; connections talk to it through a clonable [`Hub`] handle
//! (commands over a bounded channel, a oneshot reply where the caller must
//! wait). A user's channel is subscribed when their first connection joins,
//! before the join is answered (so nothing published after `hello` can be
//! missed), and unsubscribed when their last one leaves.
//!
//! Each connection has a bounded queue. A connection whose queue is full is
//! a client too slow to read: it is kicked (its token cancelled) instead of
//! letting memory grow.

use std::collections::HashMap;

use std::sync::Arc;

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use domain::published;
use platform::redis::{
    FramesError, Reconnects, RedisError, RedisSubscriber, UserFrame, UserFrames,
};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;

/// A frame published for a user, as every connection of the user gets it:
/// the bytes to write (shared, not copied) and what the session needs to
/// keep the sequence gapless, read once per message.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// The notification's `seq`; `None` for frames that are not notifications (read events).
    pub seq: Option<i64>,
    /// The notification's id (notification frames).
    pub id: Option<uuid::Uuid>,
    /// Not a frame to write: frames may have been missed (the subscriber
    /// lagged or reconnected); the connection catches up from storage.
    pub resync: bool,
    /// The `erased` frame: the user's data is gone; the connection writes
    /// it and closes (4004).
    pub erased: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub bytes: ByteString,
    /// The publisher's span (W3C `traceparent`), when the worker traces.
    pub traceparent: Option<ByteString>,
}

impl LiveFrame {
    /// Reads a channel message (`domain::published`): the frame bytes are
    /// kept as they are, the trace context is split off.
    fn parse(message: ByteString) -> Self {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<&'a str>,
            seq: Option<i64>,
            id: Option<uuid::Uuid>,
            created_at: Option<DateTime<Utc>>,
        }
        let (traceparent, frame) = published::decode(&message);
        let head = serde_json::from_str::<Head>(frame).unwrap_or(Head {
            kind: None,
            seq: None,
            id: None,
            created_at: None,
        });
        Self {
            seq: head.seq,
            id: head.id.filter(|_| head.kind == Some("notification")),
            resync: false,
            erased: head.kind == Some("erased"),
            created_at: head.created_at,
            traceparent: traceparent.map(|t| message.slice_ref(t)),
            bytes: message.slice_ref(frame),
        }
    }

    fn resync() -> Self {
        Self {
            seq: None,
            id: None,
            resync: true,
            erased: false,
            created_at: None,
            bytes: ByteString::new(),
            traceparent: None,
        }
    }
}

/// How a connection receives frames and is told it fell behind. Frames are
/// queued behind an `Arc`: tokio allocates a queue's first block of 32 slots
/// when the channel is made, and every idle connection has one (256 bytes of
/// slots instead of 3.3 KiB with the frame inline).
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    pub frames: mpsc::Sender<Arc<LiveFrame>>,
    pub kicked: CancellationToken,
}

enum Command {
    Join {
        user_id: String,
        conn_id: u64,
        handle: ConnectionHandle,
        /// Most connections the user may hold here (0: any).
        max_per_user: usize,
        done: oneshot::Sender<Result<(), HubError>>,
    },
    Leave {
        user_id: String,
        conn_id: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the hub has stopped")]
    Stopped,
    #[error("the user holds {0} connections on this gateway, its maximum")]
    UserFull(usize),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

#[derive(Clone)]
pub struct Hub {
    commands: mpsc::Sender<Command>,
}

impl Hub {
    /// Starts the hub task; it ends when the last handle is dropped (after
    /// the connections have closed, so a drain can still say 1012 to each).
    pub fn start(subscriber: RedisSubscriber, metrics: Arc<GatewayMetrics>) -> Self {
        let (commands, rx) = mpsc::channel(1024);
        let frames = subscriber.frames();
        let reconnects = subscriber.reconnects();
        let task = HubTask {
            users: HashMap::new(),
            subscriber,
            metrics,
        };
        tokio::spawn(task.run(rx, frames, reconnects));
        Self { commands }
    }

    /// Registers a connection; returns once the user's channel is
    /// subscribed. Refused when the user holds `max_per_user` connections
    /// here already (0: no limit).
    pub async fn join(
        &self,
        user_id: &str,
        conn_id: u64,
        handle: ConnectionHandle,
        max_per_user: usize,
    ) -> Result<(), HubError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Join {
                user_id: user_id.to_owned(),
                conn_id,
                handle,
                max_per_user,
                done,
            })
            .await
            .map_err(|_| HubError::Stopped)?;
        answer.await.map_err(|_| HubError::Stopped)?
    }

    pub async fn leave(&self, user_id: &str, conn_id: u64) {
        let _ = self
            .commands
            .send(Command::Leave {
                user_id: user_id.to_owned(),
                conn_id,
            })
            .await;
    }
}

struct HubTask {
    users: HashMap<String, HashMap<u64, ConnectionHandle>>,
    subscriber: RedisSubscriber,
    metrics: Arc<GatewayMetrics>,
}

impl HubTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut frames: UserFrames,
        mut reconnects: Reconnects,
    ) {
        let mut reconnects_open = true;
        // After a reconnect, a second resync once the subscriptions are surely
        // back (fred restores them right after the reconnect event).
        let mut resync_again: Option<tokio::time::Instant> = None;
        loop {
            let resync_due = resync_again.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                frame = frames.recv() => match frame {
                    Ok(frame) => self.deliver(frame),
                    Err(FramesError::Lagged(skipped)) => {
                        tracing::error!(skipped, "hub fell behind the subscriber; connections resync from storage");
                        self.resync_all();
                    }
                    Err(FramesError::Closed) => break,
                },
                reconnected = reconnects.recv(), if reconnects_open => {
                    if reconnected {
                        tracing::warn!("Redis subscriber reconnected; connections resync from storage");
                        self.resync_all();
                        resync_again = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
                    } else {
                        reconnects_open = false;
                    }
                }
                () = tokio::time::sleep_until(resync_due), if resync_again.is_some() => {
                    resync_again = None;
                    self.resync_all();
                }
            }
        }
        tracing::info!("hub stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                user_id,
                conn_id,
                handle,
                max_per_user,
                done,
            } => {
                let held = self.users.get(&user_id).map_or(0, HashMap::len);
                if max_per_user > 0 && held >= max_per_user {
                    let _ = done.send(Err(HubError::UserFull(held)));
                    return;
                }
                let first = held == 0;
                if first && let Err(err) = self.subscriber.subscribe_user(&user_id).await {
                    let _ = done.send(Err(err.into()));
                    return;
                }
                self.users
                    .entry(user_id)
                    .or_default()
                    .insert(conn_id, handle);
                self.metrics.users_online.set(self.users.len() as i64);
                let _ = done.send(Ok(()));
            }
            Command::Leave { user_id, conn_id } => self.remove(&user_id, conn_id).await,
        }
    }

    async fn remove(&mut self, user_id: &str, conn_id: u64) {
        let Some(connections) = self.users.get_mut(user_id) else {
            return;
        };
        connections.remove(&conn_id);
        if connections.is_empty() {
            self.users.remove(user_id);
            self.metrics.users_online.set(self.users.len() as i64);
            if let Err(err) = self.subscriber.unsubscribe_user(user_id).await {
                tracing::warn!(%err, "cannot unsubscribe a user's channel");
            }
        }
    }

    /// Tells every connection to catch up from storage: what was published
    /// while the subscriber was away or behind is not coming.
    fn resync_all(&mut self) {
        let metrics = &self.metrics;
        for connections in self.users.values_mut() {
            connections.retain(|_, handle| {
                match handle.frames.try_send(Arc::new(LiveFrame::resync())) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics.send_queue_drops.inc();
                        handle.kicked.cancel();
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
    }

    /// Hands the frame to every connection of the user; the bytes are shared,
    /// not copied per connection, and parsed once.
    fn deliver(&mut self, frame: UserFrame) {
        let Some(connections) = self.users.get_mut(&frame.user_id) else {
            return;
        };
        let live = Arc::new(LiveFrame::parse(frame.frame));
        let metrics = &self.metrics;
        connections.retain(
            |conn_id, handle| match handle.frames.try_send(live.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(conn_id, "send queue full; disconnecting slow client");
                    metrics.send_queue_drops.inc();
                    handle.kicked.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
    }
}
