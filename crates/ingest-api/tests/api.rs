//! ingest-api against real PostgreSQL and Redis: what is answered 202 is in
//! the stream, and every refusal is problem+json with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use ingest_api::Application;
use platform::redis::{ReadFrom, RedisStore};
use platform::storage::api_keys::{self, Scope};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::processes::RedisServer;
use tokio_util::sync::CancellationToken;

struct TestApp {
    env: TestEnv,
    base: String,
    key: String,
    http: reqwest::Client,
    redis: RedisStore,
    _shutdown: tokio_util::sync::DropGuard,
}

impl TestApp {
    async fn spawn() -> Self {
        Self::spawn_in(TestEnv::new().await).await
    }

    async fn spawn_in(env: TestEnv) -> Self {
        let app = Application::build(&env.settings())
            .await
            .expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let token = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(token.clone()));
        let key = api_keys::create(&mut env.db().await, "tests", Scope::Producer)
            .await
            .expect("key");
        let redis = env.redis().await;
        Self {
            env,
            base,
            key,
            http: reqwest::Client::new(),
            redis,
            _shutdown: token.drop_guard(),
        }
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/notifications", self.base))
            .header("x-api-key", &self.key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    async fn post_raw(
        &self,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/notifications", self.base))
            .body(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    /// Ids of every notification entry appended to the streams so far, per priority.
    async fn appended(&self) -> Vec<(Priority, String)> {
        self.redis.ensure_consumer_group().await.expect("group");
        let mut found = Vec::new();
        loop {
            let entries = self
                .redis
                .read_group("inspector", ReadFrom::New, 1_000, Duration::from_millis(1))
                .await
                .expect("read");
            if entries.is_empty() {
                return found;
            }
            for entry in entries {
                let payload: Value =
                    serde_json::from_str(entry.payload.as_deref().unwrap()).unwrap();
                found.push((entry.priority, payload["id"].as_str().unwrap().to_owned()));
            }
        }
    }
}

fn valid(user: &str) -> Value {
    json!({ "user_id": user, "title": "Order shipped", "body": "Your order is on its way" })
}

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://herald.dev/problems/")
    );
    assert!(body["title"].is_string());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_202_id_is_in_its_priority_stream() {
    let app = TestApp::spawn().await;
    let mut accepted = HashSet::new();
    for (i, priority) in ["high", "normal", "low"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let mut body = valid(&format!("user-{}", i % 4));
        body["priority"] = json!(priority);
        body["category"] = json!("orders");
        body["data"] = json!({ "order": i });
        let response = app.post(&body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "accepted");
        let id = answer["id"].as_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        accepted.insert((priority.parse::<Priority>().unwrap(), id));
    }
    let appended: HashSet<_> = app.appended().await.into_iter().collect();
    assert_eq!(appended, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_problem_json_and_nothing_written() {
    let app = TestApp::spawn().await;
    let json_ct = Some("application/json");
    let key = Some(app.key.as_str());

    // Malformed JSON.
    let body = problem(
        app.post_raw(key, json_ct, b"{\"user_id\": ".to_vec()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "https://herald.dev/problems/malformed-json");

    // Wrong type names the field.
    let body = problem(
        app.post(&json!({"user_id": 42, "title": "t", "body": "b"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "user_id");

    // Missing field names the field.
    let body = problem(
        app.post(&json!({"user_id": "u", "body": "b"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "title");

    // Unknown priority.
    let mut unknown_priority = valid("u");
    unknown_priority["priority"] = json!("urgent");
    let body = problem(app.post(&unknown_priority).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["errors"][0]["field"], "priority");

    // Invalid user id and oversized data, reported together.
    let body = problem(
        app.post(
            &json!({"user_id": "no spaces allowed", "title": "t", "body": "b",
                          "data": {"blob": "x".repeat(5_000)}}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["user_id", "data"]);

    // data must be an object.
    let body = problem(
        app.post(&json!({"user_id": "u", "title": "t", "body": "b", "data": [1]}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "data");

    // Over 64 KiB.
    let huge =
        serde_json::to_vec(&json!({"user_id": "u", "title": "t", "body": "x".repeat(70_000)}))
            .unwrap();
    problem(
        app.post_raw(key, json_ct, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Missing and wrong content type.
    let ok_body = serde_json::to_vec(&valid("u")).unwrap();
    problem(
        app.post_raw(key, None, ok_body.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        app.post_raw(key, Some("text/plain"), ok_body.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;

    // Missing, unknown and revoked API keys.
    problem(
        app.post_raw(None, json_ct, ok_body.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post_raw(Some("hrld_nope"), json_ct, ok_body.clone())
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let mut conn = app.env.db().await;
    let revoked = api_keys::create(&mut conn, "soon-revoked", Scope::Producer)
        .await
        .unwrap();
    assert_eq!(
        app.post_raw(Some(&revoked), json_ct, ok_body.clone())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    api_keys::revoke(&mut conn, "soon-revoked").await.unwrap();
    problem(
        app.post_raw(Some(&revoked), json_ct, ok_body.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Only the one request with a valid key and body was appended.
    assert_eq!(app.appended().await.len(), 1);

    // Unknown routes are problem+json too.
    let response = app
        .http
        .get(format!("{}/v1/nothing", app.base))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charset_parameter_is_still_json() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw(
            Some(&app.key),
            Some("application/json; charset=utf-8"),
            serde_json::to_vec(&valid("u")).unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_with_retry_after_never_202() {
    let mut redis = RedisServer::start().await;
    let mut env = TestEnv::new().await;
    env.set("HERALD__REDIS__URL", redis.url());
    env.set("HERALD__REDIS__COMMAND_TIMEOUT_MS", "500");
    let app = TestApp::spawn_in(env).await;
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);

    redis.kill();
    let response = app.post(&valid("u")).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "no internals leak: {body}"
    );
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_openapi() {
    let app = TestApp::spawn().await;
    let health: Value = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["postgres"]["status"], "ok");
    assert_eq!(ready["checks"]["redis"]["status"], "ok");

    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let post = &spec["paths"]["/v1/notifications"]["post"];
    assert!(post["responses"]["202"].is_object());
    assert!(post["responses"]["415"].is_object());
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());

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
    let through_proxy = env
        .database_url()
        .replace(":5432/", &format!(":{}/", proxy.port));
    env.set("HERALD__DATABASE__URL", through_proxy);
    env.set("HERALD__DATABASE__CONNECT_TIMEOUT_MS", "500");
    env.set("HERALD__DATABASE__ACQUIRE_TIMEOUT_MS", "500");
    let app = TestApp::spawn_in(env).await;
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);

    proxy.cut();
    let response = app.post(&valid("u")).await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    proxy.restore();
    testkit::eventually(
        "ingest recovers after the database returns",
        Duration::from_secs(15),
        || async { (app.post(&valid("u")).await.status() == StatusCode::ACCEPTED).then_some(()) },
    )
    .await;
    assert_eq!(
        app.appended().await.len(),
        2,
        "only the two accepted requests were appended"
    );
}
