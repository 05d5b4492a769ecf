//! Connections: authentication, hello, fan-out, frames, limits, closing.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::ws::{Ended, WsClient};
use testkit::{TestEnv, eventually, sign_claims};

use crate::support::{TestGateway, WAIT};

fn frame(user: &str, seq: i64) -> Value {
    json!({"type": "notification", "id": uuid::Uuid::now_v7(), "user_id": user, "seq": seq,
           "title": "t", "body": "b", "priority": "normal", "category": null, "data": null,
           "created_at": "2026-11-27T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_then_live_frames_to_every_connection_of_the_user_only() {
    let gw = TestGateway::spawn().await;
    let (mut alice_phone, hello) = gw.connect("alice").await;
    assert_eq!(
        hello,
        json!({"type": "hello", "user_id": "alice", "unread": 0, "last_seq": 0, "version": 0,
            "counts": {"unread": 0, "unseen": 0, "by_category": {}}, "trimmed_through": 0, "epoch": 0})
    );
    let (mut alice_laptop, _) = gw.connect("alice").await;
    let (mut bob, _) = gw.connect("bob").await;

    let sent = frame("alice", 1);
    gw.publish("alice", &sent).await;
    assert_eq!(alice_phone.next_json(WAIT).await.unwrap(), sent);
    assert_eq!(alice_laptop.next_json(WAIT).await.unwrap(), sent);

    // Bob gets his own frame, and nothing of alice's before it.
    let bobs = frame("bob", 1);
    gw.publish("bob", &bobs).await;
    assert_eq!(bob.next_json(WAIT).await.unwrap(), bobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_reports_stored_unread_state() {
    let gw = TestGateway::spawn().await;
    let mut conn = gw.env.db().await;
    let batch: Vec<_> = (0..3)
        .map(|i| testkit::new_notification("carol", i, domain::Priority::Normal))
        .collect();
    testkit::store_batch(&mut conn, &batch, chrono::Utc::now())
        .await
        .unwrap();
    let (_client, hello) = gw.connect("carol").await;
    assert_eq!(hello["unread"], 3);
    assert_eq!(hello["last_seq"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_follows_the_users_connections() {
    let gw = TestGateway::spawn().await;
    let (first, _) = gw.connect("dave").await;
    let (second, _) = gw.connect("dave").await;
    // One Redis subscription per user per gateway process, however many sockets.
    assert_eq!(gw.redis.user_subscribers("dave").await.unwrap(), 1);
    first.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gw.redis.user_subscribers("dave").await.unwrap(),
        1,
        "still one connection open"
    );
    second.close().await;
    eventually(
        "unsubscribed after the last connection closed",
        WAIT,
        || async { (gw.redis.user_subscribers("dave").await.unwrap() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_401_before_the_upgrade() {
    let gw = TestGateway::spawn().await;
    let now = jsonwebtoken::get_current_timestamp();
    let secret = testkit::JWT_SECRET;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        (
            "expired",
            Some(sign_claims(&json!({"sub": "u", "exp": now - 120}), secret)),
        ),
        (
            "not yet valid",
            Some(sign_claims(
                &json!({"sub": "u", "exp": now + 600, "nbf": now + 300}),
                secret,
            )),
        ),
        ("no exp", Some(sign_claims(&json!({"sub": "u"}), secret))),
        (
            "wrong signature",
            Some(sign_claims(
                &json!({"sub": "u", "exp": now + 600}),
                "another-secret-another-secret-xxxx",
            )),
        ),
        (
            "alg none",
            Some(unsigned_token(&json!({"sub": "u", "exp": now + 600}))),
        ),
        (
            "invalid user id",
            Some(sign_claims(
                &json!({"sub": "a b", "exp": now + 600}),
                secret,
            )),
        ),
    ];
    for (case, token) in cases {
        let refused = WsClient::connect(gw.port, "/v1/ws", token.as_deref())
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: connection must be refused"));
        assert_eq!(refused.status, 401, "{case}");
        let body: Value = serde_json::from_str(&refused.body)
            .unwrap_or_else(|_| panic!("{case}: body {}", refused.body));
        assert_eq!(body["status"], 401, "{case}");
    }
    // A good token in the query string (browsers) is accepted.
    let token = gw.env.token("erin", 60);
    let mut client = WsClient::connect(gw.port, &format!("/v1/ws?token={token}"), None)
        .await
        .unwrap();
    assert_eq!(client.next_json(WAIT).await.unwrap()["type"], "hello");
}

/// A JWT with `"alg": "none"` and no signature.
fn unsigned_token(claims: &Value) -> String {
    use base64_url as b64;
    format!(
        "{}.{}.",
        b64::encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64::encode(&claims.to_string())
    )
}

mod base64_url {
    /// Unpadded base64url, enough to forge a test token.
    pub fn encode(input: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = input.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_frames_ping_errors_and_abuse() {
    let gw = TestGateway::spawn().await;
    let (mut client, _) = gw.connect("frank").await;
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(
        client.next_json(WAIT).await.unwrap(),
        json!({"type": "pong"})
    );

    client.send_text("not json").await;
    let error = client.next_json(WAIT).await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_frame");

    client.send_text(r#"{"type":"launch_missiles"}"#).await;
    assert_eq!(client.next_json(WAIT).await.unwrap()["code"], "bad_frame");

    client.send_binary(vec![1, 2, 3]).await;
    assert_eq!(
        client.next_json(WAIT).await.unwrap()["code"],
        "unsupported_data"
    );

    // Still serving after bad input.
    let sent = frame("frank", 1);
    gw.publish("frank", &sent).await;
    assert_eq!(client.next_json(WAIT).await.unwrap(), sent);

    // Repeated abuse closes the socket with 1008.
    for _ in 0..12 {
        client.send_text("{").await;
    }
    assert_eq!(client.closed(WAIT).await, Ended::Closed(Some(1008)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_get_an_error_and_close_1009() {
    let gw = TestGateway::spawn().await;
    let (mut client, _) = gw.connect("gina").await;
    client
        .send_text(&format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(20_000)
        ))
        .await;
    let error = client.next_json(WAIT).await.unwrap();
    assert_eq!(error["code"], "frame_too_large");
    assert_eq!(client.closed(WAIT).await, Ended::Closed(Some(1009)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_token_closes_4001_and_shutdown_closes_1012() {
    let gw = TestGateway::spawn().await;
    let mut short = WsClient::connect_user(gw.port, &gw.env.token("hana", 1))
        .await
        .0;
    assert_eq!(short.closed(WAIT).await, Ended::Closed(Some(4001)));

    let (mut client, _) = gw.connect("ivan").await;
    gw.shutdown.cancel();
    assert_eq!(client.closed(WAIT).await, Ended::Closed(Some(1012)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_with_1008() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__SEND_QUEUE_FRAMES", "4");
    let gw = TestGateway::spawn_in(env).await;
    let (mut client, _) = gw.connect("jane").await;
    // Far more than the queue and the socket buffers hold, while the client reads nothing.
    let big = json!({"type": "notification", "pad": "x".repeat(60_000)}).to_string();
    let frames: Vec<(&str, String)> = (0..400).map(|_| ("jane", big.clone())).collect();
    gw.redis.publish_to_users(&frames).await.unwrap();
    // Still reading nothing until the gateway gave up on this client (the
    // burst arrives at once: reading right away could keep up with it).
    eventually(
        "the slow client kicked",
        Duration::from_secs(20),
        || async {
            testkit::scrape_metrics(gw.port)
                .await
                .contains("herald_gateway_send_queue_drops_total 1\n")
                .then_some(())
        },
    )
    .await;
    // Reading now: whatever was buffered, then the close.
    let (read, ended) = client.drain_until_closed(Duration::from_secs(20)).await;
    assert!(
        read < frames.len(),
        "the gateway did not buffer everything: read {read}"
    );
    assert_eq!(
        ended,
        Ended::Closed(Some(1008)),
        "slow client cut off with 1008"
    );
    // Counted once (the hub kicks, the session only closes).
    let metrics = testkit::scrape_metrics(gw.port).await;
    assert!(
        metrics.contains("herald_gateway_send_queue_drops_total 1\n"),
        "{metrics}"
    );
    // The gateway is still serving others.
    let (_other, hello) = gw.connect("kate").await;
    assert_eq!(hello["type"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let gw = TestGateway::spawn().await;
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", gw.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    assert_eq!(body["checks"]["redis_subscriber"]["status"], "ok");
    let health = reqwest::get(format!("http://127.0.0.1:{}/healthz", gw.port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A plain HTTP GET on the WebSocket path, with a good token, is refused clearly.
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/ws", gw.port))
        .bearer_auth(gw.env.token("kim", 60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_full_gateway_answers_503_with_retry_after_until_a_connection_leaves() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__MAX_CONNECTIONS", "2");
    let gw = TestGateway::spawn_in(env).await;
    let (first, _) = gw.connect("ann").await;
    let (_second, _) = gw.connect("ben").await;

    let token = gw.env.token("cat", 300);
    let authorization = format!("Bearer {token}");
    let refused =
        WsClient::connect_with_headers(gw.port, "/v1/ws", &[("authorization", &authorization)])
            .await
            .err()
            .expect("a third connection is refused");
    assert_eq!(refused.status, 503);
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(body["type"], "https://herald.dev/problems/unavailable");
    let retry_after = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/ws", gw.port))
        .header("authorization", &authorization)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(retry_after.status(), 503);
    assert!(retry_after.headers().contains_key("retry-after"));

    // One leaves: there is room again.
    first.close().await;
    eventually("room after a close", WAIT, || async {
        WsClient::connect_with_headers(gw.port, "/v1/ws", &[("authorization", &authorization)])
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_max_connections_per_user_sockets() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__MAX_CONNECTIONS_PER_USER", "2");
    let gw = TestGateway::spawn_in(env).await;
    let token = gw.env.token("jon", 300);
    let (first, _) = WsClient::connect_user(gw.port, &token).await;
    let (_second, _) = WsClient::connect_user(gw.port, &token).await;
    let refused = WsClient::connect(gw.port, "/v1/ws", Some(&token))
        .await
        .err()
        .expect("a third socket is refused");
    assert_eq!(refused.status, 429, "{}", refused.body);
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(
        body["type"],
        "https://herald.dev/problems/too-many-connections"
    );
    // Other users are not affected.
    let (_other, hello) = gw.connect("kim").await;
    assert_eq!(hello["type"], "hello");
    // Closing one makes room again.
    first.close().await;
    eventually("room for another socket", WAIT, || async {
        WsClient::connect(gw.port, "/v1/ws", Some(&token))
            .await
            .ok()
    })
    .await;
}
