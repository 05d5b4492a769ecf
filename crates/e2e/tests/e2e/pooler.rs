//! Herald behind PgBouncer in transaction mode (prepared statements pooled
//! with `max_prepared_statements`), with fewer server connections than the
//! services' pools hold, so statements and transactions of different
//! clients share them: every promise holds as with a direct connection.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::postgres::PgBouncer;
use testkit::ws::WsClient;

use crate::support::{BurstPlan, Progress, Stack, send_burst, start, stdout_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_keeps_its_promises_through_pgbouncer_in_transaction_mode() {
    let stack = Stack::new().await;
    // Two server connections for pools of 4 per process (three processes).
    let bouncer = PgBouncer::start(5432, 2).await;
    let mut vars = stack.vars();
    let direct = stack.env.database_url();
    let pooled = direct.replace(":5432/", &format!(":{}/", bouncer.port));
    assert_ne!(pooled, direct);
    vars.insert("HERALD__DATABASE__URL".into(), pooled);
    vars.insert("HERALD__DATABASE__MIGRATION_URL".into(), direct);

    // Migrations take the direct URL (a no-op here: the schema is there).
    let migrated = testkit::processes::run_binary("stream-worker", &vars, &["migrate"]);
    assert!(migrated.status.success());
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let _worker = start("stream-worker", &vars, &stack.logs).await;
    let gateway = start("ws-gateway", &vars, &stack.logs).await;

    let burst = send_burst(
        ingest.port,
        stack.key.clone(),
        BurstPlan {
            total: 2_000,
            concurrency: 16,
            timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(120),
        },
        Progress::default(),
    )
    .await;
    assert_eq!(burst.accepted.len(), 2_000, "{}", bouncer.log());
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;

    // The gateway's reads and writes through the pooler: the hello's count,
    // the inbox page, read-all.
    let user = "user-7";
    let token = stdout_line(
        &testkit::processes::run_binary("ws-gateway", &vars, &["token", "--user", user]),
        "token",
    );
    let (_client, hello) = WsClient::connect_user(gateway.port, &token).await;
    let rows = platform::storage::inspect::list_for_user(&mut stack.env.db().await, user)
        .await
        .unwrap()
        .len() as i64;
    assert!(rows > 0, "{user} was sent notifications");
    assert_eq!(hello["unread"], rows);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/v1/me", gateway.port);
    let page: serde_json::Value = http
        .get(format!("{base}/notifications?limit=5"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(5.min(rows as usize))
    );
    let read_all = http
        .post(format!("{base}/notifications/read-all"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read_all.status(), StatusCode::OK);
    let state = platform::storage::inbox::state(&mut stack.env.db().await, user)
        .await
        .unwrap();
    assert_eq!(state.counts.unread, 0);
}
