//! Fault tests: each ends by checking that the ids answered 202 are exactly
//! the rows in PostgreSQL, once each, with gapless sequences and exact
//! unread counts. Outages use the tests' own servers (a private redis-server,
//! a TCP proxy in front of PostgreSQL), never the machine's shared ones.

use std::time::{Duration, Instant};

use testkit::processes::{RedisServer, run_binary};
use testkit::proxy::Proxy;

use crate::support::{BurstPlan, Progress, Stack, send_burst, start, start_as, stdout_line};

fn plan(total: usize) -> BurstPlan {
    BurstPlan {
        total,
        concurrency: 32,
        timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(240),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_one_of_two_workers_during_a_burst() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let mut victim = start_as("stream-worker", "worker-a", &vars, &stack.logs).await;
    let _survivor = start_as("stream-worker", "worker-b", &vars, &stack.logs).await;

    let started = Instant::now();
    let progress = Progress::default();
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        plan(20_000),
        progress.clone(),
    ));
    progress.reached(6_000, Duration::from_secs(120)).await;
    victim.process.kill();
    let burst = burst.await.unwrap();
    assert_eq!(burst.accepted.len(), 20_000);
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;
    eprintln!(
        "kill -9 of one of two workers: 20,000 notifications, {} retried requests, all stored once in {:?}",
        burst.retried,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unreachable_for_10_seconds_during_a_burst() {
    let mut stack = Stack::new().await;
    let proxy = Proxy::start(5432).await;
    // ingest-api reaches PostgreSQL directly; only the worker goes through the proxy.
    let ingest = start("ingest-api", &stack.vars(), &stack.logs).await;
    stack.env.database_through(&proxy);
    let _worker = start("stream-worker", &stack.vars(), &stack.logs).await;

    let started = Instant::now();
    let progress = Progress::default();
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        plan(6_000),
        progress.clone(),
    ));
    progress.reached(1_500, Duration::from_secs(60)).await;
    proxy.cut();
    let (during, _) = stack.stored().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after_outage, _) = stack.stored().await;
    assert_eq!(
        during.len(),
        after_outage.len(),
        "nothing stored while PostgreSQL was unreachable"
    );
    proxy.restore();
    let burst = burst.await.unwrap();
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;
    eprintln!(
        "PostgreSQL cut for 10 s: 6,000 notifications all stored once in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_restarted_repeatedly_while_producers_send() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let started = Instant::now();
    let progress = Progress::default();
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        plan(8_000),
        progress.clone(),
    ));
    // Every restart gets a new consumer name, as a new pod would.
    let mut worker = start_as("stream-worker", "worker-0", &vars, &stack.logs).await;
    for round in 1..=6 {
        progress
            .reached(round * 1_000, Duration::from_secs(120))
            .await;
        if round % 2 == 0 {
            let status = worker
                .process
                .terminate(Duration::from_secs(15))
                .expect("exits after SIGTERM");
            assert!(status.success(), "graceful shutdown exits 0, got {status}");
        } else {
            worker.process.kill();
        }
        worker = start_as(
            "stream-worker",
            &format!("worker-{round}"),
            &vars,
            &stack.logs,
        )
        .await;
    }
    let burst = burst.await.unwrap();
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;
    eprintln!(
        "6 worker restarts (3 SIGTERM, 3 SIGKILL): 8,000 notifications all stored once in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_retrying_after_timeouts_create_nothing_twice() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let _worker = start("stream-worker", &vars, &stack.logs).await;
    // A client timeout so short that many requests time out after the server
    // accepted them; the producer retries each with the same key.
    let progress = Progress::default();
    let burst = send_burst(
        ingest.port,
        stack.key.clone(),
        BurstPlan {
            total: 2_000,
            concurrency: 16,
            timeout: Duration::from_millis(5),
            deadline: Duration::from_secs(120),
        },
        progress,
    )
    .await;
    assert!(
        burst.retried > 0,
        "some requests timed out and were retried"
    );
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(60))
        .await;
    eprintln!(
        "idempotent retries: 2,000 notifications, {} retried requests, stored once each",
        burst.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_with_aof_killed_9_during_a_burst_loses_nothing_answered_202() {
    let stack = Stack::new().await;
    let mut redis = RedisServer::start_with_aof().await;
    let mut vars = stack.vars();
    vars.insert("HERALD__REDIS__URL".into(), redis.url());
    vars.insert("HERALD__REDIS__COMMAND_TIMEOUT_MS".into(), "1000".into());
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let _worker = start("stream-worker", &vars, &stack.logs).await;

    let started = Instant::now();
    let progress = Progress::default();
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        plan(5_000),
        progress.clone(),
    ));
    progress.reached(2_000, Duration::from_secs(60)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().await;
    let burst = burst.await.unwrap();
    assert!(
        burst.retried > 0,
        "requests failed while Redis was down and were retried"
    );
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;
    eprintln!(
        "Redis (appendfsync always) kill -9 + restart: 5,000 notifications, {} retried, all stored once in {:?}",
        burst.retried,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_entry_is_dead_lettered_and_replayed_fixed_with_the_cli() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let _worker = start("stream-worker", &vars, &stack.logs).await;
    let redis = stack.env.redis().await;
    let good: Vec<_> = (0..20)
        .map(|i| testkit::new_notification(&format!("user-{}", i % 3), i, domain::Priority::Normal))
        .collect();
    testkit::append_all(&redis, &good[..10]).await;
    redis
        .append(domain::Priority::Normal, "not json at all")
        .await
        .unwrap();
    testkit::append_all(&redis, &good[10..]).await;
    redis
        .append(domain::Priority::Low, r#"{"still":"broken"}"#)
        .await
        .unwrap();

    let accepted = good.iter().map(|n| n.id).collect();
    stack
        .assert_all_stored_once(&accepted, Duration::from_secs(30))
        .await;
    let listed = testkit::eventually("dead letters listed", Duration::from_secs(10), || async {
        let output = run_binary("stream-worker", &vars, &["dlq", "list"]);
        let stdout = String::from_utf8(output.stdout).unwrap();
        (stdout.lines().count() == 2).then_some(stdout)
    })
    .await;
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let letter = letters
        .iter()
        .find(|l| l["payload"] == "not json at all")
        .unwrap();
    let other = letters
        .iter()
        .find(|l| l["payload"] != "not json at all")
        .unwrap();
    let id = letter["id"].as_str().unwrap();

    // As it is, it cannot be replayed; fixed, it is stored.
    assert!(
        !run_binary("stream-worker", &vars, &["dlq", "replay", id])
            .status
            .success()
    );
    let fixed = testkit::new_notification("user-0", 99, domain::Priority::High);
    let file = stack.logs.join("fixed.json");
    std::fs::write(&file, serde_json::to_string(&fixed).unwrap()).unwrap();
    let entry = stdout_line(
        &run_binary(
            "stream-worker",
            &vars,
            &[
                "dlq",
                "replay",
                id,
                "--payload-file",
                file.to_str().unwrap(),
            ],
        ),
        "dlq replay",
    );
    assert!(entry.contains('-'), "prints the new entry id: {entry}");
    let mut all = accepted.clone();
    all.insert(fixed.id);
    stack
        .assert_all_stored_once(&all, Duration::from_secs(30))
        .await;
    // `replay --all` reports the one still broken and fails, appending nothing.
    let output = run_binary("stream-worker", &vars, &["dlq", "replay", "--all"]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["replayed"], serde_json::json!([]));
    assert_eq!(report["failed"][0]["id"], other["id"]);
    let output = run_binary("stream-worker", &vars, &["dlq", "list"]);
    let left = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        left.lines().count(),
        1,
        "only the broken one is left to replay"
    );
    stack
        .assert_all_stored_once(&all, Duration::from_secs(5))
        .await;
}
