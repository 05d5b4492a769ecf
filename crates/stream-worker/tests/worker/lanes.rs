//! Priority lanes, claiming a dead consumer's entries, and safe trimming.

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use platform::redis::ReadFrom;
use testkit::{TestEnv, eventually};
use testkit::{append, new_notification as notification};
use uuid::Uuid;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_is_served_before_a_low_backlog_drains() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "lanes");
    env.set("HERALD__WORKER__BATCH_SIZE", "256");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let backlog: Vec<_> = (0..10_000)
        .map(|i| notification(&format!("low-{}", i % 50), i, Priority::Low))
        .collect();
    testkit::append_all(&redis, &backlog).await;

    let _worker = start_worker(&env).await;
    // Posted after the whole low backlog.
    let urgent = notification("vip", 0, Priority::High);
    append(&redis, &urgent).await;
    wait_until_stored(&env, "vip", 1, Duration::from_secs(60)).await;
    let low_stored_when_high_landed = stored_ids(&env).await.len() - 1;
    assert!(
        low_stored_when_high_landed < backlog.len(),
        "high was stored after the whole low backlog ({low_stored_when_high_landed} low stored)"
    );
    eprintln!(
        "low stored before the high one: {low_stored_when_high_landed} of {}",
        backlog.len()
    );
    // And the backlog still drains completely.
    eventually("low backlog drained", Duration::from_secs(120), || async {
        (stored_ids(&env).await.len() == backlog.len() + 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_is_not_starved_by_a_high_backlog() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "lanes");
    env.set("HERALD__WORKER__BATCH_SIZE", "100");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let highs: Vec<_> = (0..5_000)
        .map(|i| notification("busy", i, Priority::High))
        .collect();
    testkit::append_all(&redis, &highs).await;
    let low = notification("patient", 0, Priority::Low);
    append(&redis, &low).await;

    let _worker = start_worker(&env).await;
    wait_until_stored(&env, "patient", 1, Duration::from_secs(60)).await;
    let highs_before = stored_count(&env, "busy").await;
    assert!(
        highs_before < 5_000,
        "low waited for the whole high backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_dead_consumer_are_claimed() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "alive");
    env.set("HERALD__WORKER__CLAIM_MIN_IDLE_MS", "300");
    env.set("HERALD__WORKER__CLAIM_INTERVAL_MS", "100");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let sent: Vec<_> = (0..40)
        .map(|i| notification("hank", i, Priority::ALL[i % 3]))
        .collect();
    testkit::append_all(&redis, &sent).await;
    // "dead" took everything and died without acking.
    let reader = redis.stream_reader().await.unwrap();
    let taken = reader
        .read_group("dead", ReadFrom::New, 100, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(taken.len(), 40);

    let _worker = start_worker(&env).await;
    wait_until_stored(&env, "hank", 40, Duration::from_secs(20)).await;
    for priority in Priority::ALL {
        eventually("all acked", Duration::from_secs(10), || async {
            (redis.pending_count(priority).await.unwrap() == 0).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_never_deletes_what_the_group_still_needs() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    env.set("HERALD__WORKER__CLAIM_MIN_IDLE_MS", "200");
    env.set("HERALD__WORKER__CLAIM_INTERVAL_MS", "100");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let trimmer = stream_worker::trimmer::Trimmer {
        redis: redis.clone(),
        db: env.pool(),
        target_len: 100,
        interval: Duration::from_millis(50),
        prune_idle_consumers: None,
        metrics: std::sync::Arc::new(stream_worker::metrics::WorkerMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
        )),
    };
    // A backlog ten times the bound: 500 delivered to a consumer that died, 500 never delivered.
    let backlog: Vec<_> = (0..1_000)
        .map(|i| notification(&format!("t{}", i % 7), i, Priority::Normal))
        .collect();
    testkit::append_all(&redis, &backlog).await;
    let reader = redis.stream_reader().await.unwrap();
    let taken = reader
        .read_group("dead", ReadFrom::New, 500, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(taken.len(), 500);

    assert_eq!(
        trimmer.pass(Priority::Normal).await.unwrap().trimmed,
        0,
        "nothing acked yet: nothing trimmed"
    );
    assert_eq!(redis.stream_len(Priority::Normal).await.unwrap(), 1_000);

    // The trimmer keeps running while the worker claims and drains the backlog.
    let stop = tokio_util::sync::CancellationToken::new();
    let trimming = tokio::spawn(trimmer.run(stop.clone()));
    let _worker = start_worker(&env).await;
    eventually("backlog stored", Duration::from_secs(60), || async {
        (stored_ids(&env).await.len() == backlog.len()).then_some(())
    })
    .await;
    let expected: HashSet<Uuid> = backlog.iter().map(|n| n.id).collect();
    assert_eq!(
        stored_ids(&env).await,
        expected,
        "no entry lost to trimming"
    );
    eventually(
        "stream trimmed to the bound",
        Duration::from_secs(10),
        || async { (redis.stream_len(Priority::Normal).await.unwrap() <= 100).then_some(()) },
    )
    .await;
    stop.cancel();
    trimming.await.unwrap();
}

/// An idle worker waits with one blocking read over all lanes; when a burst
/// lands in every lane at once, that read still takes at most one batch
/// (XREADGROUP's COUNT applies per stream, so the batch is split).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_over_all_lanes_stays_within_the_batch() {
    const BATCH: usize = 30;
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "bursty");
    env.set("HERALD__WORKER__BATCH_SIZE", BATCH.to_string());
    env.set("HERALD__WORKER__BLOCK_MS", "50");
    env.set("HERALD__HTTP__PORT", "0");
    let redis = env.redis().await;
    let worker = start_worker(&env).await;
    let metrics_port = worker.port;
    // Let every consumer find the lanes empty and block on all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let burst: Vec<(Priority, String)> = (0..300)
        .map(|i| {
            let priority = Priority::ALL[i % 3];
            let n = notification(&format!("u{}", i % 7), i, priority);
            (priority, serde_json::to_string(&n).unwrap())
        })
        .collect();
    redis
        .append_many(domain::Shard::FIRST, &burst)
        .await
        .unwrap();
    eventually("the burst stored", Duration::from_secs(20), || async {
        let total: i64 = platform::storage::inspect::all_ids(&mut env.db().await)
            .await
            .unwrap()
            .len() as i64;
        (total == 300).then_some(())
    })
    .await;

    let text = testkit::scrape_metrics(metrics_port).await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in /metrics:\n{text}"))
    };
    // Lane by lane a round holds at most 30 * (1 + 0.2 + 0.1) = 39 entries;
    // a read over all lanes asking 30 of each could return 90.
    let rounds = value("herald_worker_batch_size_entries_count");
    let within = value("herald_worker_batch_size_entries_bucket{le=\"64.0\"}");
    assert!(
        rounds >= 8.0,
        "300 entries in rounds of at most 39: {rounds}"
    );
    assert_eq!(within, rounds, "every round held at most 64 entries");
}
