//! A round: stored once with a gapless `seq`, published, then acknowledged.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use domain::Priority;
use platform::redis::{ReadFrom, RedisSubscriber};
use platform::storage::inbox;
use testkit::{TestEnv, eventually};
use testkit::{append, new_notification as notification};
use uuid::Uuid;

use crate::support::*;

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
        let rows = testkit::gapless_history(&mut conn, user).await;
        let state = inbox::state(&mut conn, user).await.unwrap();
        assert_eq!(
            state.counts.unread,
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
    // builds frames from what it inserted, not from a read-back), plus her
    // unread count and version right after the transaction that stored it.
    let stored_frames: std::collections::HashMap<Uuid, serde_json::Value> =
        platform::storage::inspect::list_for_user(&mut conn, "alice")
            .await
            .unwrap()
            .into_iter()
            .map(|n| {
                let frame = domain::ServerFrame::Notification(n.clone().into()).to_json();
                (n.id, serde_json::from_str(&frame).unwrap())
            })
            .collect();
    let mut published = HashSet::new();
    let mut latest_counts = (0, 0);
    while published.len() < alice_sent.len() {
        let (user, mut value) = next_frame(&mut frames).await;
        assert_eq!(user, "alice");
        assert_eq!(value["type"], "notification");
        let seq = value["seq"].as_i64().unwrap();
        assert!(seq >= 1);
        let counts = value.as_object_mut().unwrap();
        let version = counts.remove("version").and_then(|v| v.as_i64());
        let unread = counts.remove("unread").and_then(|v| v.as_i64());
        let all = counts.remove("counts");
        let (Some(version), Some(unread), Some(all)) = (version, unread, all) else {
            panic!("a live frame carries unread, version and counts: {value}");
        };
        assert_eq!(all["unread"], unread, "unread is counts.unread");
        assert_eq!(all["unseen"], unread, "nothing was seen yet");
        // Every alice notification is unread and unmuted: the count after
        // the transaction that stored seq covers it.
        assert!(
            unread >= seq,
            "the count after storing seq {seq} covers it: {unread}"
        );
        latest_counts = latest_counts.max((version, unread));
        let id = Uuid::parse_str(value["id"].as_str().unwrap()).unwrap();
        assert_eq!(value, stored_frames[&id], "live frame == stored row");
        published.insert(id);
    }
    assert_eq!(published, alice_sent);
    let alice = inbox::state(&mut conn, "alice").await.unwrap();
    assert_eq!(
        latest_counts,
        (alice.version, alice.counts.unread),
        "the newest frame's counts are the stored state"
    );

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
    let ids = redis
        .append_many(domain::Shard::FIRST, &burst)
        .await
        .unwrap();
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
        inbox::state(&mut conn, "carol")
            .await
            .unwrap()
            .counts
            .unread,
        2,
        "no second unread increment"
    );
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

    wait_until_stored(&env, "kim", 2, Duration::from_secs(10)).await;
    let (_, value) = next_frame(&mut frames).await;
    assert_eq!(
        value["id"],
        fresh.id.to_string(),
        "only the fresh one is published"
    );
    assert_eq!(value["seq"], 1, "the expired one took no seq");
    let mut conn = env.db().await;
    assert_eq!(
        inbox::state(&mut conn, "kim").await.unwrap().counts.unread,
        1
    );
    let visible = platform::storage::inspect::list_for_user(&mut conn, "kim")
        .await
        .unwrap();
    assert_eq!(
        visible.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![fresh.id]
    );
    no_more_frames(&mut frames).await;
}
