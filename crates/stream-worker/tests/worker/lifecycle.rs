//! Start, health, metrics, outages of Redis and PostgreSQL, and leaving the group at shutdown.

use std::time::Duration;

use domain::Priority;
use platform::redis::ReadFrom;
use platform::storage::dead_letters;
use stream_worker::Worker;
use testkit::{TestEnv, eventually};
use testkit::{append, new_notification as notification};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_prompt_shutdown() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let n = notification("erin", 1, Priority::Low);
    append(&redis, &n).await;
    let worker = start_worker(&env).await;
    let port = worker.port;
    wait_until_stored(&env, "erin", 1, Duration::from_secs(10)).await;
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Its OpenAPI document describes exactly these operations endpoints.
    let (spec, operations) = testkit::openapi(&format!("http://127.0.0.1:{port}")).await;
    assert_eq!(
        operations.keys().collect::<Vec<_>>(),
        ["GET /healthz", "GET /metrics", "GET /readyz"]
    );
    assert!(spec["paths"]["/readyz"]["get"]["responses"]["503"].is_object());

    // Shutdown ends the loop and the HTTP server promptly.
    tokio::time::timeout(Duration::from_secs(5), worker.stop())
        .await
        .expect("worker stops within 5 s")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_concurrently() {
    let env = TestEnv::without_schema().await;
    let database = env.settings().database;
    let (a, b) = tokio::join!(
        platform::db::run_migrations(&database),
        platform::db::run_migrations(&database)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // One of the two applied every migration; the other, waiting on the lock, found nothing to do.
    assert!(a.is_empty() != b.is_empty(), "applied: {a:?} {b:?}");
    assert!(
        platform::db::run_migrations(&database)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stored_count(&env, "nobody").await, 0);
    // The migration lock ended with its transaction: nothing is left held
    // (and nothing waits) on the server.
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let held: Held = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .get_result(&mut env.db().await)
    .await
    .unwrap();
    assert_eq!(held.n, 0, "advisory locks left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_waits_for_redis_at_start_and_recovers_after_an_outage() {
    let mut redis_server = testkit::processes::RedisServer::reserve();
    let mut env = TestEnv::new().await;
    env.set("HERALD__REDIS__URL", redis_server.url());
    let settings = env.settings();
    // Nothing answers yet: the worker keeps retrying instead of exiting.
    let building =
        tokio::spawn(async move { testkit::service::try_start::<Worker>(&settings).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !building.is_finished(),
        "worker must wait for Redis, not give up"
    );
    redis_server.restart().await;
    let _worker = tokio::time::timeout(Duration::from_secs(15), building)
        .await
        .expect("worker connects once Redis is up")
        .unwrap()
        .unwrap();

    let redis = env.redis().await;
    append(&redis, &notification("frank", 1, Priority::Normal)).await;
    wait_until_stored(&env, "frank", 1, Duration::from_secs(10)).await;

    // Redis dies (losing everything: it keeps nothing) and comes back.
    redis_server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis_server.restart().await;
    // The group is gone with the data: the worker must recreate it by itself.
    let producer = env.redis().await;
    eventually(
        "worker recreated its consumer group",
        Duration::from_secs(20),
        || async { producer.pending_count(Priority::Normal).await.ok() },
    )
    .await;
    append(&producer, &notification("frank", 2, Priority::Normal)).await;
    wait_until_stored(&env, "frank", 2, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_retried_without_acking_and_then_drains() {
    let proxy = testkit::proxy::Proxy::start(5432).await;
    let mut env = TestEnv::new().await;
    env.database_through(&proxy);
    let _worker = start_worker(&env).await;
    let redis = env.redis().await;

    append(&redis, &notification("gus", 0, Priority::Normal)).await;
    wait_until_stored(&env, "gus", 1, Duration::from_secs(10)).await;

    proxy.cut();
    for i in 1..=50 {
        append(&redis, &notification("gus", i, Priority::ALL[i % 3])).await;
    }
    // While the database is away, the batch stays pending: nothing acked, nothing lost.
    eventually(
        "batch delivered and held pending",
        Duration::from_secs(10),
        || async { (pending_total(&redis).await > 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored_count(&env, "gus").await,
        1,
        "nothing stored while the database is cut off"
    );

    proxy.restore();
    wait_until_stored(&env, "gus", 51, Duration::from_secs(30)).await;
    let rows = platform::storage::inspect::list_for_user(&mut env.db().await, "gus")
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|n| n.seq).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
    for priority in Priority::ALL {
        eventually("all acked", Duration::from_secs(10), || async {
            (redis.pending_count(priority).await.unwrap() == 0).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__TRIM_INTERVAL_MS", "100");
    let redis = env.redis().await;
    append(&redis, &notification("lou", 0, Priority::High)).await;
    let worker = start_worker(&env).await;
    let port = worker.port;
    wait_until_stored(&env, "lou", 1, Duration::from_secs(10)).await;
    let text = eventually(
        "metrics show the stored entry",
        Duration::from_secs(10),
        || async {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(r#"herald_worker_entries_total{priority="high",outcome="stored"} 1"#)
                .then_some(text)
        },
    )
    .await;
    for name in [
        "herald_worker_batches_total",
        "herald_worker_batch_size_entries",
        "herald_worker_batch_duration_seconds",
        "herald_worker_ingest_to_store_seconds",
        "herald_worker_retries_total",
        "herald_worker_dead_letters_total",
        "herald_worker_claimed_entries_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Per-lane stream gauges, refreshed by the trimmer's pass.
    let text = eventually("stream gauges", Duration::from_secs(10), || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(r#"herald_stream_pending_entries{priority="high"} 0"#)
            .then_some(text)
    })
    .await;
    for lane in ["high", "normal", "low"] {
        for gauge in [
            "herald_stream_pending_entries",
            "herald_stream_lag_entries",
            "herald_stream_length_entries",
        ] {
            let series = format!(r#"{gauge}{{priority="{lane}"}}"#);
            assert!(text.contains(&series), "{series} missing from /metrics");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_with_nothing_pending_leave_the_group_and_busy_ones_stay() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "pod-a");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let reader = redis.stream_reader().await.unwrap();
    // `ghost` read an entry and acknowledged it; `busy` holds one unacknowledged.
    append(&redis, &notification("zoe", 1, Priority::Normal)).await;
    let done = reader
        .read_group("ghost", ReadFrom::New, 10, Duration::from_millis(10))
        .await
        .unwrap();
    redis.ack(&done).await.unwrap();
    append(&redis, &notification("zoe", 2, Priority::Normal)).await;
    let taken = reader
        .read_group("busy", ReadFrom::New, 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!((done.len(), taken.len()), (1, 1));
    let mut names = redis.consumer_names(Priority::Normal).await.unwrap();
    names.sort();
    assert_eq!(names, ["busy", "ghost"]);

    // Not idle long enough, or not named: kept.
    let hour = Duration::from_secs(3600);
    assert!(
        redis
            .prune_consumers(Priority::Normal.into(), hour, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let only_other = ["someone-else".to_owned()];
    assert!(
        redis
            .prune_consumers(Priority::Normal.into(), Duration::ZERO, &only_other)
            .await
            .unwrap()
            .is_empty()
    );
    // Idle with nothing pending: deleted; holding an entry: kept, entry and all.
    assert_eq!(
        redis
            .prune_consumers(Priority::Normal.into(), Duration::ZERO, &[])
            .await
            .unwrap(),
        ["ghost"]
    );
    assert_eq!(
        redis.consumer_names(Priority::Normal).await.unwrap(),
        ["busy"]
    );
    assert_eq!(redis.pending_count(Priority::Normal).await.unwrap(), 1);

    // A worker that stops cleanly takes its consumers (pod-a, pod-a-1,
    // pod-a-high) out of the group; `busy` is not its own and stays (its
    // entry is younger than claim_min_idle, so nobody claimed it).
    let worker = start_worker(&env).await;
    eventually(
        "the worker joined the group",
        Duration::from_secs(5),
        || async {
            let names = redis.consumer_names(Priority::High).await.unwrap();
            (names.len() >= 2).then_some(())
        },
    )
    .await;
    worker.stop().await.unwrap();
    for priority in Priority::ALL {
        let left: Vec<String> = redis
            .consumer_names(priority)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("pod-a"))
            .collect();
        assert!(left.is_empty(), "{priority}: {left:?} still in the group");
    }
    assert_eq!(
        redis.consumer_names(Priority::Normal).await.unwrap(),
        ["busy"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_retrying_through_a_long_outage_is_not_claimed_away_or_dead_lettered() {
    let proxy = testkit::proxy::Proxy::start(5432).await;
    let mut env = TestEnv::new().await;
    env.database_through(&proxy);
    // The outage lasts many times the claim idle time, and three deliveries
    // would already make an entry a dead letter.
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    env.set("HERALD__WORKER__CLAIM_MIN_IDLE_MS", "500");
    env.set("HERALD__WORKER__CLAIM_INTERVAL_MS", "100");
    env.set("HERALD__WORKER__MAX_DELIVERIES", "3");
    let _worker = start_worker(&env).await;
    let _second = {
        let mut other = env.settings();
        other.worker.consumer_name = "w2".into();
        testkit::service::start::<Worker>(&other).await
    };
    let redis = env.redis().await;

    proxy.cut();
    for i in 1..=30 {
        append(&redis, &notification("hal", i, Priority::ALL[i % 3])).await;
    }
    eventually("rounds in hand", Duration::from_secs(10), || async {
        (pending_total(&redis).await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.restore();

    wait_until_stored(&env, "hal", 30, Duration::from_secs(30)).await;
    let mut conn = env.db().await;
    assert_eq!(
        dead_letters::count_not_replayed(&mut conn).await.unwrap(),
        0,
        "no entry became a dead letter by being claimed back and forth"
    );
    assert_eq!(redis.dead_letter_len().await.unwrap(), 0);
    let rows = platform::storage::inspect::list_for_user(&mut conn, "hal")
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|n| n.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
}
