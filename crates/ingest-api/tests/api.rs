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
use testkit::service::Running;

struct TestApp {
    env: TestEnv,
    base: String,
    key: String,
    http: reqwest::Client,
    redis: RedisStore,
    _running: Running,
}

impl TestApp {
    async fn spawn() -> Self {
        Self::spawn_in(TestEnv::new().await).await
    }

    async fn spawn_in(env: TestEnv) -> Self {
        let running = testkit::service::start::<Application>(&env.settings()).await;
        let base = format!("http://127.0.0.1:{}", running.port);
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
            _running: running,
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
        self.post_raw_to("/v1/notifications", key, content_type, body)
            .await
    }

    /// A body as written (for JSON that `json!` cannot express), with the
    /// headers given, to `path`.
    async fn post_raw_to(
        &self,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    /// Ids of the notification entries appended since the last call (read
    /// through an inspector consumer group), with their priority.
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
    // The key is cached now; revoking it evicts it everywhere at once.
    let (_, told) = ingest_api::key_cache::revoke(&mut conn, &app.redis, "soon-revoked")
        .await
        .unwrap();
    assert_eq!(told.unwrap(), 1, "this ingest-api heard the revocation");
    // Pub/Sub delivery takes well under a millisecond; allow a second, far
    // below the cache TTL (60 s) that would apply without the announcement.
    let refused = testkit::eventually(
        "the revoked key is refused",
        Duration::from_secs(1),
        || async {
            let response = app.post_raw(Some(&revoked), json_ct, ok_body.clone()).await;
            (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
        },
    )
    .await;
    problem(refused, StatusCode::UNAUTHORIZED).await;

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
    let key = api_keys::create(&mut conn, "quietly-revoked", Scope::Producer)
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
    env.database_through(&proxy);
    let app = TestApp::spawn_in(env).await;
    let mut conn = app.env.db().await;
    let not_yet_used = api_keys::create(&mut conn, "not-yet-used", Scope::Producer)
        .await
        .unwrap();
    let body = serde_json::to_vec(&valid("u")).unwrap();
    assert_eq!(app.post(&valid("u")).await.status(), StatusCode::ACCEPTED);

    proxy.cut();
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

impl TestApp {
    async fn post_with_key(&self, idempotency_key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/notifications", self.base))
            .header("x-api-key", &self.key)
            .header("idempotency-key", idempotency_key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let body = valid("olga");
    let first = app.post_with_key("order-1-shipped", &body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    for _ in 0..3 {
        let retry = app.post_with_key("order-1-shipped", &body).await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: Value = retry.json().await.unwrap();
        assert_eq!(retry["id"], first["id"]);
    }

    let mut other = body.clone();
    other["title"] = json!("Something else");
    let body_409 = problem(
        app.post_with_key("order-1-shipped", &other).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body_409["type"],
        "https://herald.dev/problems/idempotency-key-reused"
    );

    // Another key is another notification; no key is always a new one.
    assert_eq!(
        app.post_with_key("order-2-shipped", &body).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.post(&body).await.status(), StatusCode::ACCEPTED);

    // Exactly three appended: the first, order-2 and the keyless one.
    let appended = app.appended().await;
    assert_eq!(appended.len(), 3);
    assert!(appended.iter().any(|(_, id)| *id == first["id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_append_once() {
    let app = TestApp::spawn().await;
    let body = valid("pam");
    let attempts = (0..16).map(|_| app.post_with_key("same-key", &body));
    let responses = futures_util::future::join_all(attempts).await;
    let mut ids = HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.unwrap();
        ids.insert(answer["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every retry got the same id");
    assert_eq!(app.appended().await.len(), 1, "appended once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_per_producer_and_validated() {
    let app = TestApp::spawn().await;
    let other_key = api_keys::create(&mut app.env.db().await, "other", Scope::Producer)
        .await
        .unwrap();
    let body = valid("quinn");
    let mine: Value = app.post_with_key("k1", &body).await.json().await.unwrap();
    let theirs = app
        .http
        .post(format!("{}/v1/notifications", app.base))
        .header("x-api-key", &other_key)
        .header("idempotency-key", "k1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(mine["id"], theirs["id"]);

    for bad in ["", "has space", &"x".repeat(256)] {
        let body = problem(
            app.post_with_key(bad, &valid("quinn")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    }
    assert_eq!(app.appended().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_seconds_travels_as_expires_at() {
    let app = TestApp::spawn().await;
    let mut body = valid("rita");
    body["ttl_seconds"] = json!(60);
    assert_eq!(app.post(&body).await.status(), StatusCode::ACCEPTED);
    app.redis.ensure_consumer_group().await.unwrap();
    let entries = app
        .redis
        .read_group("inspector", ReadFrom::New, 10, Duration::from_millis(1))
        .await
        .unwrap();
    let entry: Value = serde_json::from_str(entries[0].payload.as_deref().unwrap()).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(entry["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(entry["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 60);
    body["ttl_seconds"] = json!(0);
    problem(app.post(&body).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dead_letter_endpoints() {
    let app = TestApp::spawn().await;
    let admin_key = api_keys::create(&mut app.env.db().await, "ops", Scope::Admin)
        .await
        .unwrap();
    let url = |path: &str| format!("{}{path}", app.base);

    // A producer key may not use them.
    let response = app
        .http
        .get(url("/v1/admin/dead-letters"))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .http
        .get(url("/v1/admin/dead-letters"))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // Two dead letters, as the worker records them.
    let fixable = testkit::new_notification("sam", 1, Priority::Low);
    let mut broken = serde_json::to_value(&fixable).unwrap();
    broken["user_id"] = json!("not valid");
    let records = vec![
        platform::storage::dead_letters::NewDeadLetter::new(
            Priority::Low,
            "1-0",
            &broken.to_string(),
            "user_id: invalid",
            1,
        ),
        platform::storage::dead_letters::NewDeadLetter::new(
            Priority::Normal,
            "2-0",
            "{garbage",
            "malformed",
            1,
        ),
    ];
    platform::storage::dead_letters::record(&mut app.env.db().await, &records)
        .await
        .unwrap();

    let listed: Value = app
        .http
        .get(url("/v1/admin/dead-letters"))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Replay as is: invalid -> 400, nothing appended.
    let id = records[0].id;
    let response = app
        .http
        .post(url(&format!("/v1/admin/dead-letters/{id}/replay")))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
    // Replay corrected: 200 with the new entry id.
    let response = app
        .http
        .post(url(&format!("/v1/admin/dead-letters/{id}/replay")))
        .header("x-api-key", &admin_key)
        .json(&json!({"payload": fixable}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replayed: Value = response.json().await.unwrap();
    assert!(replayed["entry_id"].is_string());
    let appended = app.appended().await;
    assert_eq!(appended, vec![(Priority::Low, fixable.id.to_string())]);
    // Twice: 409. Unknown: 404.
    let again = app
        .http
        .post(url(&format!("/v1/admin/dead-letters/{id}/replay")))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::CONFLICT).await;
    let unknown = app
        .http
        .post(url(&format!(
            "/v1/admin/dead-letters/{}/replay",
            uuid::Uuid::now_v7()
        )))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap();
    problem(unknown, StatusCode::NOT_FOUND).await;

    // Replay all: the garbage one cannot be replayed as it is and is reported.
    let report: Value = app
        .http
        .post(url("/v1/admin/dead-letters/replay"))
        .header("x-api-key", &admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["replayed"], json!([]));
    assert_eq!(report["failed"][0]["id"], records[1].id.to_string());
}

const ORDER_EN: &str = "title = Order shipped\nbody = { $count ->\n    [one] One item for { $name }\n   *[other] { $count } items for { $name }\n}\n";
const ORDER_PL: &str = "title = Zamówienie wysłane\nbody = { $count ->\n    [one] { $count } przedmiot dla { $name }\n    [few] { $count } przedmioty dla { $name }\n   *[many] { $count } przedmiotów dla { $name }\n}\n";

fn order_template() -> Value {
    json!({"params": {"count": "number", "name": "string"}, "locales": {"en": ORDER_EN, "pl": ORDER_PL}})
}

impl TestApp {
    async fn admin_key(&self) -> String {
        api_keys::create(
            &mut self.env.db().await,
            &format!("ops-{}", uuid::Uuid::now_v7().simple()),
            Scope::Admin,
        )
        .await
        .unwrap()
    }

    async fn upload(&self, key: &str, admin: &str, template: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/admin/templates/{key}", self.base))
            .header("x-api-key", admin)
            .json(template)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_upload_is_validated_versioned_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key().await;

    // A producer key may not manage templates.
    problem(
        app.upload("order_shipped", &app.key, &order_template())
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Invalid: a syntax error and an undeclared parameter, with positions; nothing stored.
    let broken = json!({"params": {"count": "number"}, "locales": {
        "en": "title = Hi { $name }\nbody = x\n",
        "de": "title = Hallo\nbody = { $count ->\n    [one] eins\n}\n"}});
    let body = problem(
        app.upload("order_shipped", &admin, &broken).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "https://herald.dev/problems/invalid-template");
    let issues = body["issues"].as_array().unwrap();
    let en = issues.iter().find(|i| i["locale"] == "en").unwrap();
    assert_eq!(
        (en["line"].as_u64(), en["column"].as_u64()),
        (Some(1), Some(14))
    );
    assert!(en["message"].as_str().unwrap().contains("$name"));
    let de = issues.iter().find(|i| i["locale"] == "de").unwrap();
    assert!(de["line"].as_u64().unwrap() >= 2);
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "locales.de")
    );
    let missing = app
        .http
        .get(format!("{}/v1/admin/templates/order_shipped", app.base))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "nothing invalid is stored"
    );
    let huge = json!({"locales": {"en": format!("title = a\nbody = {}\n", "x".repeat(17_000))}});
    problem(
        app.upload("huge", &admin, &huge).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Valid: version 1; the same again stays 1; a change makes 2.
    let created = app.upload("order_shipped", &admin, &order_template()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.json::<Value>().await.unwrap()["version"], 1);
    let same: Value = app
        .upload("order_shipped", &admin, &order_template())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["version"], 1);
    let mut changed = order_template();
    changed["locales"]["de"] = json!("title = Versandt\nbody = { $count } Artikel für { $name }\n");
    let v2: Value = app
        .upload("order_shipped", &admin, &changed)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["version"], 2);

    let list: Value = app
        .http
        .get(format!("{}/v1/admin/templates", app.base))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["version"], 2);
    let v1: Value = app
        .http
        .get(format!(
            "{}/v1/admin/templates/order_shipped?version=1",
            app.base
        ))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v1["source"]["locales"]["de"].is_null());

    let deleted = app
        .http
        .delete(format!("{}/v1/admin/templates/order_shipped", app.base))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app
        .http
        .delete(format!("{}/v1/admin/templates/order_shipped", app.base))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::NOT_FOUND).await;
    let body = problem(
        app.post(&json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "a"}})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_notifications_are_checked_at_ingest() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key().await;
    assert_eq!(
        app.upload("order_shipped", &admin, &order_template())
            .await
            .status(),
        StatusCode::CREATED
    );

    let ok = app
        .post(&json!({"user_id": "u1", "template": "order_shipped", "params": {"count": 3, "name": "Ada"}, "locale": "pl"}))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    let appended = app.appended().await;
    assert_eq!(appended.len(), 1);

    let cases = [
        (
            json!({"user_id": "u", "template": "nope", "params": {}}),
            "template",
            "nope",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"name": "Ada"}}),
            "params.count",
            "order_shipped",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": "three", "name": "Ada"}}),
            "params.count",
            "number",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "Ada", "x": 1}}),
            "params.x",
            "not declared",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "title": "t", "body": "b", "params": {"count": 1, "name": "Ada"}}),
            "template",
            "not both",
        ),
        (json!({"user_id": "u"}), "template", "either"),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "Ada"}, "locale": "not a tag"}),
            "locale",
            "BCP 47",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": [1], "name": "Ada"}}),
            "params.count",
            "string or a number",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped",
                   "params": (0..21).map(|i| (format!("p{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            "params",
            "at most 20",
        ),
    ];
    for (request, field, says) in cases {
        let body = problem(app.post(&request).await, StatusCode::BAD_REQUEST).await;
        let error = &body["errors"][0];
        assert_eq!(error["field"], field, "{request}: {body}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{request}: {body}"
        );
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "nothing queued for refused requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_can_set_a_users_locale() {
    let app = TestApp::spawn().await;
    let put = |user: &str, body: Value| {
        app.http
            .put(format!("{}/v1/users/{user}/preferences", app.base))
            .header("x-api-key", &app.key)
            .json(&body)
            .send()
    };
    let ok: Value = put(
        "ana",
        json!({"locale": "pt-br", "timezone": "America/Sao_Paulo"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        ok,
        json!({"locale": "pt-BR", "timezone": "America/Sao_Paulo", "muted_categories": []})
    );
    let body = problem(
        put(
            "ana",
            json!({"locale": "xx yy", "timezone": "Nowhere/Land"}),
        )
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["locale", "timezone"]);
    problem(
        put("bad user", json!({"locale": "en"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_load_from_a_folder_at_start_and_broken_ones_stop_it() {
    let mut env = TestEnv::new().await;
    env.set(
        "HERALD__TEMPLATES__DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates"),
    );
    let app = TestApp::spawn_in(env).await;
    let admin = app.admin_key().await;
    let list: Value = app
        .http
        .get(format!("{}/v1/admin/templates", app.base))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["new_messages", "order_shipped"]);
    for template in list.as_array().unwrap() {
        assert_eq!(
            template["source"]["locales"].as_object().unwrap().len(),
            3,
            "{}",
            template["key"]
        );
    }
    let ok = app
        .post(&json!({"user_id": "u", "template": "order_shipped", "params": {"count": 2, "name": "Ada"}}))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);

    // A broken file stops the start, naming file, line and column.
    let broken = std::env::temp_dir().join(format!(
        "herald-templates-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(broken.join("oops")).unwrap();
    std::fs::write(
        broken.join("oops/en.ftl"),
        "title = Hi { $who }\nbody = x\n",
    )
    .unwrap();
    let mut env = TestEnv::new().await;
    env.set("HERALD__TEMPLATES__DIR", broken.to_str().unwrap());
    let err = match testkit::service::try_start::<Application>(&env.settings()).await {
        Ok(_) => panic!("a broken template folder must stop the start"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("oops/en.ftl:1:14"), "{err}");
    let _ = std::fs::remove_dir_all(broken);
}

impl TestApp {
    async fn post_batch(&self, idempotency_key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/notifications/batch", self.base))
            .header("x-api-key", &self.key)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("request sent")
    }

    /// A batch body as written, for JSON that `json!` cannot express.
    async fn post_batch_text(&self, body: &str) -> reqwest::Response {
        self.post_raw_to(
            "/v1/notifications/batch",
            Some(&self.key),
            Some("application/json"),
            body.into(),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_are_decoded_like_single_bodies() {
    let app = TestApp::spawn().await;
    let json_ct = Some("application/json");
    // A field given twice: the single endpoint refuses the body...
    let twice = r#"{"user_id":"u1","title":"a","title":"b","body":"c"}"#;
    let single = problem(
        app.post_raw(Some(&app.key), json_ct, twice.into()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.appended().await.len(), 0);
    // ...and a batch refuses that item alone, for the same field; an item
    // of the wrong type or with a mistyped field is refused alone too.
    let body = format!(
        r#"{{"notifications":[{},{twice},{{"user_id":"u2","title":5,"body":"b"}},42,{}]}}"#,
        valid("u0"),
        valid("u3")
    );
    let response = app.post_batch_text(&body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    let results = result["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "rejected", "rejected", "rejected", "accepted"]
    );
    assert_eq!(
        results[1]["errors"][0]["field"],
        single["errors"][0]["field"]
    );
    assert_eq!(results[2]["errors"][0]["field"], "title");
    assert_eq!(results[3]["errors"][0]["field"], "$", "not an object");
    assert_eq!(app.appended().await.len(), 2, "the two valid items only");
    // Broken JSON inside an item is the whole request's: nothing appended.
    // The envelope's parse catches a syntax error; a lone surrogate escape
    // or a number out of range only shows when the item is decoded.
    for item in [
        r#"{"user_id": }"#,
        r#"{"user_id":"u5","title":"\ud800","body":"b"}"#,
        r#"{"user_id":"u5","title":"t","body":"b","data":{"n":1e400}}"#,
    ] {
        let broken = format!(r#"{{"notifications":[{},{item}]}}"#, valid("u4"));
        let body = problem(app.post_batch_text(&broken).await, StatusCode::BAD_REQUEST).await;
        assert!(
            body["type"].as_str().unwrap().ends_with("malformed-json"),
            "{body}"
        );
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "a malformed batch appends nothing (appended() reads what is new)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_appends_the_valid_items_and_reports_each() {
    let app = TestApp::spawn().await;
    let mut items: Vec<Value> = (0..100).map(|i| valid(&format!("user-{i}"))).collect();
    items[10] = json!({"user_id": "bad id", "title": "t", "body": "b"});
    items[20] = json!({"user_id": "u", "title": "t", "body": "b", "priority": "urgent"});
    items[30] = json!({"user_id": "u"});
    items[40]["priority"] = json!("high");
    let response = app
        .post_batch(None, &json!({ "notifications": items }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["accepted"], 97);
    assert_eq!(result["rejected"], 3);
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 100, "one result per item, in order");
    assert_eq!(results[10]["status"], "rejected");
    assert_eq!(results[10]["errors"][0]["field"], "user_id");
    assert_eq!(results[20]["errors"][0]["field"], "priority");
    assert_eq!(results[30]["errors"][0]["field"], "template");
    let accepted: HashSet<String> = results
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let appended: HashSet<String> = app.appended().await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        appended, accepted,
        "ids answered accepted == entries appended"
    );

    for bad in [
        json!({"notifications": []}),
        json!({"notifications": vec![valid("u"); 1_001]}),
        json!({"items": []}),
    ] {
        let body = problem(app.post_batch(None, &bad).await, StatusCode::BAD_REQUEST).await;
        assert!(body["errors"][0]["field"].is_string());
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "refused batches append nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_retries_with_an_idempotency_key_append_once() {
    let app = TestApp::spawn().await;
    let batch =
        json!({ "notifications": (0..50).map(|i| valid(&format!("u{i}"))).collect::<Vec<_>>() });
    let first = app.post_batch(Some("batch-1"), &batch).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let retry = app.post_batch(Some("batch-1"), &batch).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "the first answer, ids included");
    assert_eq!(app.appended().await.len(), 50, "appended once");
    let other = json!({ "notifications": [valid("someone-else")] });
    problem(
        app.post_batch(Some("batch-1"), &other).await,
        StatusCode::CONFLICT,
    )
    .await;
}
