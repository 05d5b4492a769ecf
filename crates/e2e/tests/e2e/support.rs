//! Running the services as processes, and producers that keep retrying.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::processes::{ChildGuard, run_binary};
use testkit::{TestEnv, eventually, free_port};
use tokio::sync::Mutex;
use uuid::Uuid;

pub struct Service {
    pub port: u16,
    pub process: ChildGuard,
}

/// Starts a service with JSON debug logs written to `logs/<name>.log` and
/// waits until its `/readyz` answers 200.
pub async fn start(name: &str, vars: &HashMap<String, String>, logs: &Path) -> Service {
    start_as(name, &format!("{name}-e2e"), vars, logs).await
}

/// Like [`start`]; `instance` names the log file and the worker's consumer.
pub async fn start_as(
    name: &str,
    instance: &str,
    vars: &HashMap<String, String>,
    logs: &Path,
) -> Service {
    let port = free_port();
    let mut vars = vars.clone();
    vars.insert("HERALD__HTTP__PORT".into(), port.to_string());
    vars.entry("HERALD__WORKER__CONSUMER_NAME".into())
        .or_insert_with(|| instance.to_owned());
    vars.insert("HERALD__LOG__FORMAT".into(), "json".into());
    vars.entry("RUST_LOG".into())
        .or_insert_with(|| "debug".into());
    let process =
        ChildGuard::spawn_logging_to(name, &vars, &[], &logs.join(format!("{instance}.log")));
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually(
        &format!("{instance} ready"),
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                // Each poll has a deadline: a connection closed before an
                // answer (the service switching servers) must not stall it.
                let response = reqwest::Client::new()
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                (response.status() == StatusCode::OK).then_some(())
            }
        },
    )
    .await;
    Service { port, process }
}

pub fn stdout_line(output: &std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8 stdout");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what} prints exactly one line on stdout: {stdout:?}"
    );
    lines[0].to_owned()
}

/// A migrated test database, an API key, and a folder for service logs.
pub struct Stack {
    pub env: TestEnv,
    pub key: String,
    pub logs: PathBuf,
}

impl Stack {
    pub async fn new() -> Self {
        let env = TestEnv::new().await;
        let key = stdout_line(
            &run_binary(
                "ingest-api",
                env.vars(),
                &["keys", "create", "--name", "e2e"],
            ),
            "keys create",
        );
        let logs = std::env::temp_dir().join(format!("herald-e2e-{}", env.prefix));
        std::fs::create_dir_all(&logs).unwrap();
        Self { env, key, logs }
    }

    pub fn vars(&self) -> HashMap<String, String> {
        let mut vars = self.env.vars().clone();
        // Quiet enough to keep up with a burst; warnings and errors still
        // logged. `E2E_LOG=debug` (any filter) for more.
        let level = std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into());
        vars.insert("RUST_LOG".into(), level);
        vars.insert("HERALD__WORKER__CLAIM_MIN_IDLE_MS".into(), "1000".into());
        vars.insert("HERALD__WORKER__CLAIM_INTERVAL_MS".into(), "300".into());
        vars.insert("HERALD__WORKER__SHUTDOWN_TIMEOUT_MS".into(), "5000".into());
        vars
    }

    /// Ids of every stored notification, and the count of rows (to catch duplicates).
    pub async fn stored(&self) -> (HashSet<Uuid>, usize) {
        let ids = platform::storage::inspect::all_ids(&mut self.env.db().await)
            .await
            .unwrap();
        let rows = ids.len();
        (ids.into_iter().collect(), rows)
    }

    /// Waits until every accepted id is stored, then checks the promises:
    /// accepted == stored, no duplicate, every user's `seq` gapless, unread == rows.
    pub async fn assert_all_stored_once(&self, accepted: &HashSet<Uuid>, within: Duration) {
        self.assert_stored_once_for(accepted, within, USERS).await;
    }

    /// [`Self::assert_all_stored_once`] for notifications to `users` users
    /// (`user-0`..).
    pub async fn assert_stored_once_for(
        &self,
        accepted: &HashSet<Uuid>,
        within: Duration,
        users: usize,
    ) {
        eventually("every accepted notification stored", within, || async {
            let (stored, _) = self.stored().await;
            (stored.len() >= accepted.len()).then_some(())
        })
        .await;
        let (stored, rows) = self.stored().await;
        assert_eq!(rows, stored.len(), "no duplicate rows");
        let missing = accepted.difference(&stored).count();
        let unexpected = stored.difference(accepted).count();
        assert_eq!(
            (missing, unexpected),
            (0, 0),
            "ids answered 202 == ids stored"
        );
        let mut conn = self.env.db().await;
        let users: HashSet<String> = (0..users).map(|u| format!("user-{u}")).collect();
        for user in users {
            let visible = testkit::gapless_history(&mut conn, &user).await;
            let state = platform::storage::inbox::state(&mut conn, &user)
                .await
                .unwrap();
            assert_eq!(
                state.counts.unread,
                visible.len() as i64,
                "{user}: unread == unread rows"
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.logs);
        } else {
            eprintln!("service logs kept in {}", self.logs.display());
        }
    }
}

pub const USERS: usize = 100;

/// What a burst of producers achieved.
#[derive(Debug, Default)]
pub struct Burst {
    /// Ids answered 202 (first answers and idempotent replays).
    pub accepted: HashSet<Uuid>,
    pub requests: usize,
    /// Requests that failed (503, timeout, connection refused) and were retried.
    pub retried: usize,
}

/// Progress of a running burst, readable while it runs.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicUsize>);

impl Progress {
    pub fn accepted(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub async fn reached(&self, n: usize, within: Duration) {
        eventually(&format!("{n} accepted"), within, || async {
            (self.accepted() >= n).then_some(())
        })
        .await;
    }
}

/// Options of a burst.
pub struct BurstPlan {
    pub total: usize,
    pub concurrency: usize,
    /// Client timeout of one request; a timed-out request is retried with its key.
    pub timeout: Duration,
    pub deadline: Duration,
}

/// Sends `total` notifications spread over `USERS` users and all lanes, each
/// with its own Idempotency-Key, retrying failures with the same key until
/// answered 202 (as a careful producer does).
pub async fn send_burst(port: u16, api_key: String, plan: BurstPlan, progress: Progress) -> Burst {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let result = Arc::new(Mutex::new(Burst::default()));
    let url = format!("http://127.0.0.1:{port}/v1/notifications");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..plan.concurrency {
        let (http, next, result, url, key, progress) = (
            http.clone(),
            next.clone(),
            result.clone(),
            url.clone(),
            api_key.clone(),
            progress.clone(),
        );
        let (total, deadline, timeout) = (plan.total, plan.deadline, plan.timeout);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let priority = ["high", "normal", "low"][i % 3];
                let body = json!({
                    "user_id": format!("user-{}", i % USERS),
                    "title": format!("notification {i}"),
                    "body": "burst",
                    "priority": priority,
                });
                let mut attempts: u32 = 0;
                let id = loop {
                    attempts += 1;
                    assert!(
                        started.elapsed() < deadline,
                        "producer gave up on notification {i}"
                    );
                    // A producer that timed out waits longer the next time.
                    let sent = http
                        .post(&url)
                        .timeout(timeout * attempts)
                        .header("x-api-key", &key)
                        .header("idempotency-key", format!("burst-{i}"))
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == StatusCode::ACCEPTED => {
                            // The body can time out too: then retry, like any lost answer.
                            if let Ok(answer) = response.json::<Value>().await {
                                break Uuid::parse_str(answer["id"].as_str().unwrap()).unwrap();
                            }
                        }
                        Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {}
                        Ok(response) => panic!(
                            "unexpected answer {} to notification {i}",
                            response.status()
                        ),
                        Err(_) => {} // timeout or connection refused: retry with the same key
                    }
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempts.min(10))))
                        .await;
                };
                let mut result = result.lock().await;
                result.requests += attempts as usize;
                result.retried += attempts as usize - 1;
                assert!(
                    result.accepted.insert(id),
                    "two notifications answered the same id"
                );
                progress.0.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(result).ok().unwrap().into_inner()
}
