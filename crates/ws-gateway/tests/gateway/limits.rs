//! Limits per client address and per user: handshakes, connections, failed
//! authentications (behind a trusted proxy, per forwarded address) and REST
//! writes, each a 429 problem before anything is done.

use reqwest::StatusCode;
use serde_json::Value;
use testkit::ws::{Refused, WsClient};
use testkit::{TestEnv, eventually};

use crate::support::{TestGateway, WAIT};

fn problem_type(refused: &Refused) -> String {
    let body: Value = serde_json::from_str(&refused.body).expect("problem+json");
    body["type"].as_str().unwrap_or_default().to_owned()
}

async fn refused(port: u16, headers: &[(&str, &str)]) -> Refused {
    WsClient::connect_with_headers(port, "/v1/ws", headers)
        .await
        .err()
        .expect("refused before the upgrade")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_its_handshake_rate_and_connection_cap() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_BURST", "4");
    env.set("HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_PER_SEC", "0.01");
    env.set("HERALD__GATEWAY__MAX_CONNECTIONS_PER_ADDRESS", "2");
    let gw = TestGateway::spawn_in(env).await;
    let (first, _) = gw.connect("ann").await;
    let (_second, _) = gw.connect("bob").await;

    // Third socket from the same address: over the cap (another user too).
    let token = gw.env.token("cid", 300);
    let bearer = format!("Bearer {token}");
    let full = refused(gw.port, &[("authorization", &bearer)]).await;
    assert_eq!(full.status, 429, "{}", full.body);
    assert_eq!(
        problem_type(&full),
        "https://herald.dev/problems/too-many-connections"
    );

    first.close().await;
    // Once the gateway let the first go (metrics cost no handshake), there
    // is room again, and the fourth handshake of the burst takes it.
    let metrics = format!("http://127.0.0.1:{}/metrics", gw.port);
    eventually("the first socket released", WAIT, || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.contains("herald_gateway_connections 1\n")
            .then_some(())
    })
    .await;
    let (_third, hello) = WsClient::connect_user(gw.port, &token).await;
    assert_eq!(hello["user_id"], "cid");

    // The burst of 4 is spent (however the attempts were answered).
    let fast = refused(gw.port, &[("authorization", &bearer)]).await;
    assert_eq!(fast.status, 429, "{}", fast.body);
    assert_eq!(
        problem_type(&fast),
        "https://herald.dev/problems/too-many-requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_to_authenticate_shuts_an_address_out_per_forwarded_client() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__HTTP__TRUSTED_PROXY_HOPS", "1");
    env.set("HERALD__AUTH__FAILURES_PER_ADDRESS_BURST", "3");
    env.set("HERALD__AUTH__FAILURES_PER_ADDRESS_PER_MIN", "0.5");
    let gw = TestGateway::spawn_in(env).await;
    let http = reqwest::Client::new();
    let count = format!("http://127.0.0.1:{}/v1/me/unread-count", gw.port);
    let good = format!("Bearer {}", gw.env.token("ann", 300));
    // The proxy appends the client's address; what the client wrote before
    // it is not trusted.
    let from = |client: &str| format!("1.2.3.4, {client}");
    let ask = |authorization: &str, client: &str| {
        http.get(&count)
            .header("authorization", authorization)
            .header("x-forwarded-for", from(client))
            .send()
    };

    // Four failures: the fourth closes the door...
    for _ in 0..4 {
        let response = ask("Bearer not.a.jwt", "203.0.113.7").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // ...to REST and WebSocket alike, even with a valid token.
    let response = ask(&good, "203.0.113.7").await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://herald.dev/problems/too-many-failures"
    );
    let shut = refused(
        gw.port,
        &[
            ("authorization", &good),
            ("x-forwarded-for", &from("203.0.113.7")),
        ],
    )
    .await;
    assert_eq!(shut.status, 429);

    // Another client behind the same proxy is not affected.
    let response = ask(&good, "203.0.113.8").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_writing_too_fast_gets_429_and_nothing_changes() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__REST_WRITES_PER_USER_BURST", "2");
    env.set("HERALD__GATEWAY__REST_WRITES_PER_USER_PER_SEC", "0.01");
    let gw = TestGateway::spawn_in(env).await;
    let http = reqwest::Client::new();
    let read_all = format!("http://127.0.0.1:{}/v1/me/notifications/read-all", gw.port);
    let as_user = |user: &str| format!("Bearer {}", gw.env.token(user, 300));

    for _ in 0..2 {
        let response = http
            .post(&read_all)
            .header("authorization", as_user("ann"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = http
        .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
        .header("authorization", as_user("ann"))
        .json(&serde_json::json!({"locale": "de", "timezone": null, "muted_categories": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let preferences: Value = http
        .get(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
        .header("authorization", as_user("ann"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preferences["locale"], Value::Null, "nothing changed");

    // Reads are not writes, and another user has their own budget.
    let response = http
        .post(&read_all)
        .header("authorization", as_user("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
