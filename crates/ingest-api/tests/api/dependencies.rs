//! Redis and PostgreSQL outages, health, readiness and the OpenAPI document.

use std::time::Duration;

use platform::storage::api_keys::{self, KeyPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::processes::RedisServer;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_with_retry_after_never_202() {
    let mut redis = RedisServer::start().await;
    let mut env = TestEnv::new().await;
    env.set("HERALD__REDIS__URL", redis.url());
    env.set("HERALD__REDIS__COMMAND_TIMEOUT_MS", "500");
    env.set("HERALD__HTTP__RETRY_AFTER_SECS", "7");
    let app = TestApp::spawn_in(env).await;
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);

    redis.kill();
    let response = app.post(&valid("u")).await;
    // The configured wait, not a constant.
    assert_eq!(response.headers()["retry-after"], "7");
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "no internals leak: {body}"
    );
    let ready = app.without_key().get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Redis comes back (empty: it keeps nothing); the service recovers by itself.
    redis.restart().await;
    let status = testkit::eventually(
        "ingest to recover after Redis returns",
        Duration::from_secs(15),
        || async {
            let status = app.post(&valid("u")).await.status();
            (status == StatusCode::ACCEPTED).then_some(status)
        },
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// A revocation announced while the revocation channel is down is lost; the
/// cache is therefore cleared when that connection comes back, so the key is
/// looked up again (and refused) instead of being trusted for the cache time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_cache_is_cleared_when_the_revocation_channel_returns() {
    let mut redis = RedisServer::start().await;
    let mut env = TestEnv::new().await;
    env.set("HERALD__REDIS__URL", redis.url());
    let app = TestApp::spawn_in(env).await;
    let mut conn = app.env.db().await;
    let key = api_keys::create(&mut conn, "quietly-revoked", &KeyPolicy::producer())
        .await
        .unwrap();
    let body = serde_json::to_vec(&valid("u")).unwrap();
    let post = || app.post_raw(Some(&key), Some("application/json"), body.clone());
    assert_eq!(post().await.status(), StatusCode::ACCEPTED);

    // Revoked in PostgreSQL without an announcement (as if Redis had been
    // unreachable): the cached key is still trusted...
    api_keys::revoke(&mut conn, "quietly-revoked")
        .await
        .unwrap();
    assert_eq!(
        post().await.status(),
        StatusCode::ACCEPTED,
        "served from the cache"
    );

    // ...until the revocation channel reconnects, which clears the cache.
    redis.kill();
    redis.restart().await;
    let refused = testkit::eventually(
        "the key to be looked up again after the reconnect",
        Duration::from_secs(15),
        || async {
            let response = post().await;
            (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
        },
    )
    .await;
    problem(refused, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_openapi() {
    let app = TestApp::spawn().await;
    let health: Value = json_of(app.without_key().get("/healthz")).await;
    assert_eq!(health["status"], "ok");
    let ready = app.without_key().get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["postgres"]["status"], "ok");
    assert_eq!(ready["checks"]["redis"]["status"], "ok");

    let (spec, queries) = testkit::openapi(&app.base).await;
    let post = &spec["paths"]["/v1/notifications"]["post"];
    assert!(post["responses"]["202"].is_object());
    assert!(post["responses"]["415"].is_object());
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());
    // Query parameters are declared in the query, with the limits the server enforces.
    let batch = &spec["components"]["schemas"]["BatchRequest"]["properties"]["notifications"];
    assert_eq!(
        (&batch["minItems"], &batch["maxItems"]),
        (&json!(1), &json!(1000))
    );
    assert_eq!(queries["GET /v1/admin/dead-letters"], ["all", "limit"]);
    assert_eq!(queries["GET /v1/admin/templates/{key}"], ["version"]);
    let limit = &spec["paths"]["/v1/admin/dead-letters"]["get"]["parameters"][1];
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(1000))
    );
    let admin_key = api_keys::create(&mut app.env.db().await, "ops", &KeyPolicy::admin())
        .await
        .unwrap();
    for (limit, status) in [
        (1000, StatusCode::OK),
        (1001, StatusCode::BAD_REQUEST),
        (0, StatusCode::BAD_REQUEST),
    ] {
        let answer = app
            .with_key(&admin_key)
            .get(&format!("/v1/admin/dead-letters?limit={limit}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "limit={limit}");
    }

    // docs/api.md documents every operation of the generated spec, and every answer code.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let heading = format!("`{} {path}`", method.to_uppercase());
            assert!(docs.contains(&heading), "docs/api.md lacks {heading}");
            for status in operation["responses"].as_object().unwrap().keys() {
                assert!(
                    docs.contains(&format!("`{status}`")),
                    "docs/api.md lacks status {status} of {heading}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_answers_503_not_401() {
    let proxy = testkit::proxy::Proxy::start(5432).await;
    let mut env = TestEnv::new().await;
    env.database_through(&proxy);
    let app = TestApp::spawn_in(env).await;
    let mut conn = app.env.db().await;
    let not_yet_used = api_keys::create(&mut conn, "not-yet-used", &KeyPolicy::producer())
        .await
        .unwrap();
    let body = serde_json::to_vec(&valid("u")).unwrap();
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);

    // A well-formed key PostgreSQL does not know: asked once, then remembered.
    let unknown = format!("hrld_{}", "0".repeat(64));
    let unknown_again = format!("hrld_{}", "1".repeat(64));
    for key in [&unknown, &unknown] {
        let refused = app
            .post_raw(Some(key), Some("application/json"), body.clone())
            .await;
        problem(refused, StatusCode::UNAUTHORIZED).await;
    }

    proxy.cut();
    // Refusals that need no query still answer 401 with PostgreSQL away: a
    // key not of Herald's form, and the unknown key just asked about.
    for key in ["hrld_nope", "x".repeat(300).as_str(), &unknown] {
        let refused = app
            .post_raw(Some(key), Some("application/json"), body.clone())
            .await;
        problem(refused, StatusCode::UNAUTHORIZED).await;
    }
    // Another well-formed key must be looked up: 503.
    let response = app
        .post_raw(Some(&unknown_again), Some("application/json"), body.clone())
        .await;
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    // A key verified a moment ago is still trusted (from the cache): plain
    // notifications do not need PostgreSQL.
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);
    // A key that must be looked up cannot be: 503, not 401.
    let response = app
        .post_raw(Some(&not_yet_used), Some("application/json"), body.clone())
        .await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    proxy.restore();
    testkit::eventually(
        "ingest recovers after the database returns",
        Duration::from_secs(15),
        || async {
            let response = app
                .post_raw(Some(&not_yet_used), Some("application/json"), body.clone())
                .await;
            (response.status() == StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
    assert_eq!(
        app.appended().await.len(),
        3,
        "only the three accepted requests were appended"
    );
}
