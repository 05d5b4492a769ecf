//! A user token revoked by its `jti` through ingest-api's admin endpoint:
//! the socket opened with it closes with 4003 at once, the gateway refuses
//! it from then on (socket and REST) until it expires, and a gateway
//! started later knows it too (real processes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::processes::run_binary;
use testkit::ws::{Ended, WsClient};
use testkit::{JWT_SECRET, sign_claims};

use crate::support::{Stack, start, stdout_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_is_refused_everywhere_and_its_socket_closes() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let admin = stdout_line(
        &run_binary(
            "ingest-api",
            &vars,
            &["keys", "create", "--name", "ops", "--scope", "admin"],
        ),
        "keys create --scope admin",
    );
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let gateway = start("ws-gateway", &vars, &stack.logs).await;
    let http = reqwest::Client::new();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = now + 600;
    let token = |jti: &str| {
        sign_claims(
            &json!({"sub": "ann", "iat": now, "exp": exp, "jti": jti}),
            JWT_SECRET,
        )
    };
    let (stolen, kept) = (token("stolen-1"), token("kept-1"));
    let (mut stolen_ws, _) = WsClient::connect_user(gateway.port, &stolen).await;
    let (mut kept_ws, _) = WsClient::connect_user(gateway.port, &kept).await;

    let revoke = |body: Value, key: &str| {
        http.post(format!(
            "http://127.0.0.1:{}/v1/admin/tokens/revoked",
            ingest.port
        ))
        .header("x-api-key", key)
        .json(&body)
        .send()
    };
    let expires_at = Utc.timestamp_opt(i64::try_from(exp).unwrap(), 0).unwrap();
    // A producer key may not; a past expiry is refused.
    let refused = revoke(
        json!({"jti": "stolen-1", "expires_at": expires_at}),
        &stack.key,
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = revoke(
        json!({"jti": "stolen-1", "expires_at": "2020-01-01T00:00:00Z"}),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    let revoked = revoke(json!({"jti": "stolen-1", "expires_at": expires_at}), &admin)
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::CREATED);
    let body: Value = revoked.json().await.unwrap();
    assert_eq!(body["jti"], "stolen-1");

    assert_eq!(
        stolen_ws.closed(Duration::from_secs(5)).await,
        Ended::Closed(Some(4003))
    );
    // The other token's socket lives on (nothing arrives, nothing closes).
    assert!(
        kept_ws
            .next_or_end(Duration::from_millis(500))
            .await
            .is_none()
    );

    let refused = WsClient::connect(gateway.port, "/v1/ws", Some(&stolen))
        .await
        .err()
        .expect("a revoked token opens no socket");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("revoked"), "{}", refused.body);
    let count = |token: String| {
        http.get(format!(
            "http://127.0.0.1:{}/v1/me/unread-count",
            gateway.port
        ))
        .bearer_auth(token)
        .send()
    };
    assert_eq!(
        count(stolen.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(count(kept.clone()).await.unwrap().status(), StatusCode::OK);

    // A gateway started after the announcement loads it from storage.
    let later = start("ws-gateway", &vars, &stack.logs).await;
    let refused = WsClient::connect(later.port, "/v1/ws", Some(&stolen))
        .await
        .err()
        .expect("refused by a gateway started later");
    assert_eq!(refused.status, 401);

    let listed: Value = http
        .get(format!(
            "http://127.0.0.1:{}/v1/admin/tokens/revoked",
            ingest.port
        ))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jtis: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect();
    assert_eq!(jtis, ["stolen-1"]);
}
