//! The only module that speaks to Redis (through fred). Each Redis command
//! Herald uses is one named method here; every key comes from
//! [`domain::KeySpace`].
//!
//! Connections: [`RedisStore`] serves ordinary commands (append, ack,
//! publish, ping). A blocking `XREADGROUP` must never share that connection
//! (it would stall every command queued behind it), so readers get their own
//! client from [`RedisStore::stream_reader`]. The gateway's one subscriber
//! connection per process is [`RedisSubscriber`].

use std::time::Duration;

use backon::Retryable;
use bytestring::ByteString;
use domain::keys::{CONSUMER_GROUP, ENTRY_FIELD};
use domain::{KeySpace, Priority};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::streams::XReadResponse;
use secrecy::ExposeSecret;
use tokio::sync::broadcast;

use crate::settings::RedisSettings;

/// Entries the gateway's subscriber may buffer before the hub reads them.
const SUBSCRIBER_BUFFER: usize = 65_536;

#[derive(Debug, thiserror::Error)]
#[error("redis {command} failed: {source}")]
pub struct RedisError {
    command: &'static str,
    #[source]
    source: fred::error::Error,
}

impl RedisError {
    fn on(command: &'static str) -> impl FnOnce(fred::error::Error) -> Self {
        move |source| RedisError { command, source }
    }
}

/// One entry read from a priority stream. `payload` is `None` when the entry
/// has no notification field (it was not written by Herald).
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub priority: Priority,
    pub id: String,
    pub payload: Option<String>,
}

/// Where a consumer-group read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Entries never delivered to any consumer (`>`).
    New,
    /// Entries already delivered to this consumer and not acknowledged (`0`).
    OwnPending,
}

fn builder(settings: &RedisSettings) -> Result<Builder, RedisError> {
    let config =
        Config::from_url(settings.url.expose_secret()).map_err(RedisError::on("config"))?;
    let mut builder = Builder::from_config(config);
    let command_timeout = settings.command_timeout();
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = command_timeout;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            p.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
        })
        // After the first connection, reconnect forever: 100 ms doubling to 5 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    Ok(builder)
}

/// Connects, retrying with backoff (and logging why) until Redis answers.
async fn connect_client(settings: &RedisSettings) -> Result<Client, RedisError> {
    let builder = builder(settings)?;
    let attempt = || async {
        let client = builder.build().map_err(RedisError::on("connect"))?;
        client.init().await.map_err(RedisError::on("connect"))?;
        Ok::<_, RedisError>(client)
    };
    attempt
        .retry(crate::db::startup_backoff())
        .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
        .await
}

#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    keys: KeySpace,
    settings: RedisSettings,
}

impl RedisStore {
    /// Connects (waiting for Redis at start) with the configured key prefix.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisError> {
        Ok(Self {
            client: connect_client(settings).await?,
            keys: KeySpace::new(settings.key_prefix.clone()),
            settings: settings.clone(),
        })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// A second store on its own connection, for blocking stream reads.
    pub async fn stream_reader(&self) -> Result<Self, RedisError> {
        Self::connect(&self.settings).await
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.client
            .ping::<()>(None)
            .await
            .map_err(RedisError::on("PING"))
    }

    /// XADD a notification's JSON to its priority stream; returns the entry id.
    /// Only once this returns Ok is the notification durable (as far as the
    /// Redis persistence settings promise).
    pub async fn append(&self, priority: Priority, payload: &str) -> Result<String, RedisError> {
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.stream(priority),
                false,
                None::<()>,
                "*",
                vec![(ENTRY_FIELD, payload)],
            )
            .await
            .map_err(RedisError::on("XADD"))
    }

    /// Creates the consumer group on every priority stream (and the streams).
    /// An existing group (BUSYGROUP) is success.
    pub async fn ensure_consumer_group(&self) -> Result<(), RedisError> {
        for priority in Priority::ALL {
            let created = self
                .client
                .xgroup_create::<(), _, _, _>(self.keys.stream(priority), CONSUMER_GROUP, "0", true)
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.details().starts_with("BUSYGROUP") => {}
                Err(err) => return Err(RedisError::on("XGROUP CREATE")(err)),
            }
        }
        Ok(())
    }

    /// XREADGROUP from all priority streams. `ReadFrom::New` blocks up to
    /// `block` for entries never delivered; `ReadFrom::OwnPending` re-reads
    /// entries delivered to this consumer and not acked (after a restart or a
    /// failed batch) without blocking. Call on a
    /// [`stream_reader`](Self::stream_reader).
    pub async fn read_group(
        &self,
        consumer: &str,
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, RedisError> {
        let streams: Vec<String> = Priority::ALL.iter().map(|p| self.keys.stream(*p)).collect();
        let (id, block) = match from {
            ReadFrom::New => (">", Some(block.as_millis() as u64)),
            ReadFrom::OwnPending => ("0", None),
        };
        let ids = vec![id; streams.len()];
        let reply: Value = match self
            .client
            .xreadgroup(
                CONSUMER_GROUP,
                consumer,
                Some(count as u64),
                block,
                false,
                streams,
                ids,
            )
            .await
        {
            Ok(reply) => reply,
            // The streams or the group vanished (a Redis without persistence
            // restarted, or an operator deleted them): recreate and read again.
            Err(err) if err.details().starts_with("NOGROUP") => {
                tracing::warn!("consumer group missing; recreating it");
                self.ensure_consumer_group().await?;
                return Ok(Vec::new());
            }
            Err(err) => return Err(RedisError::on("XREADGROUP")(err)),
        };
        // A blocking read that timed out answers nil.
        if reply.is_null() {
            return Ok(Vec::new());
        }
        let by_stream: XReadResponse<String, String, String, Value> =
            reply
                .into_xread_response()
                .map_err(RedisError::on("XREADGROUP"))?;
        let mut entries = Vec::new();
        for priority in Priority::ALL {
            let Some(stream_entries) = by_stream.get(&self.keys.stream(priority)) else {
                continue;
            };
            for (id, fields) in stream_entries {
                entries.push(StreamEntry {
                    priority,
                    id: id.clone(),
                    payload: fields.get(ENTRY_FIELD).and_then(|v| v.as_string()),
                });
            }
        }
        Ok(entries)
    }

    /// XACK entries, one command per priority stream present.
    pub async fn ack(&self, entries: &[StreamEntry]) -> Result<(), RedisError> {
        for priority in Priority::ALL {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|e| e.priority == priority)
                .map(|e| e.id.as_str())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let ids: Vec<fred::types::streams::XID> = ids.into_iter().map(Into::into).collect();
            self.client
                .xack::<i64, _, _, _>(self.keys.stream(priority), CONSUMER_GROUP, ids)
                .await
                .map_err(RedisError::on("XACK"))?;
        }
        Ok(())
    }

    /// Moves an entry that can never be processed to the dead-letter stream.
    pub async fn dead_letter(&self, entry: &StreamEntry, error: &str) -> Result<(), RedisError> {
        let fields = vec![
            ("stream", self.keys.stream(entry.priority)),
            ("entry_id", entry.id.clone()),
            ("error", error.to_owned()),
            (ENTRY_FIELD, entry.payload.clone().unwrap_or_default()),
        ];
        self.client
            .xadd::<String, _, _, _, _>(
                self.keys.dead_letter_stream(),
                false,
                None::<()>,
                "*",
                fields,
            )
            .await
            .map(|_| ())
            .map_err(RedisError::on("XADD dead-letter"))
    }

    /// PUBLISH frames to user channels in one pipeline (one round trip).
    pub async fn publish_to_users(&self, frames: &[(&str, String)]) -> Result<(), RedisError> {
        if frames.is_empty() {
            return Ok(());
        }
        let pipeline = self.client.pipeline();
        for (user_id, frame) in frames {
            let () = pipeline
                .publish(self.keys.user_channel(user_id), frame.as_str())
                .await
                .map_err(RedisError::on("PUBLISH"))?;
        }
        pipeline
            .all::<Vec<Value>>()
            .await
            .map(|_| ())
            .map_err(RedisError::on("PUBLISH"))
    }

    /// Length of one priority stream (entries not yet trimmed).
    pub async fn stream_len(&self, priority: Priority) -> Result<u64, RedisError> {
        self.client
            .xlen(self.keys.stream(priority))
            .await
            .map_err(RedisError::on("XLEN"))
    }

    /// Entries delivered to a consumer and not yet acknowledged, per group.
    pub async fn pending_count(&self, priority: Priority) -> Result<u64, RedisError> {
        let reply: Value = self
            .client
            .xpending(self.keys.stream(priority), CONSUMER_GROUP, ())
            .await
            .map_err(RedisError::on("XPENDING"))?;
        Ok(match reply {
            Value::Array(items) => items.first().and_then(Value::as_u64).unwrap_or(0),
            _ => 0,
        })
    }

    /// How many connections (on all gateways) subscribe to a user's channel.
    pub async fn user_subscribers(&self, user_id: &str) -> Result<u64, RedisError> {
        let reply: Vec<Value> = self
            .client
            .pubsub_numsub(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("PUBSUB NUMSUB"))?;
        Ok(reply.get(1).and_then(Value::as_u64).unwrap_or(0))
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letter_len(&self) -> Result<u64, RedisError> {
        self.client
            .xlen(self.keys.dead_letter_stream())
            .await
            .map_err(RedisError::on("XLEN"))
    }

    /// Deletes every key under this store's prefix; for tests and tools.
    pub async fn delete_streams(&self) -> Result<(), RedisError> {
        let mut keys: Vec<String> = Priority::ALL.iter().map(|p| self.keys.stream(*p)).collect();
        keys.push(self.keys.dead_letter_stream());
        self.client
            .del::<i64, _>(keys)
            .await
            .map(|_| ())
            .map_err(RedisError::on("DEL"))
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
#[derive(Clone)]
pub struct RedisSubscriber {
    client: SubscriberClient,
    keys: KeySpace,
}

impl RedisSubscriber {
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisError> {
        let builder = builder(settings)?;
        let attempt = || async {
            let client = builder
                .build_subscriber_client()
                .map_err(RedisError::on("connect"))?;
            client.init().await.map_err(RedisError::on("connect"))?;
            Ok::<_, RedisError>(client)
        };
        let client = attempt
            .retry(crate::db::startup_backoff())
            .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
            .await?;
        let _resubscribe_task = client.manage_subscriptions();
        Ok(Self {
            client,
            keys: KeySpace::new(settings.key_prefix.clone()),
        })
    }

    pub async fn subscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        self.client
            .subscribe(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("SUBSCRIBE"))
    }

    pub async fn unsubscribe_user(&self, user_id: &str) -> Result<(), RedisError> {
        self.client
            .unsubscribe(self.keys.user_channel(user_id))
            .await
            .map_err(RedisError::on("UNSUBSCRIBE"))
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.client
            .ping::<()>(None)
            .await
            .map_err(RedisError::on("PING"))
    }

    /// Receives every user frame published to a channel this process
    /// subscribed to. Frames that are not text are skipped.
    pub fn frames(&self) -> UserFrames {
        UserFrames {
            rx: self.client.message_rx(),
            keys: self.keys.clone(),
        }
    }
}

pub struct UserFrames {
    rx: broadcast::Receiver<fred::types::Message>,
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
            let message = match self.rx.recv().await {
                Ok(message) => message,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(FramesError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(FramesError::Closed),
            };
            let Some(user_id) = self.keys.user_of_channel(&message.channel) else {
                continue;
            };
            let Some(text) = message.value.as_bytes_str() else {
                continue;
            };
            return Ok(UserFrame {
                user_id: user_id.to_owned(),
                frame: ByteString::from(text.to_string()),
            });
        }
    }
}
