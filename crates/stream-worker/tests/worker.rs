//! stream-worker against real Redis and PostgreSQL: every entry is stored
//! once with a gapless per-user `seq`, published to its user's channel, and
//! acknowledged only after it committed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use domain::Priority;
use platform::redis::{ReadFrom, RedisSubscriber, UserFrames};
use platform::storage::{dead_letters, inbox, notifications};
use stream_worker::Worker;
use testkit::service::Running;
use testkit::{TestEnv, eventually};
use uuid::Uuid;

use testkit::{append, new_notification as notification};

/// Starts a worker in this process; it stops when dropped.
async fn start_worker(env: &TestEnv) -> Running {
    testkit::service::start::<Worker>(&env.settings()).await
}

/// The next published frame (within 5 s): its user and its JSON.
async fn next_frame(frames: &mut UserFrames) -> (String, serde_json::Value) {
    let frame = tokio::time::timeout(Duration::from_secs(5), frames.recv())
        .await
        .expect("frame within 5 s")
        .unwrap();
    (frame.user_id, serde_json::from_str(&frame.frame).unwrap())
}

/// Nothing more is published within 300 ms.
async fn no_more_frames(frames: &mut UserFrames) {
    let extra = tokio::time::timeout(Duration::from_millis(300), frames.recv()).await;
    assert!(extra.is_err(), "no other frame published: {extra:?}");
}

/// Entries delivered and not acknowledged, over all lanes.
async fn pending_total(redis: &platform::redis::RedisStore) -> u64 {
    let mut pending = 0;
    for priority in Priority::ALL {
        pending += redis.pending_count(priority).await.unwrap();
    }
    pending
}

async fn stored_count(env: &TestEnv, user: &str) -> i64 {
    platform::storage::inspect::count_for_user(&mut env.db().await, user)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_publishes_and_acks_with_gapless_seq() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    env.set("HERALD__WORKER__BATCH_SIZE", "64");
    let redis = env.redis().await;
    let subscriber = RedisSubscriber::connect(&env.settings().redis, 1_024)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("alice").await.unwrap();
    let _worker = start_worker(&env).await;

    let mut sent = Vec::new();
    for i in 0..300 {
        let user = if i % 3 == 0 { "bob" } else { "alice" };
        let priority = Priority::ALL[i % 3];
        let mut n = notification(user, i, priority);
        // Data of every JSON kind, and times with nanoseconds (PostgreSQL keeps µs).
        n.data = serde_json::json!({"k": i, "f": 1.25, "s": "é\n", "nested": {"b": [1, "x", null, true]}})
            .as_object()
            .cloned();
        n.expires_at = Some(n.created_at + chrono::Duration::nanoseconds(3_600_000_000_123));
        append(&redis, &n).await;
        sent.push(n);
    }
    let alice_sent: HashSet<Uuid> = sent
        .iter()
        .filter(|n| n.user_id == "alice")
        .map(|n| n.id)
        .collect();

    eventually("all 300 stored", Duration::from_secs(20), || async {
        (stored_count(&env, "alice").await + stored_count(&env, "bob").await == 300).then_some(())
    })
    .await;

    let mut conn = env.db().await;
    for user in ["alice", "bob"] {
        let rows = platform::storage::inspect::list_for_user(&mut conn, user)
            .await
            .unwrap();
        let seqs: Vec<i64> = rows.iter().map(|n| n.seq).collect();
        assert_eq!(
            seqs,
            (1..=rows.len() as i64).collect::<Vec<_>>(),
            "{user}: seq gapless from 1"
        );
        let state = inbox::state(&mut conn, user).await.unwrap();
        assert_eq!(
            state.unread,
            rows.len() as i64,
            "{user}: unread == unread rows"
        );
        assert_eq!(state.last_seq, rows.len() as i64);
    }
    let stored_ids: HashSet<Uuid> = platform::storage::inspect::list_for_user(&mut conn, "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(stored_ids, alice_sent, "ids sent == ids stored");

    // Every alice notification was published to her channel, none of bob's,
    // and each live frame is exactly the notification as stored (the worker
    // builds frames from what it inserted, not from a read-back).
    let stored_frames: std::collections::HashMap<Uuid, serde_json::Value> =
        platform::storage::inspect::list_for_user(&mut conn, "alice")
            .await
            .unwrap()
            .into_iter()
            .map(|n| {
                let frame = domain::ServerFrame::Notification(n.clone()).to_json();
                (n.id, serde_json::from_str(&frame).unwrap())
            })
            .collect();
    let mut published = HashSet::new();
    while published.len() < alice_sent.len() {
        let (user, value) = next_frame(&mut frames).await;
        assert_eq!(user, "alice");
        assert_eq!(value["type"], "notification");
        assert!(value["seq"].as_i64().unwrap() >= 1);
        let id = Uuid::parse_str(value["id"].as_str().unwrap()).unwrap();
        assert_eq!(value, stored_frames[&id], "live frame == stored row");
        published.insert(id);
    }
    assert_eq!(published, alice_sent);

    // Everything is acknowledged: nothing pending in any lane.
    for priority in Priority::ALL {
        assert_eq!(
            redis.pending_count(priority).await.unwrap(),
            0,
            "{priority} pending"
        );
    }
}

/// The scripts behind batch appends and round acknowledgements: every entry
/// appended in order, frames published, and more ids than one XACK takes
/// (1,000) acknowledged in every lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_entries_are_appended_published_and_acknowledged_in_one_command_each() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let subscriber = RedisSubscriber::connect(&env.settings().redis, 1_024)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("ada").await.unwrap();

    let burst: Vec<(Priority, String)> = (0..3_600)
        .map(|i| (Priority::ALL[i % 3], format!("entry {i}")))
        .collect();
    let ids = redis.append_many(&burst).await.unwrap();
    assert_eq!(ids.len(), 3_600);
    for priority in Priority::ALL {
        assert_eq!(redis.stream_len(priority).await.unwrap(), 1_200);
    }
    let reader = redis.stream_reader().await.unwrap();
    let read = reader
        .read_group("acker", ReadFrom::New, 5_000, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(read.len(), 3_600);
    let read_ids: HashSet<&str> = read.iter().map(|e| e.id.as_str()).collect();
    assert!(ids.iter().all(|id| read_ids.contains(id.as_str())));

    let published = [("ada", "one".to_owned()), ("ada", "two".to_owned())];
    redis.publish_and_ack(&published, &read).await.unwrap();
    for expected in ["one", "two"] {
        let frame = tokio::time::timeout(Duration::from_secs(5), frames.recv())
            .await
            .expect("frame within 5 s")
            .unwrap();
        assert_eq!(frame.user_id, "ada");
        assert_eq!(frame.frame.to_string(), expected);
    }
    for priority in Priority::ALL {
        assert_eq!(
            redis.pending_count(priority).await.unwrap(),
            0,
            "{priority}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_repeated_entries_are_stored_once() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "crashy");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();

    let first = notification("carol", 1, Priority::Normal);
    let second = notification("carol", 2, Priority::High);
    append(&redis, &first).await;
    append(&redis, &first).await; // a producer-side duplicate entry
    append(&redis, &second).await;

    // A worker named "crashy" read the entries and died before acking them.
    let reader = redis.stream_reader().await.unwrap();
    let delivered = reader
        .read_group("crashy", ReadFrom::New, 100, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 3);
    // ...and even stored one of them before dying.
    testkit::store_batch(
        &mut env.db().await,
        std::slice::from_ref(&first),
        Utc::now(),
    )
    .await
    .unwrap();

    // Restarted under the same name, it finishes its own pending entries.
    let _worker = start_worker(&env).await;
    eventually(
        "pending entries processed",
        Duration::from_secs(10),
        || async {
            let pending: u64 = redis.pending_count(Priority::Normal).await.unwrap()
                + redis.pending_count(Priority::High).await.unwrap();
            (pending == 0).then_some(())
        },
    )
    .await;
    let mut conn = env.db().await;
    let rows = platform::storage::inspect::list_for_user(&mut conn, "carol")
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    assert_eq!(rows.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(
        inbox::state(&mut conn, "carol").await.unwrap().unread,
        2,
        "no second unread increment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_entries_go_to_the_dead_letter_stream_and_do_not_block() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    let redis = env.redis().await;
    let _worker = start_worker(&env).await;

    let good_before = notification("dave", 1, Priority::Normal);
    let good_after = notification("dave", 2, Priority::Normal);
    append(&redis, &good_before).await;
    redis.append(Priority::Normal, "{not json").await.unwrap();
    redis
        .append(
            Priority::Normal,
            r#"{"id":"00000000-0000-7000-8000-000000000000","user_id":"bad user"}"#,
        )
        .await
        .unwrap();
    append(&redis, &good_after).await;

    eventually("good entries stored", Duration::from_secs(10), || async {
        (stored_count(&env, "dave").await == 2).then_some(())
    })
    .await;
    eventually(
        "poison entries dead-lettered and acked",
        Duration::from_secs(10),
        || async {
            let dead = redis.dead_letter_len().await.unwrap();
            let pending = redis.pending_count(Priority::Normal).await.unwrap();
            (dead == 2 && pending == 0).then_some(())
        },
    )
    .await;

    // herald_dlq_entries counts the dead letters not replayed yet.
    let metrics = std::sync::Arc::new(stream_worker::metrics::WorkerMetrics::register(
        &mut prometheus_client::registry::Registry::default(),
    ));
    let trimmer = stream_worker::trimmer::Trimmer {
        redis: redis.clone(),
        db: env.pool(),
        target_len: 100,
        interval: Duration::from_secs(1),
        prune_idle_consumers: None,
        metrics: metrics.clone(),
    };
    trimmer.count_dead_letters().await.unwrap();
    assert_eq!(metrics.dlq_entries.get(), 2);
    let mut conn = env.db().await;
    let ids = dead_letters::not_replayed_ids(&mut conn).await.unwrap();
    assert!(
        dead_letters::mark_replayed(&mut conn, ids[0], "0-1")
            .await
            .unwrap()
    );
    trimmer.count_dead_letters().await.unwrap();
    assert_eq!(metrics.dlq_entries.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_prompt_shutdown() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let n = notification("erin", 1, Priority::Low);
    append(&redis, &n).await;
    let worker = start_worker(&env).await;
    let port = worker.port;
    eventually("stored", Duration::from_secs(10), || async {
        (stored_count(&env, "erin").await == 1).then_some(())
    })
    .await;
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Shutdown ends the loop and the HTTP server promptly.
    tokio::time::timeout(Duration::from_secs(5), worker.stop())
        .await
        .expect("worker stops within 5 s")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_concurrently() {
    let env = TestEnv::without_schema().await;
    let url = secrecy::SecretString::from(env.database_url());
    let (a, b) = tokio::join!(
        platform::db::run_migrations(&url),
        platform::db::run_migrations(&url)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // One of the two applied every migration; the other, waiting on the lock, found nothing to do.
    assert!(a.is_empty() != b.is_empty(), "applied: {a:?} {b:?}");
    assert!(platform::db::run_migrations(&url).await.unwrap().is_empty());
    assert_eq!(stored_count(&env, "nobody").await, 0);
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
    eventually("first stored", Duration::from_secs(10), || async {
        (stored_count(&env, "frank").await == 1).then_some(())
    })
    .await;

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
    eventually(
        "second stored after the outage",
        Duration::from_secs(20),
        || async { (stored_count(&env, "frank").await == 2).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_retried_without_acking_and_then_drains() {
    let proxy = testkit::proxy::Proxy::start(5432).await;
    let mut env = TestEnv::new().await;
    env.database_through(&proxy);
    let _worker = start_worker(&env).await;
    let redis = env.redis().await;

    append(&redis, &notification("gus", 0, Priority::Normal)).await;
    eventually(
        "stored before the outage",
        Duration::from_secs(10),
        || async { (stored_count(&env, "gus").await == 1).then_some(()) },
    )
    .await;

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
    eventually(
        "backlog drained after the database returned",
        Duration::from_secs(30),
        || async { (stored_count(&env, "gus").await == 51).then_some(()) },
    )
    .await;
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

async fn stored_ids(env: &TestEnv) -> HashSet<Uuid> {
    platform::storage::inspect::all_ids(&mut env.db().await)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

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
    eventually("high stored", Duration::from_secs(60), || async {
        (stored_count(&env, "vip").await == 1).then_some(())
    })
    .await;
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
    eventually("low stored", Duration::from_secs(60), || async {
        (stored_count(&env, "patient").await == 1).then_some(())
    })
    .await;
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
    eventually("claimed and stored", Duration::from_secs(20), || async {
        (stored_count(&env, "hank").await == 40).then_some(())
    })
    .await;
    for priority in Priority::ALL {
        eventually("all acked", Duration::from_secs(10), || async {
            (redis.pending_count(priority).await.unwrap() == 0).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_delivered_too_often_are_dead_lettered() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "alive");
    env.set("HERALD__WORKER__MAX_DELIVERIES", "3");
    // A 1 ms claim idle time would let this process's claiming consumer take
    // entries its other consumers are still storing (each take counts as a
    // delivery); one consumer keeps the count exact.
    env.set("HERALD__WORKER__CONCURRENCY", "1");
    env.set("HERALD__WORKER__HIGH_EXPRESS", "false");
    env.set("HERALD__WORKER__CLAIM_MIN_IDLE_MS", "1");
    env.set("HERALD__WORKER__CLAIM_INTERVAL_MS", "100");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let cursed = notification("ivy", 0, Priority::Normal);
    append(&redis, &cursed).await;
    // A consumer that crashes on it every time: delivered 3 times, never acked.
    let reader = redis.stream_reader().await.unwrap();
    reader
        .read_group("crasher", ReadFrom::New, 10, Duration::from_millis(10))
        .await
        .unwrap();
    for _ in 0..2 {
        let again = reader
            .read_group("crasher", ReadFrom::OwnPending, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
    }
    let fine = notification("ivy", 1, Priority::Normal);
    append(&redis, &fine).await;

    let _worker = start_worker(&env).await;
    eventually("the fine one stored", Duration::from_secs(10), || async {
        (stored_count(&env, "ivy").await == 1).then_some(())
    })
    .await;
    let letters = eventually(
        "the cursed one dead-lettered",
        Duration::from_secs(10),
        || async {
            let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
                .await
                .unwrap();
            (!letters.is_empty()).then_some(letters)
        },
    )
    .await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("max_deliveries"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].deliveries, 4);
    assert_eq!(redis.dead_letter_len().await.unwrap(), 1);
    assert_eq!(redis.pending_count(Priority::Normal).await.unwrap(), 0);
    assert_eq!(stored_ids(&env).await, HashSet::from([fine.id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_and_a_fixed_replay_is_stored() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    let redis = env.redis().await;
    let _worker = start_worker(&env).await;
    let good: Vec<_> = (0..10)
        .map(|i| notification("jill", i, Priority::Normal))
        .collect();
    testkit::append_all(&redis, &good[..5]).await;
    redis
        .append(Priority::Normal, "{\"id\": broken")
        .await
        .unwrap();
    testkit::append_all(&redis, &good[5..]).await;

    let letters = eventually("poison dead-lettered", Duration::from_secs(10), || async {
        let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
            .await
            .unwrap();
        (letters.len() == 1).then_some(letters)
    })
    .await;
    eventually("good ones stored", Duration::from_secs(10), || async {
        (stored_count(&env, "jill").await == 10).then_some(())
    })
    .await;
    let pool = env.pool();
    // Replaying it as it is fails validation and appends nothing.
    let as_is = platform::dlq::replay(&pool, &redis, letters[0].id, None).await;
    assert!(
        matches!(as_is, Err(platform::dlq::ReplayError::InvalidPayload(_))),
        "{as_is:?}"
    );
    // The operator fixes it and replays.
    let fixed = notification("jill", 99, Priority::High);
    let entry = platform::dlq::replay(
        &pool,
        &redis,
        letters[0].id,
        Some(&serde_json::to_string(&fixed).unwrap()),
    )
    .await
    .unwrap();
    assert!(!entry.is_empty());
    eventually("fixed entry stored", Duration::from_secs(10), || async {
        (stored_count(&env, "jill").await == 11).then_some(())
    })
    .await;
    let again = platform::dlq::replay(&pool, &redis, letters[0].id, None).await;
    assert!(matches!(
        again,
        Err(platform::dlq::ReplayError::AlreadyReplayed)
    ));
    let record = platform::storage::dead_letters::get(&mut env.db().await, letters[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.replay_entry_id.as_deref(), Some(entry.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_notifications_are_stored_but_not_published_or_counted() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    let redis = env.redis().await;
    let subscriber = RedisSubscriber::connect(&env.settings().redis, 1_024)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("kim").await.unwrap();
    let _worker = start_worker(&env).await;

    let mut stale = notification("kim", 0, Priority::Normal);
    stale.created_at -= chrono::Duration::seconds(120);
    stale.expires_at = Some(stale.created_at + chrono::Duration::seconds(60));
    let mut fresh = notification("kim", 1, Priority::Normal);
    fresh.expires_at = Some(fresh.created_at + chrono::Duration::seconds(3600));
    append(&redis, &stale).await;
    append(&redis, &fresh).await;

    eventually("both stored", Duration::from_secs(10), || async {
        (stored_count(&env, "kim").await == 2).then_some(())
    })
    .await;
    let (_, value) = next_frame(&mut frames).await;
    assert_eq!(
        value["id"],
        fresh.id.to_string(),
        "only the fresh one is published"
    );
    assert_eq!(value["seq"], 1, "the expired one took no seq");
    let mut conn = env.db().await;
    assert_eq!(inbox::state(&mut conn, "kim").await.unwrap().unread, 1);
    let visible = platform::storage::inspect::list_for_user(&mut conn, "kim")
        .await
        .unwrap();
    assert_eq!(
        visible.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![fresh.id]
    );
    no_more_frames(&mut frames).await;
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
        trimmer.pass(Priority::Normal).await.unwrap(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__TRIM_INTERVAL_MS", "100");
    let redis = env.redis().await;
    append(&redis, &notification("lou", 0, Priority::High)).await;
    let worker = start_worker(&env).await;
    let port = worker.port;
    eventually("stored", Duration::from_secs(10), || async {
        (stored_count(&env, "lou").await == 1).then_some(())
    })
    .await;
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

const GREETING_EN: &str = "title = Hello\nbody = { $count ->\n    [one] You have one message\n   *[other] You have { $count } messages\n}\n";
const GREETING_PL: &str = "title = Cześć\nbody = { $count ->\n    [one] Masz jedną wiadomość\n    [few] Masz { $count } wiadomości\n   *[many] Masz { $count } wiadomości\n}\n";
const GREETING_PT: &str = "title = Olá\nbody = { $count ->\n    [one] Você tem uma mensagem\n   *[other] Você tem { $count } mensagens\n}\n";

async fn upload_greeting(env: &TestEnv, de_title: Option<&str>) -> i32 {
    let mut locales = std::collections::BTreeMap::from([
        ("en".to_owned(), GREETING_EN.to_owned()),
        ("pl".to_owned(), GREETING_PL.to_owned()),
        ("pt".to_owned(), GREETING_PT.to_owned()),
    ]);
    if let Some(title) = de_title {
        locales.insert(
            "de".into(),
            format!("title = {title}\nbody = Du hast {{ $count }} Nachrichten\n"),
        );
    }
    let source = templates::TemplateSource {
        params: std::collections::BTreeMap::from([(
            "count".to_owned(),
            templates::ParamKind::Number,
        )]),
        locales,
    };
    platform::storage::templates::create_version(&mut env.db().await, "greeting", &source)
        .await
        .unwrap()
}

fn templated(
    user: &str,
    version: i32,
    count: i64,
    locale: Option<&str>,
    category: Option<&str>,
) -> domain::NewNotification {
    let mut n = notification(user, 0, Priority::Normal);
    n.title = String::new();
    n.body = String::new();
    n.category = category.map(str::to_owned);
    n.template = Some(domain::TemplateRef {
        key: "greeting".into(),
        version,
        params: serde_json::json!({ "count": count })
            .as_object()
            .cloned()
            .unwrap(),
        locale: locale.map(str::to_owned),
    });
    n
}

async fn set_preferences(env: &TestEnv, user: &str, locale: Option<&str>, muted: &[&str]) {
    let preferences = domain::Preferences {
        locale: locale.map(str::to_owned),
        timezone: None,
        muted_categories: muted.iter().map(|c| (*c).to_owned()).collect(),
    };
    platform::storage::preferences::put(&mut env.db().await, user, &preferences)
        .await
        .unwrap();
}

async fn only_notification(env: &TestEnv, user: &str) -> (String, String, Option<String>) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use platform::storage::schema::notifications::dsl;
    dsl::notifications
        .filter(dsl::user_id.eq(user))
        .select((dsl::title, dsl::body, dsl::locale))
        .first(&mut env.db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_in_the_chosen_locale_with_fallbacks() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let version = upload_greeting(&env, None).await;
    set_preferences(&env, "polish-user", Some("pl"), &[]).await;
    set_preferences(&env, "brazilian-user", Some("pt-BR"), &[]).await;
    set_preferences(&env, "french-user", Some("fr"), &[]).await;
    let _worker = start_worker(&env).await;

    let cases = [
        ("polish-user", None, 22, "Cześć", "Masz 22 wiadomości", "pl"),
        (
            "polish-user-override",
            Some("en"),
            1,
            "Hello",
            "You have one message",
            "en",
        ),
        (
            "brazilian-user",
            None,
            1,
            "Olá",
            "Você tem uma mensagem",
            "pt",
        ),
        ("french-user", None, 5, "Hello", "You have 5 messages", "en"),
        (
            "nobody-knows",
            None,
            2,
            "Hello",
            "You have 2 messages",
            "en",
        ),
    ];
    set_preferences(&env, "polish-user-override", Some("pl"), &[]).await;
    for (user, locale, count, _, _, _) in cases {
        append(&redis, &templated(user, version, count, locale, None)).await;
    }
    for (user, _, _, title, body, used) in cases {
        eventually(
            &format!("{user} stored"),
            Duration::from_secs(10),
            || async { (stored_count(&env, user).await == 1).then_some(()) },
        )
        .await;
        let (stored_title, stored_body, stored_locale) = only_notification(&env, user).await;
        assert_eq!(
            (stored_title.as_str(), stored_body.as_str()),
            (title, body),
            "{user}"
        );
        assert_eq!(stored_locale.as_deref(), Some(used), "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_edit_reaches_a_running_worker() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    set_preferences(&env, "hans", Some("de"), &[]).await;
    let v1 = upload_greeting(&env, None).await;
    let _worker = start_worker(&env).await;
    append(&redis, &templated("hans", v1, 2, None, None)).await;
    eventually("v1 stored", Duration::from_secs(10), || async {
        (stored_count(&env, "hans").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        only_notification(&env, "hans").await.0,
        "Hello",
        "no German in v1: the default"
    );

    // An admin adds German; the running worker renders the new version at once.
    let v2 = upload_greeting(&env, Some("Hallo")).await;
    assert_eq!(v2, v1 + 1);
    append(&redis, &templated("hans", v2, 2, None, None)).await;
    eventually("v2 stored", Duration::from_secs(10), || async {
        (stored_count(&env, "hans").await == 2).then_some(())
    })
    .await;
    let titles: Vec<String> =
        platform::storage::inspect::list_for_user(&mut env.db().await, "hans")
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.title)
            .collect();
    assert_eq!(titles, ["Hello", "Hallo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_categories_are_stored_but_not_published_or_counted() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    set_preferences(&env, "mia", None, &["social"]).await;
    let subscriber = RedisSubscriber::connect(&env.settings().redis, 1_024)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("mia").await.unwrap();
    let _worker = start_worker(&env).await;

    let mut muted = notification("mia", 0, Priority::Normal);
    muted.category = Some("social".into());
    let mut loud = notification("mia", 1, Priority::Normal);
    loud.category = Some("billing".into());
    append(&redis, &muted).await;
    append(&redis, &loud).await;
    eventually("both stored", Duration::from_secs(10), || async {
        (stored_count(&env, "mia").await == 2).then_some(())
    })
    .await;

    let (_, value) = next_frame(&mut frames).await;
    assert_eq!(
        value["id"],
        loud.id.to_string(),
        "only the unmuted one is pushed"
    );
    no_more_frames(&mut frames).await;
    let mut conn = env.db().await;
    let state = inbox::state(&mut conn, "mia").await.unwrap();
    assert_eq!(state.unread, 1, "the muted one is not counted");
    assert_eq!(
        state.unread,
        platform::storage::inspect::count_unread_rows(&mut conn, "mia")
            .await
            .unwrap()
    );
    let history = platform::storage::inspect::list_for_user(&mut conn, "mia")
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "both are in the history");
    assert!(history.iter().any(|n| n.muted && n.id == muted.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_template_version_is_dead_lettered() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let _worker = start_worker(&env).await;
    append(&redis, &templated("nia", 42, 1, None, None)).await;
    let letters = eventually("dead-lettered", Duration::from_secs(10), || async {
        let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
            .await
            .unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert!(
        letters[0].error.contains("greeting"),
        "{}",
        letters[0].error
    );
    assert_eq!(stored_count(&env, "nia").await, 0);
}

/// A redelivered copy read in the same round as the original (the same id
/// twice) is refused with it: both entries become dead letters, neither is
/// stored or counted as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_copy_of_an_unrenderable_notification_in_a_round_is_dead_lettered() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let twice = templated("noa", 42, 1, None, None);
    append(&redis, &twice).await;
    append(&redis, &twice).await;
    let _worker = start_worker(&env).await;
    let letters = eventually("both dead-lettered", Duration::from_secs(10), || async {
        let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
            .await
            .unwrap();
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 2, "one dead letter per entry");
    assert!(letters.iter().all(|l| l.error.contains("greeting")));
    assert_eq!(stored_count(&env, "noa").await, 0);
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
    redis.append_many(&burst).await.unwrap();
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
            .prune_consumers(Priority::Normal, hour, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let only_other = ["someone-else".to_owned()];
    assert!(
        redis
            .prune_consumers(Priority::Normal, Duration::ZERO, &only_other)
            .await
            .unwrap()
            .is_empty()
    );
    // Idle with nothing pending: deleted; holding an entry: kept, entry and all.
    assert_eq!(
        redis
            .prune_consumers(Priority::Normal, Duration::ZERO, &[])
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

    eventually("everything stored", Duration::from_secs(30), || async {
        (stored_count(&env, "hal").await == 30).then_some(())
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_statements_are_prepared_once_per_connection() {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    for round in 0..3 {
        let batch: Vec<_> = (0..5)
            .map(|i| notification(&format!("pat{}", i % 2), round * 5 + i, Priority::Normal))
            .collect();
        testkit::store_batch(&mut conn, &batch, Utc::now())
            .await
            .unwrap();
    }
    // Kept as named statements of this session (a statement diesel does not
    // cache is closed after its one use, and prepared again the next time).
    let kept: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements \
         WHERE statement LIKE 'INSERT INTO notifications%' OR statement LIKE 'UPDATE user_inbox%'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        kept.n, 2,
        "the row insert and the counters update, once each"
    );
}

/// PostgreSQL's plan for `statement` on this connection, one line each.
async fn explain(conn: &mut diesel_async::AsyncPgConnection, statement: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let plan: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {statement}"))
        .load(conn)
        .await
        .unwrap();
    plan.into_iter().map(|l| l.line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_prepared_on_an_empty_table_still_uses_the_index_once_it_grew() {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Named {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let env = TestEnv::new().await;
    let pool = env.pool();
    let mut conn = pool.get().await.unwrap();
    // More than five executions while the table is (nearly) empty: the
    // point where PostgreSQL would settle on a generic plan.
    for round in 0..8 {
        let batch = vec![notification("ida", round, Priority::Normal)];
        testkit::store_batch(&mut conn, &batch, Utc::now())
            .await
            .unwrap();
    }
    // The table grows, with no ANALYZE to invalidate cached plans.
    diesel::sql_query(
        "INSERT INTO notifications (id, user_id, title, body, priority, created_at, seq) \
         SELECT gen_random_uuid(), 'filler-' || (g % 1000), 't', 'b', 'normal', now(), g \
         FROM generate_series(1, 50000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let check: Named = diesel::sql_query(
        "SELECT name FROM pg_prepared_statements \
         WHERE statement LIKE 'SELECT \"notifications\".\"id\" FROM \"notifications\"%'",
    )
    .get_result(&mut conn)
    .await
    .expect("the duplicate check is a cached prepared statement");
    let plan = explain(
        &mut conn,
        &format!(
            "EXECUTE {}('{{018f0000-0000-7000-8000-000000000001}}')",
            check.name
        ),
    )
    .await;
    assert!(
        plan.iter().any(|l| l.contains("Index")) && !plan.iter().any(|l| l.contains("Seq Scan")),
        "the duplicate check probes the primary key, not the whole table: {plan:#?}"
    );
}

/// A round's users are looked up through the primary key even in a table
/// that grew past its statistics (analyzed empty by the migrations, 20,000
/// rows now): with PostgreSQL's default `random_page_cost` both the lock and
/// the counter update read the whole table (a sequential scan, a hash join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rounds_users_are_found_through_the_index_in_a_table_grown_since_its_statistics() {
    use diesel_async::RunQueryDsl;

    let env = TestEnv::new().await;
    let pool = env.pool();
    let mut conn = pool.get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO user_inbox (user_id) SELECT 'user-' || g FROM generate_series(1, 20000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let users: Vec<String> = (1..=256).map(|u| format!("user-{}", u * 73)).collect();
    let list = users.join(",");
    let ones = vec!["1"; users.len()].join(",");
    for statement in [
        format!(
            "SELECT user_id, last_seq FROM user_inbox WHERE user_id = ANY('{{{list}}}'::text[]) \
             ORDER BY user_id FOR UPDATE"
        ),
        format!(
            "UPDATE user_inbox AS u SET last_seq = d.last_seq, unread_count = u.unread_count + d.added \
             FROM unnest('{{{list}}}'::text[], '{{{ones}}}'::bigint[], '{{{ones}}}'::bigint[]) \
             AS d(user_id, last_seq, added) WHERE u.user_id = d.user_id"
        ),
    ] {
        let plan = explain(&mut conn, &statement).await;
        assert!(
            plan.iter().any(|l| l.contains("user_inbox_pkey"))
                && !plan.iter().any(|l| l.contains("Seq Scan on user_inbox")),
            "{statement}\nprobes the primary key, not the whole table: {plan:#?}"
        );
    }
}

/// A round, by hand, that created `user`'s inbox row and stored `id` for
/// them, and has not committed yet.
async fn first_round_in_flight(
    env: &TestEnv,
    user: &str,
    id: Uuid,
) -> diesel_async::AsyncPgConnection {
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

    let mut first = env.db().await;
    first.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query(
        "INSERT INTO user_inbox (user_id, last_seq, unread_count, version) VALUES ($1, 1, 1, 1)",
    )
    .bind::<Text, _>(user)
    .execute(&mut first)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO notifications (id, user_id, seq, title, body, priority, created_at) \
         VALUES ($1, $2, 1, 't', 'b', 'normal', now())",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(user)
    .execute(&mut first)
    .await
    .unwrap();
    first
}

/// Waits until a session of the test's database waits for a lock.
async fn some_round_waits_for_a_lock(env: &TestEnv) {
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut observer = env.db().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(&mut observer)
        .await
        .unwrap();
        if waiting.n > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second round never waited for the first one's row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two rounds store the first notifications of a new user at once (one id
/// in both, as after a claim): the second round waits for the first one's
/// inbox row, then finds that id stored and stores only the other, next in
/// the user's sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_users_inbox_created_by_a_concurrent_round_is_locked_and_checked() {
    use diesel_async::SimpleAsyncConnection;

    let env = TestEnv::new().await;
    let shared = notification("dora", 1, Priority::Normal);
    let own = notification("dora", 2, Priority::Normal);
    let mut first = first_round_in_flight(&env, "dora", shared.id).await;

    // The second round sees no inbox row yet and waits in its insert.
    let second = tokio::spawn({
        let mut conn = env.db().await;
        let batch = vec![shared.clone(), own.clone()];
        async move { testkit::store_batch(&mut conn, &batch, Utc::now()).await }
    });
    some_round_waits_for_a_lock(&env).await;
    first.batch_execute("COMMIT").await.unwrap();

    let stored = second.await.unwrap().unwrap();
    assert_eq!(stored.duplicates, HashSet::from([shared.id]));
    assert_eq!(stored.inserted, 1);
    let mut conn = env.db().await;
    let rows = platform::storage::inspect::list_for_user(&mut conn, "dora")
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|n| (n.id, n.seq)).collect::<Vec<_>>(),
        vec![(shared.id, 1), (own.id, 2)]
    );
    let state = inbox::state(&mut conn, "dora").await.unwrap();
    assert_eq!(
        (state.last_seq, state.unread, state.version),
        (2, 2, 2),
        "the first round's row (1, 1, 1), moved on once by the second"
    );
}

/// One id under two new users in a round (a replayed payload can say any
/// user), and a concurrent round stores it under the second one first: the
/// row this round created for the first user already counted it, so the
/// round is rolled back with a retryable error (not a refusal), and tried
/// again it finds the id stored and leaves the first user's row empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_counted_in_a_new_inbox_but_stored_meanwhile_rolls_the_round_back() {
    use diesel_async::SimpleAsyncConnection;

    let env = TestEnv::new().await;
    let for_eve = notification("eve", 1, Priority::Normal);
    let for_dora = domain::NewNotification {
        user_id: "dora".into(),
        ..for_eve.clone()
    };
    let mut first = first_round_in_flight(&env, "dora", for_eve.id).await;
    let batch = vec![for_eve.clone(), for_dora];
    let second = tokio::spawn({
        let mut conn = env.db().await;
        let batch = batch.clone();
        async move { testkit::store_batch(&mut conn, &batch, Utc::now()).await }
    });
    some_round_waits_for_a_lock(&env).await;
    first.batch_execute("COMMIT").await.unwrap();

    let err = second.await.unwrap().unwrap_err();
    assert!(!err.is_refusal(), "retryable, not dead-lettered: {err}");
    let mut conn = env.db().await;
    assert_eq!(
        inbox::state(&mut conn, "eve").await.unwrap(),
        inbox::InboxState::default(),
        "rolled back"
    );

    let retried = testkit::store_batch(&mut conn, &batch, Utc::now())
        .await
        .unwrap();
    assert_eq!(retried.duplicates, HashSet::from([for_eve.id]));
    assert_eq!(retried.inserted, 0);
    assert_eq!(
        inbox::state(&mut conn, "eve").await.unwrap(),
        inbox::InboxState::default()
    );
    assert_eq!(
        platform::storage::inspect::count_unread_rows(&mut conn, "eve")
            .await
            .unwrap(),
        0
    );
    let dora = inbox::state(&mut conn, "dora").await.unwrap();
    assert_eq!((dora.last_seq, dora.unread), (1, 1));
}

/// A user's first round creates the inbox row in the state the round leaves
/// it in: expired ones take no number, muted ones a number but no unread,
/// a copy of an id is stored once; a user whose only notification expired
/// gets an empty row; a known user in the same round moves on from its own
/// state. Every count matches the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_round_creates_inboxes_in_their_final_state() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use notifications::Prepared;
    use platform::storage::schema::user_inbox;

    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    let now = Utc::now();
    let expire = |mut n: domain::NewNotification| {
        n.expires_at = Some(now - chrono::Duration::seconds(1));
        n
    };
    let known = notification("kai", 0, Priority::Normal);
    testkit::store_batch(&mut conn, std::slice::from_ref(&known), now)
        .await
        .unwrap();

    let plain = notification("ada", 1, Priority::Normal);
    let batch: Vec<Prepared> = vec![
        expire(notification("ada", 0, Priority::Normal)).into(),
        plain.clone().into(),
        Prepared {
            muted: true,
            ..notification("ada", 2, Priority::Normal).into()
        },
        plain.clone().into(),
        notification("ada", 3, Priority::Normal).into(),
        expire(notification("bo", 0, Priority::Normal)).into(),
        notification("kai", 1, Priority::Normal).into(),
    ];
    let stored = testkit::store_prepared(&mut conn, &batch, now)
        .await
        .unwrap();
    assert_eq!(stored.inserted, 6, "the copy of `plain` is stored once");
    assert_eq!(stored.expired.len(), 2);

    for (user, last_seq, unread, version) in [("ada", 3, 2, 1), ("bo", 0, 0, 0), ("kai", 2, 2, 2)] {
        // The row itself (inbox::state answers zeros for a missing one).
        let row: (i64, i64, i64) = user_inbox::table
            .find(user)
            .select((
                user_inbox::last_seq,
                user_inbox::unread_count,
                user_inbox::version,
            ))
            .first(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{user}: no inbox row: {err}"));
        assert_eq!(row, (last_seq, unread, version), "{user}");
        assert_eq!(
            row.1,
            platform::storage::inspect::count_unread_rows(&mut conn, user)
                .await
                .unwrap(),
            "{user}: unread count == unread rows"
        );
        let seqs: Vec<i64> = platform::storage::inspect::list_for_user(&mut conn, user)
            .await
            .unwrap()
            .iter()
            .map(|n| n.seq)
            .collect();
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>(), "{user}: no gap");
    }
}
