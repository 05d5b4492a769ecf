//! Users' channels: publishing frames (with the worker's acknowledgements
//! in the same command), API key revocations, and the subscriber the
//! gateway (one per process) and ingest-api listen with.

use backon::Retryable;
use bytestring::ByteString;
use domain::keys::CONSUMER_GROUP;
use domain::{KeySpace, Lane};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::broadcast;

use super::connection::{COMMAND_CLIENT_BUFFER, builder, connect_client, keep_connected};
use super::scripts::PUBLISH_AND_ACK;
use super::streams::StreamEntry;
use super::{RedisError, RedisStore};
use crate::settings::RedisSettings;

impl RedisStore {
    /// Publishes frames to users' channels (see [`Self::publish_to_users`])
    /// and acknowledges `entries`, in one command (`publish_and_ack.lua`):
    /// Redis runs it at once, frames first. Only the acknowledgement
    /// decides the outcome: a PUBLISH refused while the XACK went through
    /// is logged, not returned, since the round is done
    /// (stored and acknowledged) and live delivery is best effort anyway:
    /// the gateway fills a gap in a user's `seq` from storage at the next
    /// frame, and a client resumes from its last `seq` on reconnect.
    pub async fn publish_and_ack(
        &self,
        frames: &[(&str, String)],
        entries: &[StreamEntry],
    ) -> Result<(), RedisError> {
        let refused = self.run_publish_and_ack(frames, entries).await?;
        if refused > 0 {
            tracing::warn!(
                refused,
                "PUBLISH refused while the round was acknowledged; clients catch up from storage"
            );
        }
        Ok(())
    }

    /// Runs `publish_and_ack.lua`; answers how many PUBLISHes Redis refused.
    async fn run_publish_and_ack(
        &self,
        frames: &[(&str, String)],
        entries: &[StreamEntry],
    ) -> Result<u64, RedisError> {
        if frames.is_empty() && entries.is_empty() {
            return Ok(0);
        }
        let channels: Vec<String> = frames
            .iter()
            .map(|(user_id, _)| self.keys.user_channel(user_id))
            .collect();
        let mut lanes: Vec<(Lane, Vec<&str>)> = Vec::new();
        for entry in entries {
            let lane = entry.lane();
            match lanes.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, ids)) => ids.push(entry.id.as_str()),
                None => lanes.push((lane, vec![entry.id.as_str()])),
            }
        }
        let counts: Vec<String> = std::iter::once(frames.len())
            .chain(lanes.iter().map(|(_, ids)| ids.len()))
            .map(|n| n.to_string())
            .collect();
        let mut args: Vec<&str> =
            Vec::with_capacity(3 + 2 * frames.len() + lanes.len() + entries.len());
        args.extend([CONSUMER_GROUP, self.publish_command(), counts[0].as_str()]);
        for (channel, (_, frame)) in channels.iter().zip(frames) {
            args.extend([channel.as_str(), frame.as_str()]);
        }
        for ((_, ids), count) in lanes.iter().zip(&counts[1..]) {
            args.push(count);
            args.extend(ids);
        }
        let keys: Vec<String> = lanes.iter().map(|(l, _)| self.keys.stream(*l)).collect();
        PUBLISH_AND_ACK
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(RedisError::on("EVALSHA publish_and_ack"))
    }

    /// `SPUBLISH` on sharded channels (their slot is the user's shard's),
    /// else `PUBLISH`.
    fn publish_command(&self) -> &'static str {
        if self.keys.is_sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// PUBLISH frames to user channels in one command (`publish_and_ack.lua`
    /// with nothing to acknowledge); an error if Redis refused any of them.
    /// Sharded channels are published one by one, each to its slot's node.
    pub async fn publish_to_users(&self, frames: &[(&str, String)]) -> Result<(), RedisError> {
        if self.keys.is_sharded() {
            for (user_id, frame) in frames {
                self.client
                    .spublish::<(), _, _>(self.keys.user_channel(user_id), frame.as_str())
                    .await
                    .map_err(RedisError::on("SPUBLISH"))?;
            }
            return Ok(());
        }
        match self.run_publish_and_ack(frames, &[]).await? {
            0 => Ok(()),
            refused => Err(RedisError::on("PUBLISH")(fred::error::Error::new(
                fred::error::ErrorKind::Unknown,
                format!("{refused} of {} frames refused", frames.len()),
            ))),
        }
    }

    /// Tells every ingest-api that this API key was revoked (they evict it
    /// from their caches); answers how many processes listened.
    pub async fn announce_key_revoked(&self, key_id: &str) -> Result<u64, RedisError> {
        self.client
            .publish(self.keys.api_key_revocations(), key_id)
            .await
            .map_err(RedisError::on("PUBLISH"))
    }

    /// Tells every ws-gateway that the token with this `jti` is revoked;
    /// answers how many processes listened.
    pub async fn announce_token_revoked(&self, jti: &str) -> Result<u64, RedisError> {
        self.client
            .publish(self.keys.token_revocations(), jti)
            .await
            .map_err(RedisError::on("PUBLISH"))
    }
}

/// A user's live frames as they arrive from Pub/Sub.
#[derive(Debug, Clone)]
pub struct UserFrame {
    pub user_id: String,
    pub frame: ByteString,
}

/// The gateway's single Pub/Sub connection, shared by all users of a process.
/// Subscriptions are re-established by fred after a reconnect.
///
/// On a Redis Cluster with sharded channels, a sharded subscription lives
/// on the master that owns its slot; when the slot moves (resharding) or
/// its master fails over, that server drops it silently. A watch task
/// compares the cluster's slot map every [`SLOT_WATCH_INTERVAL`]; when it
/// changed, every subscription is made again (each on its slot's owner
/// now) and [`Reconnects`] fires, so connections catch up from storage.
#[derive(Clone)]
pub struct RedisSubscriber {
    client: SubscriberClient,
    keys: KeySpace,
    /// Fires when the cluster's slot map changed.
    moved: broadcast::Sender<()>,
    /// Stops the slot watch when the last clone is dropped.
    _watch: Option<std::sync::Arc<tokio_util::sync::DropGuard>>,
}

/// How often a subscriber with sharded channels on a cluster checks the
/// slot map.
pub const SLOT_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RedisSubscriber {
    /// The gateway's subscriber: room for `buffer` messages the hub has not
    /// read yet (a hub that falls further behind resynchronises its users
    /// from storage).
    pub async fn connect(settings: &RedisSettings, buffer: usize) -> Result<Self, RedisError> {
        Self::connect_with_buffer(settings, buffer, true).await
    }

    /// A subscriber for a few control messages (API key revocations): no
    /// users' channels, so no slot watch.
    pub async fn connect_for_control(settings: &RedisSettings) -> Result<Self, RedisError> {
        Self::connect_with_buffer(settings, COMMAND_CLIENT_BUFFER, false).await
    }

    async fn connect_with_buffer(
        settings: &RedisSettings,
        buffer: usize,
        users: bool,
    ) -> Result<Self, RedisError> {
        let builder = builder(settings, buffer)?;
        let attempt = || async {
            let client = builder
                .build_subscriber_client()
                .map_err(RedisError::on("connect"))?;
            let task = client.init().await.map_err(RedisError::on("connect"))?;
            Ok::<_, RedisError>((client, task))
        };
        let (client, task) = attempt
            .retry(crate::retry::backoff())
            .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
            .await?;
        let _resubscribe_task = client.manage_subscriptions();
        let keys = settings.key_space();
        let (moved, _) = broadcast::channel(4);
        let restarted = moved.clone();
        // A restarted connection task has no subscriptions: make them again,
        // then tell the hub that messages may have been missed.
        keep_connected(client.clone(), task, move |client: &SubscriberClient| {
            let (client, restarted) = (client.clone(), restarted.clone());
            tokio::spawn(async move {
                if client.wait_for_connect().await.is_ok() {
                    if let Err(err) = client.resubscribe_all().await {
                        tracing::warn!(%err, "cannot subscribe again after the connection task restarted");
                    }
                    let _ = restarted.send(());
                }
            });
        });
        let watch = if users && client.is_clustered() && keys.is_sharded() {
            let stop = tokio_util::sync::CancellationToken::new();
            // A plain client: a subscriber connection cannot send
            // `CLUSTER SLOTS` while subscribed.
            let watcher = connect_client(settings).await?;
            tokio::spawn(watch_slots(
                watcher,
                client.clone(),
                moved.clone(),
                stop.clone(),
            ));
            Some(std::sync::Arc::new(stop.drop_guard()))
        } else {
            None
        };
        Ok(Self {
            client,
            keys,
            moved,
            _watch: watch,
        })
    }

    /// Subscribes to a user's channel: `SSUBSCRIBE` on the node that owns
    /// the user's shard when channels are sharded, else `SUBSCRIBE`.
    pub async fn subscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        let channel = self.keys.user_channel(user_id);
        if self.keys.is_sharded() {
            self.client
                .ssubscribe(channel)
                .await
                .map_err(RedisError::on("SSUBSCRIBE"))
        } else {
            self.client
                .subscribe(channel)
                .await
                .map_err(RedisError::on("SUBSCRIBE"))
        }
    }

    /// Listens to API key revocations (see [`RedisStore::announce_key_revoked`]).
    pub async fn subscribe_key_revocations(&self) -> Result<(), RedisError> {
        self.client
            .subscribe(self.keys.api_key_revocations())
            .await
            .map_err(RedisError::on("SUBSCRIBE"))
    }

    /// Listens to user token revocations (see [`RedisStore::announce_token_revoked`]).
    pub async fn subscribe_token_revocations(&self) -> Result<(), RedisError> {
        self.client
            .subscribe(self.keys.token_revocations())
            .await
            .map_err(RedisError::on("SUBSCRIBE"))
    }

    pub async fn unsubscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        let channel = self.keys.user_channel(user_id);
        if self.keys.is_sharded() {
            self.client
                .sunsubscribe(channel)
                .await
                .map_err(RedisError::on("SUNSUBSCRIBE"))
        } else {
            self.client
                .unsubscribe(channel)
                .await
                .map_err(RedisError::on("UNSUBSCRIBE"))
        }
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.client
            .ping::<()>(None)
            .await
            .map_err(RedisError::on("PING"))
    }

    /// Fires each time the subscriber connection was re-established:
    /// messages published while it was down were lost for this process.
    pub fn reconnects(&self) -> Reconnects {
        Reconnects {
            rx: self.client.reconnect_rx(),
            moved: Some(self.moved.subscribe()),
        }
    }

    /// Receives every user frame published to a channel this process
    /// subscribed to. Frames that are not text are skipped.
    pub fn frames(&self) -> UserFrames {
        UserFrames {
            messages: self.messages(),
            keys: self.keys.clone(),
        }
    }

    /// Every text message on a channel this process subscribed to.
    pub fn messages(&self) -> Messages {
        Messages {
            rx: self.client.message_rx(),
        }
    }
}

/// Text messages received by a [`RedisSubscriber`], with their channel.
pub struct Messages {
    rx: broadcast::Receiver<fred::types::Message>,
}

impl Messages {
    /// The next text message as `(channel, text)`; others are skipped.
    pub async fn recv(&mut self) -> Result<(String, String), FramesError> {
        loop {
            let message = match self.rx.recv().await {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(FramesError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(FramesError::Closed),
            };
            if let Some(text) = message.value.as_bytes_str() {
                return Ok((message.channel.to_string(), text.to_string()));
            }
        }
    }
}

/// Reconnects of the subscriber, and moves of the slots its sharded
/// subscriptions live in: either way, messages may have been missed.
pub struct Reconnects {
    rx: broadcast::Receiver<Server>,
    moved: Option<broadcast::Receiver<()>>,
}

impl Reconnects {
    /// Waits for the next reconnect or slot move; `false` once the client is gone.
    pub async fn recv(&mut self) -> bool {
        loop {
            let moved = async {
                match &mut self.moved {
                    Some(moved) => moved
                        .recv()
                        .await
                        .map_err(|err| matches!(err, broadcast::error::RecvError::Closed)),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                reconnected = self.rx.recv() => {
                    return !matches!(reconnected, Err(broadcast::error::RecvError::Closed));
                }
                moved = moved => match moved {
                    Ok(()) | Err(false) => return true,
                    // The watch is gone: only reconnects remain.
                    Err(true) => self.moved = None,
                },
            }
        }
    }
}

/// Every [`SLOT_WATCH_INTERVAL`], reads the cluster's slot map; when it
/// changed, subscribes again to every tracked channel (fred routes each
/// sharded one to its slot's owner now) and tells `moved`.
async fn watch_slots(
    watcher: Client,
    subscriber: SubscriberClient,
    moved: broadcast::Sender<()>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut known: Option<String> = None;
    let mut ticks = tokio::time::interval(SLOT_WATCH_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let slots: Result<Value, _> = watcher
            .custom(
                fred::types::CustomCommand::new_static(
                    "CLUSTER",
                    fred::types::ClusterHash::Random,
                    false,
                ),
                vec!["SLOTS"],
            )
            .await;
        let map = match slots {
            Ok(slots) => slot_map(&slots),
            Err(err) => {
                tracing::debug!(%err, "cannot read the cluster's slot map");
                continue;
            }
        };
        if known.as_ref().is_some_and(|known| *known != map) {
            tracing::warn!(
                "the cluster's slots moved; subscribing again and resyncing from storage"
            );
            match subscriber.resubscribe_all().await {
                Ok(()) => {
                    let _ = moved.send(());
                }
                Err(err) => {
                    // Try again at the next tick.
                    tracing::warn!(%err, "cannot subscribe again after a slot move");
                    continue;
                }
            }
        }
        known = Some(map);
    }
    let _ = watcher.quit().await;
}

/// `CLUSTER SLOTS` as text: slot ranges with their master's address,
/// sorted, so two reads of an unchanged cluster compare equal.
fn slot_map(slots: &Value) -> String {
    let Value::Array(ranges) = slots else {
        return String::new();
    };
    let mut lines: Vec<String> = ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(parts) = range else {
                return None;
            };
            let first = parts.first()?.as_u64()?;
            let last = parts.get(1)?.as_u64()?;
            let Value::Array(master) = parts.get(2)? else {
                return None;
            };
            let host = master.first()?.as_string()?;
            let port = master.get(1)?.as_u64()?;
            Some(format!("{first}-{last}@{host}:{port}"))
        })
        .collect();
    lines.sort();
    lines.join(",")
}

pub struct UserFrames {
    messages: Messages,
    keys: KeySpace,
}

#[derive(Debug, thiserror::Error)]
pub enum FramesError {
    #[error("subscriber fell behind and skipped {0} messages")]
    Lagged(u64),
    #[error("subscriber closed")]
    Closed,
}

impl UserFrames {
    pub async fn recv(&mut self) -> Result<UserFrame, FramesError> {
        loop {
            let (channel, text) = self.messages.recv().await?;
            if let Some(user_id) = self.keys.user_of_channel(&channel) {
                return Ok(UserFrame {
                    user_id: user_id.to_owned(),
                    frame: ByteString::from(text),
                });
            }
        }
    }
}
