//! A service started while PostgreSQL and Redis are down is alive from the
//! start (its port answers `/healthz` 200, `/readyz` 503), becomes ready by
//! itself when they come up, and stops at once on SIGTERM while it waits:
//! on Kubernetes, unready during an outage, never crash-looping.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::processes::{ChildGuard, RedisServer, run_binary};
use testkit::proxy::Proxy;
use testkit::{eventually, free_port};

use crate::support::Stack;

const SERVICES: [&str; 3] = ["ingest-api", "stream-worker", "ws-gateway"];

async fn status(port: u16, path: &str) -> Option<(StatusCode, Value)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

fn spawn(name: &str, vars: &HashMap<String, String>) -> (ChildGuard, u16) {
    let port = free_port();
    let mut vars = vars.clone();
    vars.insert("HERALD__HTTP__PORT".into(), port.to_string());
    vars.insert(
        "HERALD__WORKER__CONSUMER_NAME".into(),
        format!("{name}-startup"),
    );
    (ChildGuard::spawn(name, &vars, &[]), port)
}

async fn notify(port: u16, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/notifications"))
        .header("x-api-key", key)
        .json(&serde_json::json!({"user_id": "alice", "title": "t", "body": "b"}))
        .send()
        .await
        .unwrap()
}

/// Alive but not ready: the answer of a service still waiting.
async fn alive_not_ready(name: &str, port: u16) {
    let (health, _) = eventually(
        &format!("{name} answers /healthz while its dependencies are down"),
        Duration::from_secs(10),
        || async move { status(port, "/healthz").await },
    )
    .await;
    assert_eq!(health, StatusCode::OK, "{name}");
    let (ready, body) = status(port, "/readyz").await.unwrap();
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{name}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_during_an_outage_are_alive_then_ready_by_themselves() {
    let stack = Stack::new().await;
    let proxy = Proxy::start(5432).await;
    proxy.cut();
    let mut redis = RedisServer::reserve();
    let mut vars = stack.vars();
    let through_proxy = stack
        .env
        .database_url()
        .replace(":5432/", &format!(":{}/", proxy.port));
    vars.insert("HERALD__DATABASE__URL".into(), through_proxy);
    vars.insert("HERALD__DATABASE__CONNECT_TIMEOUT_MS".into(), "1000".into());
    vars.insert("HERALD__REDIS__URL".into(), redis.url());

    // The container healthcheck (`<binary> healthcheck`) asks /readyz of
    // the port its settings name.
    let healthcheck = |name: &str, port: u16| {
        let mut vars = vars.clone();
        vars.insert("HERALD__HTTP__PORT".into(), port.to_string());
        run_binary(name, &vars, &["healthcheck"]).status.success()
    };
    let mut running = Vec::new();
    for name in SERVICES {
        let (child, port) = spawn(name, &vars);
        alive_not_ready(name, port).await;
        assert!(!healthcheck(name, port), "{name}: unhealthy while starting");
        running.push((name, child, port));
    }
    // Other requests are refused cleanly meanwhile, never left hanging.
    let (_, _, ingest_port) = running[0];
    let refused = notify(ingest_port, &stack.key).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );

    proxy.restore();
    redis.restart().await;
    for (name, _, port) in &running {
        eventually(
            &format!("{name} ready once PostgreSQL and Redis answer"),
            Duration::from_secs(30),
            || async move {
                let (ready, _) = status(*port, "/readyz").await?;
                (ready == StatusCode::OK).then_some(())
            },
        )
        .await;
    }
    for (name, _, port) in &running {
        assert!(healthcheck(name, *port), "{name}: healthy once ready");
    }
    // And it works: a notification goes through.
    let accepted = notify(ingest_port, &stack.key).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_for_dependencies_exits_at_once() {
    let stack = Stack::new().await;
    let mut vars = stack.vars();
    // Nothing listens on either port.
    vars.insert(
        "HERALD__DATABASE__URL".into(),
        format!("postgres://postgres@127.0.0.1:{}/herald", free_port()),
    );
    vars.insert(
        "HERALD__REDIS__URL".into(),
        format!("redis://127.0.0.1:{}", free_port()),
    );
    for name in SERVICES {
        let (mut child, port) = spawn(name, &vars);
        alive_not_ready(name, port).await;
        let exit = child
            .terminate(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{name} still runs 2 s after SIGTERM"));
        assert!(
            exit.success(),
            "{name} exits 0 on SIGTERM while starting: {exit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_another_shard_count_than_its_deployment_refuses_to_start() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    // The deployment runs with one shard: its first service records it.
    let (_worker, port) = spawn("stream-worker", &vars);
    eventually(
        "the first worker ready",
        Duration::from_secs(30),
        || async move {
            let (ready, _) = status(port, "/readyz").await?;
            (ready == StatusCode::OK).then_some(())
        },
    )
    .await;
    let mut eight = vars.clone();
    eight.insert("HERALD__REDIS__STREAM_SHARDS".into(), "8".into());
    for name in SERVICES {
        let log = stack.logs.join(format!("{name}-eight-shards.log"));
        let mut vars = eight.clone();
        vars.insert("HERALD__HTTP__PORT".into(), free_port().to_string());
        vars.insert("HERALD__LOG__FORMAT".into(), "text".into());
        let mut child = ChildGuard::spawn_logging_to(name, &vars, &[], &log);
        let exit = child
            .wait_for_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{name} with 8 shards still runs after 30 s"));
        assert!(!exit.success(), "{name} exits with an error");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains("redis.stream_shards is 8, but this deployment's services use 1"),
            "{name}: {logged}"
        );
    }
    // A replay from the command line would append where no worker reads.
    let replay = run_binary("stream-worker", &eight, &["dlq", "replay", "--all"]);
    assert!(!replay.status.success(), "dlq replay with 8 shards refused");
    let said = String::from_utf8_lossy(&replay.stderr);
    assert!(
        said.contains("redis.stream_shards is 8, but this deployment's services use 1"),
        "{said}"
    );
}
