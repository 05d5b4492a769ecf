//! The walking skeleton end to end: `stream-worker migrate`, `ingest-api
//! keys create`, the three services on free ports, a real WebSocket client,
//! PostgreSQL checked directly.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::processes::run_binary;
use testkit::ws::WsClient;

use crate::support::{start, stdout_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_travels_from_producer_to_the_users_websocket() {
    let env = TestEnv::without_schema().await;
    let vars = env.vars().clone();

    // Migrations through the CLI: two processes at once, then once more (a no-op).
    let racing: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(testkit::processes::binary("stream-worker"))
                .arg("migrate")
                .envs(&vars)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in racing {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run_binary("stream-worker", &vars, &["migrate"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("up to date"));
    let key = stdout_line(
        &run_binary("ingest-api", &vars, &["keys", "create", "--name", "e2e"]),
        "keys create",
    );
    assert!(key.starts_with("hrld_"), "key: {key}");
    // Set-up scripts run on every start: `--if-absent` leaves the key be.
    let again = run_binary(
        "ingest-api",
        &vars,
        &["keys", "create", "--name", "e2e", "--if-absent"],
    );
    assert!(again.status.success());
    assert!(again.stdout.is_empty(), "no second key printed");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let taken = run_binary("ingest-api", &vars, &["keys", "create", "--name", "e2e"]);
    assert!(
        !taken.status.success(),
        "without --if-absent a taken name fails"
    );

    let logs = std::env::temp_dir().join(format!("herald-e2e-{}", env.prefix));
    std::fs::create_dir_all(&logs).unwrap();
    let ingest = start("ingest-api", &vars, &logs).await;
    let worker = start("stream-worker", &vars, &logs).await;
    let gateway = start("ws-gateway", &vars, &logs).await;

    let alice_token = stdout_line(
        &run_binary("ws-gateway", &vars, &["token", "--user", "alice"]),
        "token",
    );
    let (mut alice, hello) = WsClient::connect_user(gateway.port, &alice_token).await;
    assert_eq!(
        hello,
        json!({"type": "hello", "user_id": "alice", "unread": 0, "last_seq": 0, "version": 0,
            "counts": {"unread": 0, "unseen": 0, "by_category": {}}, "trimmed_through": 0, "epoch": 0})
    );
    let (mut bob, _) = WsClient::connect_user(gateway.port, &env.token("bob", 300)).await;

    let http = reqwest::Client::new();
    let notifications_url = format!("http://127.0.0.1:{}/v1/notifications", ingest.port);
    let body = json!({"user_id": "alice", "title": "Order shipped", "body": "Your parcel left the warehouse",
                      "priority": "high", "category": "orders", "data": {"order_id": 1234}});
    let mut latencies = Vec::new();
    let mut last_frame = Value::Null;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let sent_at = Instant::now();
        let response = http
            .post(&notifications_url)
            .header("x-api-key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: Value = response.json().await.unwrap();
        let frame = alice
            .next_json(Duration::from_secs(10))
            .await
            .expect("frame for alice");
        latencies.push(sent_at.elapsed());
        assert_eq!(frame["id"], accepted["id"]);
        ids.push(accepted["id"].as_str().unwrap().to_owned());
        last_frame = frame;
    }
    latencies.sort();
    eprintln!(
        "POST -> frame latency over {} notifications: min {:?}, median {:?}, max {:?}",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // The frame carries every field the producer sent, plus id, seq and created_at.
    assert_eq!(last_frame["type"], "notification");
    assert_eq!(last_frame["user_id"], "alice");
    assert_eq!(last_frame["seq"], 20);
    assert_eq!(last_frame["title"], "Order shipped");
    assert_eq!(last_frame["body"], "Your parcel left the warehouse");
    assert_eq!(last_frame["priority"], "high");
    assert_eq!(last_frame["category"], "orders");
    assert_eq!(last_frame["data"], json!({"order_id": 1234}));
    assert!(last_frame["created_at"].as_str().unwrap().ends_with('Z'));

    // Every id answered 202 is a row in PostgreSQL, in order, once.
    let mut conn = env.db().await;
    let stored: Vec<String> = platform::storage::inspect::list_for_user(&mut conn, "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id.to_string())
        .collect();
    assert_eq!(stored, ids);

    // The producer sees where one went: written to alice's one socket; a
    // second one resuming from the start gets it again from storage.
    let status_url = format!("{notifications_url}/{}", ids[0]);
    let written = async |n: u64| {
        testkit::eventually(
            "the sockets written counted",
            Duration::from_secs(5),
            || async {
                let status: Value = http
                    .get(&status_url)
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(status["status"], "stored", "{status}");
                (status["sockets_written"] == n).then_some(())
            },
        )
        .await;
    };
    written(1).await;
    let mut tablet = WsClient::connect(gateway.port, "/v1/ws?since=0", Some(&alice_token))
        .await
        .unwrap_or_else(|refused| panic!("refused: {refused:?}"));
    for _ in 0..=ids.len() {
        tablet
            .next_json(Duration::from_secs(5))
            .await
            .expect("hello, then the backlog");
    }
    written(2).await;
    drop(tablet);

    // Bob, connected all along, received nothing of alice's.
    assert_eq!(bob.next_json(Duration::from_millis(500)).await, None);

    // Revoking the key through the CLI shuts the producer out at once.
    let output = run_binary("ingest-api", &vars, &["keys", "revoke", "e2e"]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "revoke prints nothing on stdout");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("1 ingest-api process(es) told"),
        "the running ingest-api was told: {said}"
    );
    // The key was cached by the requests above; the announcement evicts it.
    // The running process applies it a moment after the CLI returns, so a
    // request may still be accepted meanwhile; it is then a notification
    // like the others (counted below), and refusal follows within 1 s.
    let accepted_meanwhile = std::sync::atomic::AtomicI64::new(0);
    testkit::eventually(
        "the revoked key is refused",
        Duration::from_secs(1),
        || async {
            let response = http
                .post(&notifications_url)
                .header("x-api-key", &key)
                .json(&body)
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::ACCEPTED {
                accepted_meanwhile.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (response.status() == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    let total = 20 + accepted_meanwhile.into_inner();
    testkit::eventually(
        "every accepted notification stored",
        Duration::from_secs(10),
        || async {
            let stored = platform::storage::inspect::count_for_user(&mut env.db().await, "alice")
                .await
                .unwrap();
            (stored == total).then_some(())
        },
    )
    .await;

    // A reconnecting client sees the stored state in hello.
    let (_again, hello) = WsClient::connect_user(gateway.port, &alice_token).await;
    assert_eq!(hello["unread"], total);
    assert_eq!(hello["last_seq"], total);

    // Logs: one JSON object per line, at debug level, and no secret anywhere.
    drop((ingest, worker, gateway));
    for service in ["ingest-api", "stream-worker", "ws-gateway"] {
        let log = std::fs::read_to_string(logs.join(format!("{service}-e2e.log"))).unwrap();
        assert!(log.lines().count() > 1, "{service} logged: {log}");
        for line in log.lines() {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("{service}: not a JSON log line: {line}"));
            assert!(
                event["level"].is_string() && event["timestamp"].is_string(),
                "{line}"
            );
        }
        for secret in [key.as_str(), alice_token.as_str(), testkit::JWT_SECRET] {
            assert!(!log.contains(secret), "{service} logged a secret");
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_stops_a_service_naming_the_key() {
    let env = TestEnv::new().await;
    let mut vars = env.vars().clone();
    vars.insert("HERALD__HTTP__PORT".into(), "not-a-port".into());
    let output = run_binary("ingest-api", &vars, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("http.port"));

    let mut vars = env.vars().clone();
    vars.insert("HERALD__AUTH__JWT_SECRET".into(), "short".into());
    let output = run_binary("ws-gateway", &vars, &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HERALD__AUTH__JWT_SECRET"));
}
