//! A gateway in this process, and a worker beside it when a test needs
//! notifications stored and published for real.

use std::time::Duration;

use domain::Priority;
use platform::redis::RedisStore;
use reqwest::StatusCode;
use serde_json::Value;
use testkit::service::Running;
use testkit::ws::WsClient;
use testkit::{TestEnv, new_notification};
use tokio_util::sync::CancellationToken;
use ws_gateway::Application;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestGateway {
    pub env: TestEnv,
    pub port: u16,
    pub redis: RedisStore,
    pub shutdown: CancellationToken,
    _running: Running,
}

impl TestGateway {
    pub async fn spawn() -> Self {
        Self::spawn_in(TestEnv::new().await).await
    }

    pub async fn spawn_in(env: TestEnv) -> Self {
        let running = testkit::service::start::<Application>(&env.settings()).await;
        let redis = env.redis().await;
        Self {
            env,
            port: running.port,
            redis,
            shutdown: running.shutdown.clone(),
            _running: running,
        }
    }

    pub async fn connect(&self, user: &str) -> (WsClient, Value) {
        WsClient::connect_user(self.port, &self.env.token(user, 300)).await
    }

    /// Connects as `user` to `/v1/ws?{query}` (resuming, say); answers the
    /// client and its `hello`.
    pub async fn connect_with(&self, user: &str, query: &str) -> (WsClient, Value) {
        let mut client = WsClient::connect(
            self.port,
            &format!("/v1/ws?{query}"),
            Some(&self.env.token(user, 300)),
        )
        .await
        .unwrap_or_else(|refused| panic!("{query}: refused: {refused:?}"));
        let hello = client.next_json(WAIT).await.expect("hello");
        assert_eq!(hello["type"], "hello", "{hello}");
        (client, hello)
    }

    /// What stream-worker does after storing: publish the frame to the user's channel.
    pub async fn publish(&self, user: &str, frame: &Value) {
        self.redis
            .publish_to_users(&[(user, frame.to_string())])
            .await
            .expect("publish");
    }
}

/// A real stream-worker in this process, stopped when dropped.
pub async fn start_worker(env: &TestEnv) -> Running {
    testkit::service::start::<stream_worker::Worker>(&env.settings()).await
}

/// Reads frames until `n` notification frames arrived; returns them and
/// every other frame seen (read events, errors) in order.
pub async fn notifications(
    client: &mut WsClient,
    n: usize,
    within: Duration,
) -> (Vec<Value>, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut notes = Vec::new();
    let mut others = Vec::new();
    while notes.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(frame) = client.next_json(left).await else {
            panic!("got {} of {n} notifications in {within:?}", notes.len());
        };
        if frame["type"] == "notification" {
            notes.push(frame);
        } else {
            others.push(frame);
        }
    }
    (notes, others)
}

pub fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect()
}

/// The inbox REST API as one user.
pub struct Api<'a> {
    gw: &'a TestGateway,
    pub token: String,
    pub http: reqwest::Client,
}

impl<'a> Api<'a> {
    pub fn new(gw: &'a TestGateway, user: &str) -> Self {
        Self {
            gw,
            token: gw.env.token(user, 300),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://127.0.0.1:{}{path}", self.gw.port))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(format!("http://127.0.0.1:{}{path}", self.gw.port))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("http://127.0.0.1:{}{path}", self.gw.port))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(format!("http://127.0.0.1:{}{path}", self.gw.port))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }
}

/// Stores `n` notifications for `user` (categories alternate) and returns them.
pub async fn seed(gw: &TestGateway, user: &str, n: usize) -> Vec<domain::Notification> {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            let mut n = new_notification(user, i, Priority::Normal);
            n.category = Some(if i % 2 == 0 { "orders" } else { "social" }.into());
            n
        })
        .collect();
    testkit::store_batch(&mut gw.env.db().await, &batch, chrono::Utc::now())
        .await
        .unwrap()
        .visible
}
