//! Typed settings, read once at start: the embedded `config/default.toml`,
//! then the file named by `HERALD_CONFIG` (optional), then environment
//! variables `HERALD__SECTION__KEY`. A bad value stops the service with a
//! message naming the key.

use std::collections::HashMap;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// The `redis.url` schemes Herald accepts (fred's): one server, a
/// cluster, or a server found through Sentinel; with `s`, over TLS.
const REDIS_SCHEMES: [&str; 6] = [
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
];

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub worker: WorkerSettings,
    pub retention: RetentionSettings,
    pub ingest: IngestSettings,
    pub templates: TemplateSettings,
    pub gateway: GatewaySettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`; may hold a password.
    pub url: SecretString,
    /// A direct URL (not through a pooler) for migrations; empty: `url`.
    pub migration_url: SecretString,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    pub acquire_timeout_ms: u64,
    /// `random_page_cost` for Herald's sessions; 0 keeps the server's.
    pub random_page_cost: f64,
    /// CA bundle (PEM) for `sslmode=verify-ca`/`verify-full`; empty: the system's roots.
    pub ca_file: String,
    /// Client certificate and key (PEM) for servers that ask for one.
    pub client_cert_file: String,
    pub client_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`, `rediss://` (TLS),
    /// `redis-cluster://host:port?node=host:port&...` (`rediss-cluster://`),
    /// `redis-sentinel://host:port?sentinelServiceName=name&node=...`
    /// (`rediss-sentinel://`); may hold a password.
    pub url: SecretString,
    /// Prepended to every key and channel, so deployments (and tests) can share a server.
    pub key_prefix: String,
    pub command_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// CA bundle (PEM) trusted for `rediss://`; empty: the system's roots.
    pub ca_file: String,
    /// Client certificate and key (PEM) for servers that ask for one.
    pub client_cert_file: String,
    pub client_key_file: String,
    /// Partitions of the notification streams: a user's notifications go
    /// to shard `hash(user_id) mod stream_shards`, each shard in its own
    /// hash slot. 1 keeps the single-stream key layout.
    pub stream_shards: u16,
    /// Replicas that must confirm an append (`WAIT`) before ingest answers
    /// 202; 0: answer once the master has it.
    pub min_replicas_acks: u32,
    /// How long ingest waits for those replicas before answering 503.
    pub wait_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Internal port for `/metrics` and `/v1/admin/*`; 0: served on `port`.
    pub admin_port: u16,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest batch request body (`POST /v1/notifications/batch`), in bytes.
    pub max_batch_body_bytes: usize,
    /// Seconds that a 503 asks clients to wait before retrying.
    pub retry_after_secs: u32,
    pub workers: usize,
    /// Proxies in front that append to `X-Forwarded-For` (an Ingress: 1);
    /// 0: the client is the TCP peer.
    pub trusted_proxy_hops: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret that signs user JWTs; required by ws-gateway.
    pub jwt_secret: SecretString,
    /// Clock skew tolerated when checking `exp` / `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// PEM public key of the identity provider (RSA: RS256, EC: ES256, Ed25519: EdDSA).
    pub jwt_public_key_file: String,
    /// A JWKS document on disk (each key pinned to its `alg`).
    pub jwt_jwks_file: String,
    /// The identity provider's JWKS, fetched at start and refreshed.
    pub jwt_jwks_url: String,
    /// Refresh interval of the JWKS when its answer sets no max-age.
    pub jwt_jwks_refresh_secs: u64,
    /// Least time between two fetches of the JWKS (an unknown `kid` refetches).
    pub jwt_jwks_min_refresh_secs: u64,
    /// Extra CA certificates (PEM) trusted for the JWKS URL.
    pub jwt_jwks_ca_file: String,
    /// Required `iss` when non-empty.
    pub jwt_issuer: String,
    /// Required in `aud` when non-empty.
    pub jwt_audience: String,
    /// Longest `exp - iat` accepted (from now without `iat`); 0: no limit.
    pub jwt_max_lifetime_secs: u64,
    /// The claim holding the user id.
    pub jwt_user_claim: String,
    /// How long ingest-api trusts a verified API key without asking PostgreSQL.
    pub api_key_cache_secs: u64,
    /// How long ingest-api remembers a well-formed key PostgreSQL does not know.
    pub unknown_api_key_cache_secs: u64,
    /// Failed authentications one client address may make at once, and per
    /// minute after that; beyond, it gets 429 without being checked.
    /// A rate of 0: no limit.
    pub failures_per_address_burst: u32,
    pub failures_per_address_per_min: f64,
    /// ws-gateway reloads the revoked user tokens this often (a revocation
    /// reaches it at once over Redis; this bounds a missed announcement).
    pub revoked_tokens_reload_secs: u64,
}

impl AuthSettings {
    pub fn failures_per_address(&self) -> crate::rate::Rate {
        crate::rate::Rate {
            per_sec: self.failures_per_address_per_min / 60.0,
            burst: self.failures_per_address_burst,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Consumer name in the group; empty means the host name (the pod name on Kubernetes).
    pub consumer_name: String,
    pub batch_size: usize,
    /// Consumers (rounds in flight) per process.
    pub concurrency: usize,
    /// An extra consumer per process reading only the `high` lane.
    pub high_express: bool,
    pub block_ms: u64,
    /// Share of each round reserved for `normal` and `low` when they have entries.
    pub normal_share: f64,
    pub low_share: f64,
    /// Entries another consumer has held unacknowledged this long are claimed.
    pub claim_min_idle_ms: u64,
    pub claim_interval_ms: u64,
    /// An entry delivered more often than this goes to the dead letters.
    pub max_deliveries: u64,
    /// Acknowledged entries are trimmed when a stream is longer than this.
    pub trim_target_len: u64,
    pub trim_interval_ms: u64,
    /// Consumers idle this long with nothing pending are deleted from the
    /// group (dead pods' names); 0 never deletes them.
    pub prune_idle_consumers_secs: u64,
    /// How often the worker looks for snoozed notifications whose time
    /// came and delivered ones whose `expires_at` passed.
    pub timers_interval_ms: u64,
    /// After SIGTERM, the batch in hand may take this long before the process exits anyway.
    pub shutdown_timeout_ms: u64,
}

impl DatabaseSettings {
    /// Where migrations run: `migration_url`, else `url`.
    pub fn migration_url(&self) -> &SecretString {
        if self.migration_url.expose_secret().is_empty() {
            &self.url
        } else {
            &self.migration_url
        }
    }

    /// These settings with migrations' URL as the pool's.
    pub fn for_migrations(&self) -> Self {
        Self {
            url: self.migration_url().clone(),
            ..self.clone()
        }
    }
}

/// How long notifications are kept (stream-workers delete older ones).
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// Notifications stored longer ago than this many days are deleted;
    /// 0 keeps them forever.
    pub days: u32,
    /// How often a worker looks for notifications past the retention period.
    pub interval_ms: u64,
}

impl RetentionSettings {
    /// How long notifications are kept (`None`: forever).
    pub fn period(&self) -> Option<chrono::Duration> {
        (self.days > 0).then(|| chrono::Duration::days(i64::from(self.days)))
    }
}

impl WorkerSettings {
    pub fn min_count(&self, share: f64) -> usize {
        ((self.batch_size as f64) * share).ceil() as usize
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateSettings {
    /// Locale used when neither the request nor the user names one the template has.
    pub default_locale: String,
    /// Folder of templates loaded by ingest-api at start (`<dir>/<key>/<locale>.ftl`
    /// plus `<dir>/<key>/params.json`); empty: none.
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// How long an `Idempotency-Key` remembers its first answer.
    pub idempotency_ttl_secs: u64,
    /// Each API key's rate in notifications per second (a batch counts its
    /// items), shared by every replica; a key's own `--rate` overrides it.
    /// 0: no limit.
    pub key_rate_per_sec: f64,
    /// ...and how many it may send at once.
    pub key_burst: u32,
    /// How long a template key found missing is answered missing without
    /// a query (uploading it on this process forgets it at once).
    pub unknown_template_cache_secs: u64,
}

impl IngestSettings {
    /// The rate of keys that have none of their own.
    pub fn default_key_rate(&self) -> crate::rate::Rate {
        crate::rate::Rate {
            per_sec: self.key_rate_per_sec,
            burst: self.key_burst,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    pub ping_interval_secs: u64,
    pub client_timeout_secs: u64,
    /// Outgoing frames buffered per connection before it counts as too slow.
    pub send_queue_frames: usize,
    pub max_frame_bytes: usize,
    /// Published messages the process's Redis subscriber may hold before the
    /// hub reads them; with the largest frames this bounds the gateway's
    /// memory in a burst (messages x frame size).
    pub subscriber_buffer_messages: usize,
    /// Browser origins (`https://app.example.com`) that may use the inbox
    /// REST API (CORS) and open the WebSocket; `*` allows any. Requests
    /// without an `Origin` header (non-browser clients) are not affected.
    /// From the environment: a comma-separated list.
    pub allowed_origins: Vec<String>,
    /// Most WebSocket connections one gateway holds; new ones beyond get
    /// 503 with `Retry-After` (0: no limit).
    pub max_connections: usize,
    /// Most WebSocket connections one user holds on one gateway; beyond it
    /// 429 (0: no limit).
    pub max_connections_per_user: usize,
    /// ...and one client address (0: no limit).
    pub max_connections_per_address: usize,
    /// WebSocket handshakes one client address may start at once, and per
    /// second after that (a rate of 0: no limit).
    pub handshakes_per_address_burst: u32,
    pub handshakes_per_address_per_sec: f64,
    /// Inbox and preferences writes (REST) one user may make at once, and
    /// per second after that (a rate of 0: no limit).
    pub rest_writes_per_user_burst: u32,
    pub rest_writes_per_user_per_sec: f64,
    /// How long after the minute a notification was created its count of
    /// sockets written is kept in Redis (for the producers' status
    /// endpoint); 0: not counted.
    pub sockets_written_ttl_secs: u64,
    /// `resume`, `read` and `read_all` frames one connection may send at
    /// once, and per second after that.
    pub client_requests_burst: u32,
    pub client_requests_per_sec: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `info,stream_worker=debug`; `RUST_LOG` wins.
    pub level: String,
}

/// An allowed origin is `*` or exactly what a browser sends in `Origin`:
/// `scheme://host[:port]`, no path, no trailing slash.
fn check_origin(origin: &str) -> Result<(), &'static str> {
    // An empty entry (an empty variable, a trailing comma) allows nothing.
    if origin.is_empty() || origin == "*" {
        return Ok(());
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err("must be * or scheme://host[:port]");
    };
    if !matches!(scheme, "http" | "https") {
        return Err("must start with http:// or https://");
    }
    if authority.is_empty() || authority.contains(['/', '?', '#', ' ', '*']) {
        return Err("must be scheme://host[:port], without path or trailing slash");
    }
    // Compared byte for byte with what browsers send: lowercase, and
    // without the scheme's default port.
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase, as browsers send it");
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    if authority.ends_with(default_port) {
        return Err("must leave out the scheme's default port, as browsers do");
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Reads defaults, the optional `HERALD_CONFIG` file and `HERALD__*` variables.
    pub fn load() -> Result<Self, SettingsError> {
        let overlay = std::env::var("HERALD_CONFIG")
            .ok()
            .filter(|p| !p.is_empty());
        Self::load_from(overlay.as_deref(), Environment::with_prefix("HERALD"))
    }

    /// Like [`Settings::load`], but reads `HERALD__*` variables from `vars`
    /// instead of the process environment (tests, tools).
    pub fn load_with_vars(vars: HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::load_from(None, Environment::with_prefix("HERALD").source(Some(vars)))
    }

    fn load_from(overlay: Option<&str>, env: Environment) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = overlay {
            builder = builder.add_source(File::with_name(path).required(true));
        }
        let env = env
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("gateway.allowed_origins");
        let settings: Settings = builder
            .add_source(env)
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|err| SettingsError(err.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that hold for every service.
    fn validate(&self) -> Result<(), SettingsError> {
        let fail = |key: &str, why: &str| Err(SettingsError(format!("{key}: {why}")));
        let url = self.database.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return fail(
                "database.url",
                "must start with postgres:// or postgresql://",
            );
        }
        let migration_url = self.database.migration_url.expose_secret();
        if !(migration_url.is_empty()
            || migration_url.starts_with("postgres://")
            || migration_url.starts_with("postgresql://"))
        {
            return fail(
                "database.migration_url",
                "must be empty or start with postgres:// or postgresql://",
            );
        }
        let auth = &self.auth;
        if auth.jwt_user_claim.is_empty() {
            return fail("auth.jwt_user_claim", "must name a claim (e.g. sub)");
        }
        if auth.jwt_jwks_min_refresh_secs == 0 {
            return fail("auth.jwt_jwks_min_refresh_secs", "must be at least 1");
        }
        if !(auth.jwt_jwks_url.is_empty()
            || auth.jwt_jwks_url.starts_with("https://")
            || auth.jwt_jwks_url.starts_with("http://"))
        {
            return fail("auth.jwt_jwks_url", "must be an http:// or https:// URL");
        }
        if self.database.pool_size == 0 {
            return fail("database.pool_size", "must be at least 1");
        }
        if !(self.database.random_page_cost.is_finite() && self.database.random_page_cost >= 0.0) {
            return fail(
                "database.random_page_cost",
                "must be 0 (the server's setting) or more",
            );
        }
        let redis_url = self.redis.url.expose_secret();
        if !REDIS_SCHEMES
            .iter()
            .any(|scheme| redis_url.starts_with(&format!("{scheme}://")))
        {
            return fail(
                "redis.url",
                &format!(
                    "must start with one of {}",
                    REDIS_SCHEMES.map(|s| format!("{s}://")).join(", ")
                ),
            );
        }
        if !(1..=1024).contains(&self.redis.stream_shards) {
            return fail("redis.stream_shards", "must be 1..=1024");
        }
        if self.redis.min_replicas_acks > 0 && self.redis.wait_timeout_ms == 0 {
            return fail(
                "redis.wait_timeout_ms",
                "must be at least 1 when redis.min_replicas_acks is set (0 would wait forever)",
            );
        }
        if self.redis.min_replicas_acks > 0
            && self.redis.wait_timeout_ms >= self.redis.command_timeout_ms
        {
            return fail(
                "redis.wait_timeout_ms",
                "must be below redis.command_timeout_ms (WAIT is a command and would time out first)",
            );
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}', ' ']) {
            return fail(
                "redis.key_prefix",
                "must be non-empty, without braces or spaces",
            );
        }
        if self.worker.batch_size == 0 || self.worker.batch_size > 5_000 {
            return fail("worker.batch_size", "must be 1..=5000");
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 64 {
            return fail("worker.concurrency", "must be 1..=64");
        }
        for (key, share) in [
            ("worker.normal_share", self.worker.normal_share),
            ("worker.low_share", self.worker.low_share),
        ] {
            if !(0.0..=0.5).contains(&share) {
                return fail(key, "must be between 0.0 and 0.5");
            }
        }
        if self.retention.days > 36_500 {
            return fail("retention.days", "must be 0 (keep forever) to 36500");
        }
        if !(1..=86_400_000).contains(&self.retention.interval_ms) {
            return fail("retention.interval_ms", "must be 1 to 86400000 (a day)");
        }
        if self.gateway.sockets_written_ttl_secs > 2_592_000 {
            return fail(
                "gateway.sockets_written_ttl_secs",
                "must be 0 (not counted) to 2592000 (30 days)",
            );
        }
        if self.worker.max_deliveries == 0 {
            return fail("worker.max_deliveries", "must be at least 1");
        }
        // A blocking read must end before the shutdown deadline, or a
        // consumer could leave the group while its read still waits.
        if self.worker.block_ms >= self.worker.shutdown_timeout_ms {
            return fail(
                "worker.block_ms",
                "must be less than worker.shutdown_timeout_ms",
            );
        }
        if self.ingest.idempotency_ttl_secs < 86_400 {
            return fail(
                "ingest.idempotency_ttl_secs",
                "must be at least 86400 (24 hours)",
            );
        }
        if self.auth.revoked_tokens_reload_secs == 0 {
            return fail("auth.revoked_tokens_reload_secs", "must be at least 1");
        }
        if self.ingest.key_burst == 0
            || !(self.ingest.key_rate_per_sec.is_finite() && self.ingest.key_rate_per_sec >= 0.0)
        {
            return fail(
                "ingest.key_rate_per_sec",
                "must be 0 (no limit) or more, and ingest.key_burst at least 1",
            );
        }
        if templates::parse_locale(&self.templates.default_locale).is_err() {
            return fail("templates.default_locale", "must be a BCP 47 language tag");
        }
        if self.gateway.client_requests_burst == 0
            || !(self.gateway.client_requests_per_sec.is_finite()
                && self.gateway.client_requests_per_sec > 0.0)
        {
            return fail(
                "gateway.client_requests_burst",
                "the burst must be at least 1 and gateway.client_requests_per_sec above 0",
            );
        }
        for (name, burst, per_sec) in [
            (
                "auth.failures_per_address_per_min",
                self.auth.failures_per_address_burst,
                self.auth.failures_per_address_per_min,
            ),
            (
                "gateway.handshakes_per_address_per_sec",
                self.gateway.handshakes_per_address_burst,
                self.gateway.handshakes_per_address_per_sec,
            ),
            (
                "gateway.rest_writes_per_user_per_sec",
                self.gateway.rest_writes_per_user_burst,
                self.gateway.rest_writes_per_user_per_sec,
            ),
        ] {
            if burst == 0 || !(per_sec.is_finite() && per_sec >= 0.0) {
                return fail(
                    name,
                    "must be 0 (no limit) or more, and its burst at least 1",
                );
            }
        }
        if self.gateway.send_queue_frames == 0 {
            return fail("gateway.send_queue_frames", "must be at least 1");
        }
        if self.gateway.subscriber_buffer_messages == 0 {
            return fail("gateway.subscriber_buffer_messages", "must be at least 1");
        }
        if self.gateway.ping_interval_secs == 0
            || self.gateway.client_timeout_secs <= self.gateway.ping_interval_secs
        {
            return fail(
                "gateway.client_timeout_secs",
                "must be greater than gateway.ping_interval_secs (> 0)",
            );
        }
        for origin in &self.gateway.allowed_origins {
            if let Err(why) = check_origin(origin) {
                return fail("gateway.allowed_origins", &format!("{origin:?} {why}"));
            }
        }
        Ok(())
    }

    /// Checks for services that verify user tokens: at least one key
    /// source, and a secret (if any) long enough for HS256.
    pub fn require_token_keys(&self) -> Result<(), SettingsError> {
        let auth = &self.auth;
        let asymmetric = [
            &auth.jwt_public_key_file,
            &auth.jwt_jwks_file,
            &auth.jwt_jwks_url,
        ]
        .iter()
        .any(|source| !source.is_empty());
        if asymmetric && auth.jwt_secret.expose_secret().is_empty() {
            return Ok(());
        }
        self.require_jwt_secret().map_err(|_| {
            SettingsError(
                "auth: ws-gateway needs keys to verify tokens: auth.jwt_jwks_url, \
                 auth.jwt_jwks_file or auth.jwt_public_key_file (identity providers), \
                 or auth.jwt_secret (HERALD__AUTH__JWT_SECRET, HS256, at least 32 bytes)"
                    .into(),
            )
        })
    }

    /// Checks for signing development tokens (`ws-gateway token`).
    pub fn require_jwt_secret(&self) -> Result<(), SettingsError> {
        if self.auth.jwt_secret.expose_secret().len() < 32 {
            return Err(SettingsError(
                "auth.jwt_secret (HERALD__AUTH__JWT_SECRET): must be set, at least 32 bytes".into(),
            ));
        }
        Ok(())
    }

    /// The configured consumer name, else the host name.
    pub fn consumer_name(&self) -> String {
        if self.worker.consumer_name.is_empty() {
            gethostname::gethostname().to_string_lossy().into_owned()
        } else {
            self.worker.consumer_name.clone()
        }
    }
}

impl RedisSettings {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// The key names of this deployment: its prefix and shard count.
    pub fn key_space(&self) -> domain::KeySpace {
        domain::KeySpace::sharded(self.key_prefix.clone(), self.stream_shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load_with_vars(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.http.port, 8080);
        assert_eq!(settings.log.format, LogFormat::Text);
        assert!(settings.require_jwt_secret().is_err());
    }

    #[test]
    fn environment_overrides_with_double_underscore() {
        let settings = load(&[
            ("HERALD__HTTP__PORT", "9999"),
            ("HERALD__DATABASE__URL", "postgres://x@h:1/db"),
            ("HERALD__WORKER__CONSUMER_NAME", "pod-7"),
            (
                "HERALD__AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("HERALD__LOG__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(settings.http.port, 9999);
        assert_eq!(settings.database.url.expose_secret(), "postgres://x@h:1/db");
        assert_eq!(settings.consumer_name(), "pod-7");
        assert_eq!(settings.log.format, LogFormat::Json);
        assert!(settings.require_jwt_secret().is_ok());
    }

    #[test]
    fn cluster_and_sentinel_urls_are_accepted() {
        for url in [
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
            "rediss-cluster://user:pw@redis.internal:7000",
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=herald",
            "rediss-sentinel://127.0.0.1:26379?sentinelServiceName=herald",
        ] {
            let settings = load(&[("HERALD__REDIS__URL", url)]).unwrap();
            assert_eq!(settings.redis.url.expose_secret(), url);
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = load(&[("HERALD__HTTP__PORT", "eighty")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.port"), "{err}");
        let err = load(&[("HERALD__REDIS__URL", "http://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.url"), "{err}");
        assert!(
            err.contains("redis-cluster://"),
            "names the accepted schemes: {err}"
        );
        let err = load(&[("HERALD__REDIS__STREAM_SHARDS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis.stream_shards"), "{err}");
        let err = load(&[("HERALD__WORKER__BATCH_SIZE", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.batch_size"), "{err}");
        let err = load(&[
            ("HERALD__WORKER__BLOCK_MS", "10000"),
            ("HERALD__WORKER__SHUTDOWN_TIMEOUT_MS", "5000"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("worker.block_ms"), "{err}");
        let err = load(&[("HERALD__DATABASE__RANDOM_PAGE_COST", "-1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.random_page_cost"), "{err}");
        let err = load(&[("HERALD__GATEWAY__SUBSCRIBER_BUFFER_MESSAGES", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway.subscriber_buffer_messages"), "{err}");
    }

    #[test]
    fn allowed_origins_are_a_comma_separated_list() {
        assert!(load(&[]).unwrap().gateway.allowed_origins.is_empty());
        let settings = load(&[(
            "HERALD__GATEWAY__ALLOWED_ORIGINS",
            "https://app.example.com,http://127.0.0.1:8084",
        )])
        .unwrap();
        assert_eq!(
            settings.gateway.allowed_origins,
            ["https://app.example.com", "http://127.0.0.1:8084"]
        );
        // Other string settings are not split at commas.
        let settings = load(&[("HERALD__LOG__LEVEL", "info,ws_gateway=debug")]).unwrap();
        assert_eq!(settings.log.level, "info,ws_gateway=debug");
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://App.example.com",
            "https://app.example.com:443",
        ] {
            let err = load(&[("HERALD__GATEWAY__ALLOWED_ORIGINS", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("gateway.allowed_origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn migrations_use_their_own_url_when_given() {
        let settings =
            load(&[("HERALD__DATABASE__URL", "postgres://app@pooler:6432/herald")]).unwrap();
        assert_eq!(
            settings.database.migration_url().expose_secret(),
            "postgres://app@pooler:6432/herald"
        );
        let settings = load(&[
            ("HERALD__DATABASE__URL", "postgres://app@pooler:6432/herald"),
            (
                "HERALD__DATABASE__MIGRATION_URL",
                "postgres://owner@pg:5432/herald",
            ),
        ])
        .unwrap();
        let direct = settings.database.for_migrations();
        assert_eq!(
            direct.url.expose_secret(),
            "postgres://owner@pg:5432/herald"
        );
        assert_eq!(direct.pool_size, settings.database.pool_size);
        let err = load(&[("HERALD__DATABASE__MIGRATION_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.migration_url"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = load(&[(
            "HERALD__AUTH__JWT_SECRET",
            "super-secret-value-that-is-long-enough",
        )])
        .unwrap();
        assert!(!format!("{settings:?}").contains("super-secret"));
    }
}
