//! A real ingest-api in the test process, its producer key, and requests and checks the tests share.

use std::time::Duration;

use domain::Priority;
use ingest_api::Application;
use platform::redis::{ReadFrom, RedisStore};
use platform::storage::api_keys::{self, KeyPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::service::Running;

pub struct TestApp {
    pub env: TestEnv,
    pub base: String,
    /// A producer key.
    pub key: String,
    pub http: reqwest::Client,
    pub redis: RedisStore,
    _running: Running,
}

/// Requests to paths of the app, carrying one API key (`x-api-key`) or none.
pub struct Requests<'a> {
    app: &'a TestApp,
    key: Option<&'a str>,
}

impl Requests<'_> {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.base));
        match self.key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    }
}

/// The fields a problem's `errors` name, in order.
pub fn error_fields(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("a field"))
        .collect()
}

/// The JSON body of a request answered 200.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("request sent");
    assert_eq!(response.status(), StatusCode::OK, "{}", response.url());
    response.json().await.expect("a JSON body")
}

impl TestApp {
    /// Requests sent with `key`.
    pub fn with_key<'a>(&'a self, key: &'a str) -> Requests<'a> {
        Requests {
            app: self,
            key: Some(key),
        }
    }

    /// Requests sent without an API key.
    pub fn without_key(&self) -> Requests<'_> {
        Requests {
            app: self,
            key: None,
        }
    }

    pub async fn spawn() -> Self {
        Self::spawn_in(TestEnv::new().await).await
    }

    pub async fn spawn_in(env: TestEnv) -> Self {
        let running = testkit::service::start::<Application>(&env.settings()).await;
        let base = format!("http://127.0.0.1:{}", running.port);
        let key = api_keys::create(&mut env.db().await, "tests", &KeyPolicy::producer())
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

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.post_as(&self.key, body).await
    }

    /// `POST /v1/notifications` with another API key.
    pub async fn post_as(&self, key: &str, body: &Value) -> reqwest::Response {
        self.with_key(key)
            .post("/v1/notifications")
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(
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
    pub async fn post_raw_to(
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
        // Bodies over the limit are refused before they are read.
        testkit::send_answered(request).await
    }

    /// Ids of the notification entries appended since the last call, in
    /// every shard (read through an inspector consumer group), with their
    /// priority.
    pub async fn appended(&self) -> Vec<(Priority, String)> {
        self.redis.ensure_consumer_group().await.expect("group");
        let mut found = Vec::new();
        for shard in self.redis.keys().shards() {
            loop {
                let entries = self
                    .redis
                    .read_lanes(
                        "inspector",
                        shard,
                        &Priority::ALL,
                        ReadFrom::New,
                        1_000,
                        Duration::from_millis(1),
                    )
                    .await
                    .expect("read");
                if entries.is_empty() {
                    break;
                }
                for entry in entries {
                    let payload: Value =
                        serde_json::from_str(entry.payload.as_deref().unwrap()).unwrap();
                    found.push((entry.priority, payload["id"].as_str().unwrap().to_owned()));
                }
            }
        }
        found
    }
}

pub fn valid(user: &str) -> Value {
    json!({ "user_id": user, "title": "Order shipped", "body": "Your order is on its way" })
}

pub async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
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

impl TestApp {
    pub async fn post_with_key(&self, idempotency_key: &str, body: &Value) -> reqwest::Response {
        self.with_key(&self.key)
            .post("/v1/notifications")
            .header("idempotency-key", idempotency_key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }
}

impl TestApp {
    /// A key with its own scopes, tenant or rate.
    pub async fn create_key(&self, policy: &KeyPolicy) -> String {
        api_keys::create(
            &mut self.env.db().await,
            &format!("k-{}", uuid::Uuid::now_v7().simple()),
            policy,
        )
        .await
        .expect("key")
    }

    pub async fn admin_key(&self) -> String {
        api_keys::create(
            &mut self.env.db().await,
            &format!("ops-{}", uuid::Uuid::now_v7().simple()),
            &KeyPolicy::admin(),
        )
        .await
        .unwrap()
    }

    pub async fn upload(&self, key: &str, admin: &str, template: &Value) -> reqwest::Response {
        self.with_key(admin)
            .post(&format!("/v1/admin/templates/{key}"))
            .json(template)
            .send()
            .await
            .unwrap()
    }
}

impl TestApp {
    pub async fn post_batch(
        &self,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self
            .with_key(&self.key)
            .post("/v1/notifications/batch")
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("request sent")
    }

    /// A batch body as written, for JSON that `json!` cannot express.
    pub async fn post_batch_text(&self, body: &str) -> reqwest::Response {
        self.post_raw_to(
            "/v1/notifications/batch",
            Some(&self.key),
            Some("application/json"),
            body.into(),
        )
        .await
    }
}
