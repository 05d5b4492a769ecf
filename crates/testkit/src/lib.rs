//! Test support shared by every crate's integration tests: a fresh
//! PostgreSQL database per test (dropped afterwards), a unique Redis key
//! prefix per test, private Redis servers for tests that must kill one,
//! WebSocket clients, and waiting on conditions with a deadline instead of
//! sleeping.
//!
//! The shared servers come from `HERALD_TEST_PG` (server URL without a
//! database, default `postgres://postgres@127.0.0.1:5432`) and
//! `HERALD_TEST_REDIS` (default `redis://127.0.0.1:6379`). Set `TEST_LOG=1`
//! to see the services' logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod postgres;
pub mod processes;
pub mod proxy;
pub mod sentinel;
pub mod service;
pub mod tls;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::Settings;
use platform::db::{DbError, DbPool};
use platform::redis::RedisStore;
use platform::storage::notifications::{Prepared, StoredBatch, store_preparing};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub fn pg_server_url() -> String {
    std::env::var("HERALD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Installs a log subscriber for the test process when `TEST_LOG` is set.
pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                "info,platform=debug,stream_worker=debug,ws_gateway=debug,ingest_api=debug",
            )
            .with_test_writer()
            .try_init();
    }
}

/// One test's world: its own database and its own Redis key prefix, both
/// removed when it is dropped.
pub struct TestEnv {
    pub db_name: String,
    pub prefix: String,
    vars: HashMap<String, String>,
}

impl TestEnv {
    /// A fresh database with migrations applied. Needs a multi-thread runtime.
    pub async fn new() -> Self {
        let env = Self::without_schema().await;
        platform::db::run_migrations(&env.settings().database)
            .await
            .expect("migrations apply to a fresh database");
        env
    }

    /// A fresh, empty database (for tests of migrating itself).
    pub async fn without_schema() -> Self {
        init_test_log();
        platform::tls::install_crypto_provider();
        let id = Uuid::now_v7().simple().to_string();
        let db_name = format!("herald_test_{id}");
        let mut admin = admin_connection().await;
        diesel::sql_query(format!("CREATE DATABASE \"{db_name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let prefix = format!("test-{}", &id[id.len() - 12..]);
        let mut env = Self {
            db_name,
            prefix,
            vars: HashMap::new(),
        };
        env.set("HERALD__DATABASE__URL", env.database_url());
        env.set("HERALD__REDIS__URL", redis_url());
        env.set("HERALD__REDIS__KEY_PREFIX", env.prefix.clone());
        env.set("HERALD__HTTP__HOST", "127.0.0.1");
        env.set("HERALD__HTTP__PORT", "0");
        env.set("HERALD__HTTP__WORKERS", "1");
        env.set("HERALD__AUTH__JWT_SECRET", JWT_SECRET);
        env.set("HERALD__DATABASE__POOL_SIZE", "4");
        env.set("HERALD__WORKER__BLOCK_MS", "200");
        // Every producer request still takes from its key's rate in Redis,
        // but tests' bursts are never throttled; the rate limit's own
        // tests give their keys a small one.
        env.set("HERALD__INGEST__KEY_RATE_PER_SEC", "1000000");
        env.set("HERALD__INGEST__KEY_BURST", "1000000");
        env
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", pg_server_url(), self.db_name)
    }

    /// Overrides one setting, as `HERALD__SECTION__KEY`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.vars.insert(key.to_owned(), value.into());
    }

    /// Points this test's services at its database through `proxy` (so the
    /// test can cut PostgreSQL off), with short timeouts so an outage shows fast.
    pub fn database_through(&mut self, proxy: &proxy::Proxy) {
        let url = self
            .database_url()
            .replace(":5432/", &format!(":{}/", proxy.port));
        self.set("HERALD__DATABASE__URL", url);
        self.set("HERALD__DATABASE__CONNECT_TIMEOUT_MS", "1000");
        self.set("HERALD__DATABASE__ACQUIRE_TIMEOUT_MS", "1000");
    }

    /// The variables a service process of this test gets.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    pub fn settings(&self) -> Settings {
        Settings::load_with_vars(self.vars.clone()).expect("test settings are valid")
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database_url())
            .await
            .expect("connect to the test database")
    }

    /// A pool like the worker's and ingest-api's (each statement planned at
    /// every execution).
    pub fn pool(&self) -> DbPool {
        self.pool_planned(platform::db::Planning::EachExecution)
    }

    /// A pool whose connections plan their statements as `planning` says.
    pub fn pool_planned(&self, planning: platform::db::Planning) -> DbPool {
        platform::db::pool(&self.settings().database, planning).expect("pool")
    }

    pub async fn redis(&self) -> RedisStore {
        RedisStore::connect(&self.settings().redis)
            .await
            .expect("redis")
    }

    pub fn token(&self, user_id: &str, ttl_secs: u64) -> String {
        sign_token(user_id, ttl_secs)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let db_name = self.db_name.clone();
        // The shared server's keys; a test pointed at a private server
        // cleans nothing there.
        let mut vars = self.vars.clone();
        vars.insert("HERALD__REDIS__URL".into(), redis_url());
        // Drop runs outside any async context guarantee: use a private runtime on a thread.
        // (Redis keys deleted, database dropped)
        let cleaned = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return (false, false);
            };
            rt.block_on(async {
                let keys = tokio::time::timeout(Duration::from_secs(5), forget_keys(vars))
                    .await
                    .is_ok_and(|done| done.is_some());
                (keys, drop_database(&db_name).await.is_some())
            })
        })
        .join()
        .unwrap_or((false, false));
        if !cleaned.0 {
            eprintln!("warning: could not delete Redis keys {}:*", self.prefix);
        }
        if !cleaned.1 {
            eprintln!("warning: could not drop test database {}", self.db_name);
        }
    }
}

async fn drop_database(db_name: &str) -> Option<()> {
    let mut admin = AsyncPgConnection::establish(&format!("{}/postgres", pg_server_url()))
        .await
        .ok()?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
    ))
    .execute(&mut admin)
    .await
    .ok()?;
    Some(())
}

/// Deletes every key of a test's prefix on the shared Redis (streams,
/// idempotency records, consumer groups): without it each run of the suite
/// leaves a few thousand keys behind. Keys on a test's private Redis server
/// go with the server.
async fn forget_keys(vars: HashMap<String, String>) -> Option<()> {
    let settings = Settings::load_with_vars(vars).ok()?;
    let redis = RedisStore::connect(&settings.redis).await.ok()?;
    redis.delete_prefix().await.ok().map(drop)
}

async fn admin_connection() -> AsyncPgConnection {
    let url = format!("{}/postgres", pg_server_url());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|err| panic!("cannot reach PostgreSQL at {url}: {err}"))
}

/// Signs an HS256 token for `user_id` with the tests' secret.
pub fn sign_token(user_id: &str, ttl_secs: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({ "sub": user_id, "exp": now + ttl_secs, "iat": now });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign token")
}

/// Signs arbitrary claims with an arbitrary secret and algorithm header.
pub fn sign_claims(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

/// A TCP port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Prometheus text a service on this local port serves at `/metrics`.
pub async fn scrape_metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A valid notification as ingest-api would append it.
pub fn new_notification(
    user_id: &str,
    n: usize,
    priority: domain::Priority,
) -> domain::NewNotification {
    domain::NewNotification {
        id: Uuid::now_v7(),
        user_id: user_id.to_owned(),
        title: format!("title {n}"),
        body: format!("body {n}"),
        priority,
        category: Some("tests".into()),
        data: None,
        created_at: chrono::Utc::now(),
        expires_at: None,
        template: None,
        traceparent: None,
    }
}

/// Appends a notification the way ingest-api does (to its user's shard).
pub async fn append(redis: &RedisStore, notification: &domain::NewNotification) {
    let lane = redis
        .keys()
        .lane_of(&notification.user_id, notification.priority);
    redis
        .append(lane, &serde_json::to_string(notification).expect("encode"))
        .await
        .expect("append");
}

/// Appends many notifications, each to its user's shard, up to 1,000 per
/// command.
pub async fn append_all(redis: &RedisStore, notifications: &[domain::NewNotification]) {
    let mut by_shard: std::collections::BTreeMap<domain::Shard, Vec<(domain::Priority, String)>> =
        Default::default();
    for n in notifications {
        by_shard
            .entry(redis.keys().shard_of(&n.user_id))
            .or_default()
            .push((n.priority, serde_json::to_string(n).expect("encode")));
    }
    for (shard, entries) in by_shard {
        for chunk in entries.chunks(1_000) {
            redis.append_many(shard, chunk).await.expect("append");
        }
    }
}

/// A user's visible notifications in `seq` order, checked to be numbered
/// 1, 2, 3, ... with no gap (the promise of a user's sequence).
pub async fn gapless_history(
    conn: &mut AsyncPgConnection,
    user: &str,
) -> Vec<domain::Notification> {
    let rows = platform::storage::inspect::list_for_user(conn, user)
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|n| n.seq).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as i64).collect::<Vec<_>>(),
        "{user}: seq gapless from 1"
    );
    rows
}

/// Stores plain notifications, as the worker would store them unrendered
/// and unmuted, at `now`.
pub async fn store_batch(
    conn: &mut AsyncPgConnection,
    batch: &[domain::NewNotification],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredBatch, DbError> {
    let notifications: Vec<&domain::NewNotification> = batch.iter().collect();
    let (stored, _) = store_preparing(conn, &notifications, now, |i, _| {
        Ok(Prepared::from(batch[i].clone()))
    })
    .await?;
    Ok(stored)
}

/// Stores plain notifications at `now`, each muted when its user's
/// preferences (read by the storing transaction) mute its category, as
/// the worker decides.
pub async fn store_batch_muting(
    conn: &mut AsyncPgConnection,
    batch: &[domain::NewNotification],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredBatch, DbError> {
    let notifications: Vec<&domain::NewNotification> = batch.iter().collect();
    let (stored, _) = store_preparing(conn, &notifications, now, |i, preferences| {
        let notification = batch[i].clone();
        let muted = match (&notification.category, preferences) {
            (Some(category), Some(p)) => p.muted_categories.contains(category),
            _ => false,
        };
        Ok(Prepared {
            muted,
            ..Prepared::from(notification)
        })
    })
    .await?;
    Ok(stored)
}

/// Stores notifications prepared beforehand (rendered, muted as given).
pub async fn store_prepared(
    conn: &mut AsyncPgConnection,
    batch: &[Prepared],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StoredBatch, DbError> {
    let notifications: Vec<&domain::NewNotification> =
        batch.iter().map(|p| &p.notification).collect();
    let (stored, _) =
        store_preparing(conn, &notifications, now, |i, _| Ok(batch[i].clone())).await?;
    Ok(stored)
}

/// Makes the user's notifications with `seq` up to `through_seq` (and
/// every one without a `seq`) look created and stored `days` days ago, as
/// retention sees them: `stored_at`, `created_at`, and the time in their
/// UUIDv7 ids (the rest of each id kept). Under the user's inbox lock, as
/// every writer of their rows, so it never deadlocks with one.
pub async fn backdate(conn: &mut AsyncPgConnection, user: &str, through_seq: i64, days: i64) {
    use diesel::sql_types::{BigInt, Text};
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("SELECT 1 FROM user_inbox WHERE user_id = $1 FOR UPDATE")
            .bind::<Text, _>(user)
            .execute(conn)
            .await?;
        diesel::sql_query(
            "UPDATE notifications AS n SET stored_at = t.at, created_at = t.at, \
                 id = (lpad(to_hex((extract(epoch FROM t.at) * 1000)::bigint), 12, '0') \
                       || substr(replace(n.id::text, '-', ''), 13))::uuid \
             FROM (SELECT now() - make_interval(days => $3::int) AS at) AS t \
             WHERE n.user_id = $1 AND (n.seq <= $2 OR n.seq IS NULL)",
        )
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(through_seq)
        .bind::<BigInt, _>(days)
        .execute(conn)
        .await
    })
    .await
    .expect("backdate");
}

/// A service's `/openapi.json` (at `base`, `http://127.0.0.1:<port>`):
/// answered 200, OpenAPI 3.1, its parameters checked against its paths
/// ([`check_openapi_parameters`]). The document and each operation's
/// query parameters.
pub async fn openapi(
    base: &str,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, Vec<String>>,
) {
    let response = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let spec: serde_json::Value = response.json().await.expect("a JSON document");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        spec["openapi"]
    );
    let queries = check_openapi_parameters(&spec);
    (spec, queries)
}

/// Checks an OpenAPI document's parameters against its paths: every
/// `{name}` of a path is a required `path` parameter and every `path`
/// parameter is in the path; every other parameter is in `query` or
/// `header`. Returns the operations' query parameters by `METHOD path`.
pub fn check_openapi_parameters(
    spec: &serde_json::Value,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut queries = std::collections::BTreeMap::new();
    let paths = spec["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        let in_path: std::collections::BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in operations.as_object().expect("operations") {
            let where_ = format!("{} {path}", method.to_uppercase());
            let mut declared = std::collections::BTreeSet::new();
            let mut query = Vec::new();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("a parameter name");
                match parameter["in"].as_str() {
                    Some("path") => {
                        assert!(
                            in_path.contains(name),
                            "{where_}: path parameter {name} is not in the path"
                        );
                        assert_eq!(parameter["required"], true, "{where_}: {name}");
                        declared.insert(name);
                    }
                    Some("query") => query.push(name.to_owned()),
                    Some("header") => {}
                    other => panic!("{where_}: parameter {name} in {other:?}"),
                }
            }
            assert_eq!(
                declared, in_path,
                "{where_}: the path's parameters and the declared ones differ"
            );
            queries.insert(where_, query);
        }
    }
    queries
}

/// Sends a request whose body the server may refuse before reading it all
/// (413): the server answers and closes, and a client still writing can see
/// the connection reset instead of the answer. Tries again (a fresh
/// connection) up to three times; the answer is what the test checks.
pub async fn send_answered(request: reqwest::RequestBuilder) -> reqwest::Response {
    let mut last = None;
    for _ in 0..3 {
        let attempt = request
            .try_clone()
            .expect("a request with a cloneable body");
        match attempt.send().await {
            Ok(response) => return response,
            Err(err) => last = Some(err),
        }
    }
    panic!("no answer in three tries: {last:?}")
}
