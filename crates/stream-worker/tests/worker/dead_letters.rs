//! Entries that can never be stored become dead letters, and do not block the stream.

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use platform::redis::ReadFrom;
use platform::storage::dead_letters;
use testkit::{TestEnv, eventually};
use testkit::{append, new_notification as notification};

use crate::support::*;

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

    wait_until_stored(&env, "dave", 2, Duration::from_secs(10)).await;
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
    wait_until_stored(&env, "ivy", 1, Duration::from_secs(10)).await;
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

/// A worker read an entry and died before storing it; the user was erased
/// meanwhile (the entry deleted from the stream). Restarted under the same
/// name, it reads its own pending entries first and gets that one back
/// with no fields: nothing to store, nothing to dead-letter, only to
/// acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_deleted_while_pending_is_acknowledged_not_dead_lettered() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__CONSUMER_NAME", "w1");
    env.set("HERALD__WORKER__CONCURRENCY", "1");
    env.set("HERALD__WORKER__HIGH_EXPRESS", "false");
    let redis = env.redis().await;
    redis.ensure_consumer_group().await.unwrap();
    let erased = notification("gone", 0, Priority::Normal);
    append(&redis, &erased).await;
    let reader = redis.stream_reader().await.unwrap();
    let read = reader
        .read_lanes(
            "w1",
            redis.keys().shard_of("gone"),
            &Priority::ALL,
            ReadFrom::New,
            10,
            Duration::from_millis(10),
        )
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(redis.drop_user_entries("gone").await.unwrap().count, 1);
    assert_eq!(redis.pending_count(Priority::Normal).await.unwrap(), 1);
    let kept = notification("kept", 1, Priority::Normal);
    append(&redis, &kept).await;

    let _worker = start_worker(&env).await;
    wait_until_stored(&env, "kept", 1, Duration::from_secs(10)).await;
    eventually(
        "the deleted entry acknowledged",
        Duration::from_secs(10),
        || async { (redis.pending_count(Priority::Normal).await.unwrap() == 0).then_some(()) },
    )
    .await;
    let letters = dead_letters::list(&mut env.db().await, true, 10)
        .await
        .unwrap();
    assert!(letters.is_empty(), "{letters:?}");
    assert_eq!(redis.dead_letter_len().await.unwrap(), 0);
    assert_eq!(stored_ids(&env).await, HashSet::from([kept.id]));
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
    wait_until_stored(&env, "jill", 10, Duration::from_secs(10)).await;
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
    wait_until_stored(&env, "jill", 11, Duration::from_secs(10)).await;
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
async fn concurrent_replays_of_one_dead_letter_append_it_once() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let fixed = notification("kai", 1, Priority::Low);
    let id = record_dead_letter(&env, &fixed).await;
    let before = redis.stream_len(Priority::Low).await.unwrap();
    let pool = env.pool();
    let replays = (0..4).map(|_| platform::dlq::replay(&pool, &redis, id, None));
    let outcomes = futures_util::future::join_all(replays).await;
    let appended = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(appended, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| o.is_err())
            .all(|o| matches!(o, Err(platform::dlq::ReplayError::AlreadyReplayed))),
        "{outcomes:?}"
    );
    assert_eq!(redis.stream_len(Priority::Low).await.unwrap(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_replay_keeps_the_notifications_id_and_user() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let original = notification("lea", 1, Priority::Normal);
    let id = record_dead_letter(&env, &original).await;
    let before = redis.stream_len(Priority::Normal).await.unwrap();
    let pool = env.pool();
    let refused_fields = |outcome: Result<String, platform::dlq::ReplayError>| match outcome {
        Err(platform::dlq::ReplayError::InvalidPayload(domain::RequestError::InvalidFields(
            fields,
        ))) => fields.into_iter().map(|f| f.field).collect::<Vec<_>>(),
        other => panic!("expected a refused payload, got {other:?}"),
    };

    let mut other_user = original.clone();
    other_user.user_id = "mia".into();
    let outcome = replay_corrected(&pool, &redis, id, &other_user).await;
    assert_eq!(refused_fields(outcome), ["user_id"]);
    let mut other_id = original.clone();
    other_id.id = uuid::Uuid::now_v7();
    let outcome = replay_corrected(&pool, &redis, id, &other_id).await;
    assert_eq!(refused_fields(outcome), ["id"]);
    assert_eq!(redis.stream_len(Priority::Normal).await.unwrap(), before);

    // Anything else may be corrected: the letter is replayed once.
    let mut retitled = original.clone();
    retitled.title = "corrected".into();
    replay_corrected(&pool, &redis, id, &retitled)
        .await
        .unwrap();
    assert_eq!(
        redis.stream_len(Priority::Normal).await.unwrap(),
        before + 1
    );
}

/// A payload that never decoded names no notification, so its correction
/// may carry any id, but not one another user's stored notification has:
/// that would store a second notification under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_undecodable_payload_cannot_take_another_users_stored_id() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let stored = notification("lea", 1, Priority::Normal);
    testkit::store_batch(
        &mut env.db().await,
        std::slice::from_ref(&stored),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let id = record_payload(&env, Priority::Normal, "{not json").await;
    let before = redis.stream_len(Priority::Normal).await.unwrap();
    let pool = env.pool();

    let mut taken = stored.clone();
    taken.user_id = "mia".into();
    let outcome = replay_corrected(&pool, &redis, id, &taken).await;
    match outcome {
        Err(platform::dlq::ReplayError::InvalidPayload(domain::RequestError::InvalidFields(
            fields,
        ))) => {
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].field, "id");
            assert!(
                fields[0].message.contains("\"lea\""),
                "{:?}",
                fields[0].message
            );
        }
        other => panic!("expected the id refused, got {other:?}"),
    }
    assert_eq!(redis.stream_len(Priority::Normal).await.unwrap(), before);

    // A fresh id passes.
    let mut fresh = taken.clone();
    fresh.id = uuid::Uuid::now_v7();
    replay_corrected(&pool, &redis, id, &fresh).await.unwrap();
    assert_eq!(
        redis.stream_len(Priority::Normal).await.unwrap(),
        before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entry_id_in_two_shards_is_two_dead_letters_and_a_redelivery_is_one() {
    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    let keys = domain::KeySpace::sharded("x", 2);
    let shards: Vec<domain::Shard> = keys.shards().collect();
    let letter = |shard: domain::Shard, error: &str| {
        dead_letters::NewDeadLetter::new(shard, Priority::Normal, "1700000000000-0", "{}", error, 1)
    };
    // Each shard's lane hands out its own entry ids: the same id twice.
    dead_letters::record(
        &mut conn,
        &[letter(shards[0], "first"), letter(shards[1], "second")],
    )
    .await
    .unwrap();
    // A redelivery of the second shard's entry, recorded again.
    dead_letters::record(&mut conn, &[letter(shards[1], "again")])
        .await
        .unwrap();
    let mut recorded: Vec<(u16, String)> = dead_letters::list(&mut conn, true, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.shard, l.error))
        .collect();
    recorded.sort();
    assert_eq!(
        recorded,
        [(0, "first".to_owned()), (1, "second".to_owned())],
        "one record per shard's entry, the first one kept"
    );
}

/// Records `notification` as a dead letter of its lane (refused once);
/// returns the record's id.
async fn record_dead_letter(env: &TestEnv, notification: &domain::NewNotification) -> uuid::Uuid {
    let payload = serde_json::to_string(notification).unwrap();
    record_payload(env, notification.priority, &payload).await
}

/// Replays dead letter `id` with `corrected` as its payload.
async fn replay_corrected(
    pool: &platform::db::DbPool,
    redis: &platform::redis::RedisStore,
    id: uuid::Uuid,
    corrected: &domain::NewNotification,
) -> Result<String, platform::dlq::ReplayError> {
    let payload = serde_json::to_string(corrected).unwrap();
    platform::dlq::replay(pool, redis, id, Some(&payload)).await
}

/// Records `payload` (decodable or not) as the one dead letter; answers its id.
async fn record_payload(env: &TestEnv, priority: Priority, payload: &str) -> uuid::Uuid {
    let record = dead_letters::NewDeadLetter::new(
        domain::Shard::FIRST,
        priority,
        "1-0",
        payload,
        "refused",
        1,
    );
    dead_letters::record(&mut env.db().await, &[record])
        .await
        .unwrap();
    dead_letters::list(&mut env.db().await, false, 1)
        .await
        .unwrap()[0]
        .id
}
