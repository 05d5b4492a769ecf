//! Redis clients: the command client every service uses, a client per
//! blocking reader, and what they share (timeouts, Nagle off, reconnecting
//! forever after the first connection).

use std::time::Duration;

use backon::Retryable;
use domain::KeySpace;
use fred::prelude::*;
use fred::types::{ConnectHandle, SetOptions};
use secrecy::ExposeSecret;

use super::RedisError;
use crate::settings::RedisSettings;
use crate::tls::{self, TlsFiles, Verify};

/// fred gives every client eight broadcast channels of one capacity, each
/// allocated in full up front: a command client needs none of them large.
pub(super) const COMMAND_CLIENT_BUFFER: usize = 32;

pub(super) fn builder(
    settings: &RedisSettings,
    broadcast_capacity: usize,
) -> Result<Builder, RedisError> {
    let mut config =
        Config::from_url(settings.url.expose_secret()).map_err(RedisError::on("config"))?;
    config.tls = tls_config(settings, config.uses_tls())?;
    // One server: a command is written once; after a lost connection the
    // caller decides (ingest answers 503, the worker retries its round).
    // On a cluster, a command written to a master that just failed is
    // written again to the one that took over (a command run twice is an
    // entry appended twice with the same id, which the worker stores once).
    //
    // Redirections are not followed: fred 10.1 follows an `ASK` (a slot
    // being migrated) by reading the next reply on a pipelined connection
    // as the `ASKING` reply, which hands later commands each other's
    // replies. With none allowed, a redirected command fails at once (503,
    // or the worker's round is retried) after fred refreshed its slot map
    // (on `MOVED`), so the next one goes to the right master.
    let clustered = config.server.is_clustered();
    let attempts = if clustered { 3 } else { 1 };
    let mut builder = Builder::from_config(config);
    let command_timeout = settings.command_timeout();
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    builder
        .with_connection_config(|c| {
            // Commands are small and pipelined: send each at once (Nagle
            // would hold one back until the previous one is acknowledged).
            c.tcp.nodelay = Some(true);
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = command_timeout;
            c.max_command_attempts = attempts;
            if clustered {
                c.max_redirections = 0;
            }
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            p.broadcast_channel_capacity = broadcast_capacity;
        })
        // After the first connection, reconnect forever: 100 ms doubling to 5 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    Ok(builder)
}

/// `rediss://` (`uses_tls`) connects with TLS, verifying the server's
/// certificate and name against `redis.ca_file` or the system's roots. TLS
/// files set with a plain `redis://` URL are a mistake the operator must
/// hear about, not a silent plaintext connection.
fn tls_config(
    settings: &RedisSettings,
    uses_tls: bool,
) -> Result<Option<fred::types::config::TlsConfig>, RedisError> {
    let files = TlsFiles {
        ca_key: "redis.ca_file",
        ca_file: &settings.ca_file,
        cert_file: &settings.client_cert_file,
        key_file: &settings.client_key_file,
    };
    if !uses_tls {
        if [files.ca_file, files.cert_file, files.key_file]
            .iter()
            .any(|file| !file.is_empty())
        {
            return Err(config_error(
                "redis.ca_file/client_cert_file/client_key_file are set but redis.url is not rediss://".into(),
            ));
        }
        return Ok(None);
    }
    let config = tls::client_config(Verify::Full, files)
        .map_err(|err| config_error(format!("TLS: {err}")))?;
    Ok(Some(fred::types::config::TlsConnector::from(config).into()))
}

fn config_error(message: String) -> RedisError {
    RedisError::on("config")(fred::error::Error::new(
        fred::error::ErrorKind::Config,
        message,
    ))
}

/// Keeps a client's connection task running. fred 10.1 ends it when
/// following a cluster redirection fails (an `ASK` while a slot migrates
/// can), and every later command on the client then times out. This
/// starts the task again whenever it ends with an error, after
/// `on_restart` (given the new task's client, to restore what the
/// connection held); a client closed with `QUIT` ends it without one.
pub(super) fn keep_connected<C>(
    client: C,
    first: ConnectHandle,
    on_restart: impl Fn(&C) + Send + 'static,
) where
    C: ClientLike + Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut task = first;
        loop {
            match task.await {
                Ok(Err(err)) if !err.is_canceled() => {
                    tracing::warn!(%err, "the Redis connection task ended; starting it again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    task = client.connect();
                    on_restart(&client);
                }
                _ => return,
            }
        }
    });
}

/// Connects, retrying with backoff (and logging why) until Redis answers.
pub(super) async fn connect_client(settings: &RedisSettings) -> Result<Client, RedisError> {
    let builder = builder(settings, COMMAND_CLIENT_BUFFER)?;
    let attempt = || async {
        let client = builder.build().map_err(RedisError::on("connect"))?;
        let task = client.init().await.map_err(RedisError::on("connect"))?;
        keep_connected(client.clone(), task, |_| {});
        Ok::<_, RedisError>(client)
    };
    attempt
        .retry(crate::retry::backoff())
        .notify(|err, delay| tracing::warn!(%err, retry_in = ?delay, "Redis not reachable yet"))
        .await
}

#[derive(Clone)]
pub struct RedisStore {
    pub(super) client: Client,
    pub(super) keys: KeySpace,
    pub(super) settings: RedisSettings,
}

impl RedisStore {
    /// Connects (waiting for Redis at start) with the configured key prefix.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisError> {
        Ok(Self {
            client: connect_client(settings).await?,
            keys: settings.key_space(),
            settings: settings.clone(),
        })
    }

    /// A store whose connection opens in the background: returns at once,
    /// and fred keeps (re)connecting with the usual backoff. Commands sent
    /// before it is up wait up to `redis.command_timeout_ms`, then fail.
    /// For connections opened while serving (an HTTP worker starting or
    /// restarting), which must not wait for Redis.
    pub fn connect_in_background(settings: &RedisSettings) -> Result<Self, RedisError> {
        let mut builder = builder(settings, COMMAND_CLIENT_BUFFER)?;
        builder.with_config(|c| c.fail_fast = false);
        let client = builder.build().map_err(RedisError::on("connect"))?;
        // The task lives as long as the client.
        keep_connected(client.clone(), client.connect(), |_| {});
        Ok(Self {
            client,
            keys: settings.key_space(),
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

    /// Checks that this process uses the deployment's stream shard count.
    /// The first service to start records its `redis.stream_shards`
    /// (`<prefix>:stream-shards`, no expiry); one configured with another
    /// count is refused: it would append users' notifications to other
    /// shards than the rest (breaking their order), or publish and
    /// subscribe on other channels (frames never delivered live).
    pub async fn agree_on_stream_shards(&self) -> Result<(), ShardCountError> {
        let recorded: Option<String> = self
            .client
            .set(
                self.keys.stream_shards_record(),
                self.keys.shards().count().to_string(),
                None,
                Some(SetOptions::NX),
                true,
            )
            .await
            .map_err(RedisError::on("SET NX GET"))?;
        self.same_shard_count(recorded)
    }

    /// For tools that append (`stream-worker dlq replay`): refused like
    /// [`RedisStore::agree_on_stream_shards`] when the deployment records
    /// another count, but records nothing: a one-off command never sets
    /// the deployment's count.
    pub async fn check_stream_shards(&self) -> Result<(), ShardCountError> {
        let recorded: Option<String> = self
            .client
            .get(self.keys.stream_shards_record())
            .await
            .map_err(RedisError::on("GET"))?;
        self.same_shard_count(recorded)
    }

    fn same_shard_count(&self, recorded: Option<String>) -> Result<(), ShardCountError> {
        let configured = self.keys.shards().count();
        match recorded {
            Some(recorded) if recorded != configured.to_string() => {
                Err(ShardCountError::Mismatch {
                    configured,
                    recorded,
                    key: self.keys.stream_shards_record(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Why [`RedisStore::agree_on_stream_shards`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ShardCountError {
    #[error(
        "redis.stream_shards is {configured}, but this deployment's services use {recorded} \
         (recorded in Redis as {key}): every service must use the same count; to change it, \
         stop every service, delete {key}, then start them all with the new count \
         (docs/operations.md, \"Changing the shard count\")"
    )]
    Mismatch {
        configured: usize,
        recorded: String,
        key: String,
    },
    #[error(transparent)]
    Redis(#[from] RedisError),
}
