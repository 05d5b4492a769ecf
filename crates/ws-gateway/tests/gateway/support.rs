//! A gateway in this process, and a worker beside it when a test needs
//! notifications stored and published for real.

use std::time::Duration;

use platform::redis::RedisStore;
use serde_json::Value;
use testkit::TestEnv;
use testkit::service::Running;
use testkit::ws::WsClient;
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
