//! TLS to PostgreSQL and Redis, against servers this test starts with
//! certificates it makes: a PostgreSQL that refuses plaintext (`hostnossl
//! reject`) and a redis-server whose only port is a `tls-port`. `sslmode`
//! decides what is checked, a wrong CA is refused, plaintext never
//! happens where TLS is asked for, and a notification goes end to end.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use platform::db::Connector;
use platform::redis::RedisStore;
use platform::settings::{DatabaseSettings, RedisSettings};
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestEnv;
use testkit::postgres::PostgresServer;
use testkit::processes::{RedisServer, run_binary};
use testkit::tls::Certificates;
use testkit::ws::WsClient;

use crate::support::{start, stdout_line};

#[derive(QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Connects once; Ok(whether the session is encrypted) or the error text.
async fn connect(url: &str, ca_file: &str) -> Result<bool, String> {
    let settings = DatabaseSettings {
        ca_file: ca_file.to_owned(),
        ..TestEnv::new().await.settings().database
    };
    let connector = Connector::new(url, &settings).map_err(|err| err.to_string())?;
    let mut conn = connector.connect().await.map_err(|err| err.to_string())?;
    let row: Encrypted =
        diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .map_err(|err| err.to_string())?;
    Ok(row.ssl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_follow_sslmode() {
    let certs = Certificates::generate();
    let pg = PostgresServer::start_tls_only(&certs).await;
    let (ca, other_ca) = (certs.ca(), certs.other_ca());
    // The certificate names 127.0.0.1 only: `localhost` is the wrong name.
    let localhost = |query: &str| pg.url(query).replace("127.0.0.1", "localhost");

    let disabled = connect(&pg.url("sslmode=disable"), "").await;
    assert!(disabled.is_err(), "plaintext is refused by the server");
    assert_eq!(connect(&pg.url(""), "").await, Ok(true), "prefer encrypts");
    assert_eq!(connect(&pg.url("sslmode=require"), "").await, Ok(true));
    assert_eq!(connect(&pg.url("sslmode=verify-full"), &ca).await, Ok(true));
    let wrong_ca = connect(&pg.url("sslmode=verify-full"), &other_ca).await;
    assert!(
        wrong_ca.is_err(),
        "verify-full with a wrong CA: {wrong_ca:?}"
    );
    let wrong_ca = connect(&pg.url("sslmode=verify-ca"), &other_ca).await;
    assert!(wrong_ca.is_err(), "verify-ca with a wrong CA: {wrong_ca:?}");
    let wrong_name = connect(&localhost("sslmode=verify-full"), &ca).await;
    assert!(
        wrong_name.is_err(),
        "verify-full checks the name: {wrong_name:?}"
    );
    assert_eq!(
        connect(&localhost("sslmode=verify-ca"), &ca).await,
        Ok(true),
        "verify-ca checks the chain only"
    );
    // The CA may also come from the URL, as libpq's sslrootcert.
    assert_eq!(
        connect(
            &pg.url(&format!("sslmode=verify-full&sslrootcert={ca}")),
            ""
        )
        .await,
        Ok(true)
    );
    let unknown = connect(&pg.url("sslmode=verify-please"), "").await;
    assert!(unknown.unwrap_err().contains("sslmode=verify-please"));
}

async fn redis_connects(url: &str, ca_file: &str) -> Result<(), String> {
    let settings = RedisSettings {
        url: url.to_owned().into(),
        ca_file: ca_file.to_owned(),
        ..TestEnv::new().await.settings().redis
    };
    // Connecting retries forever: a connection that never comes is refused.
    match tokio::time::timeout(Duration::from_secs(2), RedisStore::connect(&settings)).await {
        Ok(Ok(store)) => store.ping().await.map_err(|err| err.to_string()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no connection within 2 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_encrypts_and_verifies_or_never_connects() {
    let certs = Certificates::generate();
    let redis = RedisServer::start_tls(&certs).await;
    let url = redis.url();
    assert!(url.starts_with("rediss://"));

    assert_eq!(redis_connects(&url, &certs.ca()).await, Ok(()));
    let wrong_ca = redis_connects(&url, &certs.other_ca()).await;
    assert!(wrong_ca.is_err(), "a wrong CA is refused");
    // No CA file: the system's roots do not know the test CA.
    assert!(redis_connects(&url, "").await.is_err());
    // Plaintext to the TLS port never gets an answer.
    let plain = url.replace("rediss://", "redis://");
    assert!(redis_connects(&plain, "").await.is_err());
    // TLS files with a plaintext URL are a configuration error, not a silent downgrade.
    let mixed = redis_connects(&plain, &certs.ca()).await.unwrap_err();
    assert!(mixed.contains("not rediss://"), "{mixed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_travels_end_to_end_over_tls() {
    let certs = Certificates::generate();
    let pg = PostgresServer::start_tls_only(&certs).await;
    let redis = RedisServer::start_tls(&certs).await;
    let env = TestEnv::new().await;
    let mut vars = env.vars().clone();
    vars.insert(
        "HERALD__DATABASE__URL".into(),
        pg.url("sslmode=verify-full"),
    );
    vars.insert("HERALD__DATABASE__CA_FILE".into(), certs.ca());
    vars.insert("HERALD__REDIS__URL".into(), redis.url());
    vars.insert("HERALD__REDIS__CA_FILE".into(), certs.ca());
    vars.insert("RUST_LOG".into(), "info".into());

    let migrated = run_binary("stream-worker", &vars, &["migrate"]);
    assert!(
        migrated.status.success(),
        "migrate over TLS: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let key = stdout_line(
        &run_binary("ingest-api", &vars, &["keys", "create", "--name", "tls"]),
        "keys create",
    );
    let logs = std::env::temp_dir().join(format!("herald-e2e-{}", env.prefix));
    std::fs::create_dir_all(&logs).unwrap();
    let ingest = start("ingest-api", &vars, &logs).await;
    let _worker = start("stream-worker", &vars, &logs).await;
    let gateway = start("ws-gateway", &vars, &logs).await;

    let token = stdout_line(
        &run_binary("ws-gateway", &vars, &["token", "--user", "tess"]),
        "token",
    );
    let (mut tess, hello) = WsClient::connect_user(gateway.port, &token).await;
    assert_eq!(hello["type"], "hello");
    let accepted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/notifications", ingest.port))
        .header("x-api-key", &key)
        .json(&json!({"user_id": "tess", "title": "over TLS", "body": "both ways"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let frame = tess
        .next_json(Duration::from_secs(10))
        .await
        .expect("a frame");
    assert_eq!(frame["type"], "notification", "{frame}");
    assert_eq!(frame["title"], "over TLS");
    assert_eq!(frame["seq"], 1);
}
