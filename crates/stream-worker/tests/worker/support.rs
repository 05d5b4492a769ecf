//! A worker in the test process, and what the tests read back: frames published, entries pending, rows stored.

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use platform::redis::UserFrames;
use stream_worker::Worker;
use testkit::TestEnv;
use testkit::service::Running;
use uuid::Uuid;

/// Starts a worker in this process; it stops when dropped.
pub async fn start_worker(env: &TestEnv) -> Running {
    testkit::service::start::<Worker>(&env.settings()).await
}

/// The next published frame (within 5 s): its user and its JSON.
pub async fn next_frame(frames: &mut UserFrames) -> (String, serde_json::Value) {
    let frame = tokio::time::timeout(Duration::from_secs(5), frames.recv())
        .await
        .expect("frame within 5 s")
        .unwrap();
    (frame.user_id, serde_json::from_str(&frame.frame).unwrap())
}

/// Nothing more is published within 300 ms.
pub async fn no_more_frames(frames: &mut UserFrames) {
    let extra = tokio::time::timeout(Duration::from_millis(300), frames.recv()).await;
    assert!(extra.is_err(), "no other frame published: {extra:?}");
}

/// Entries delivered and not acknowledged, over all lanes.
pub async fn pending_total(redis: &platform::redis::RedisStore) -> u64 {
    let mut pending = 0;
    for priority in Priority::ALL {
        pending += redis.pending_count(priority).await.unwrap();
    }
    pending
}

pub async fn stored_count(env: &TestEnv, user: &str) -> i64 {
    platform::storage::inspect::count_for_user(&mut env.db().await, user)
        .await
        .unwrap()
}

/// Waits (at most `within`) until `user` has `n` notifications stored.
pub async fn wait_until_stored(env: &TestEnv, user: &str, n: i64, within: Duration) {
    testkit::eventually(&format!("{n} stored for {user}"), within, || async {
        (stored_count(env, user).await == n).then_some(())
    })
    .await;
}

pub async fn stored_ids(env: &TestEnv) -> HashSet<Uuid> {
    platform::storage::inspect::all_ids(&mut env.db().await)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Sequential and index scans of `notifications` in the connection's
/// current transaction: `(seq_scan, idx_scan)`. (Open the connection for
/// the check: a session's statistics not flushed yet count in its
/// transaction's.)
pub async fn notification_scans(conn: &mut diesel_async::AsyncPgConnection) -> (i64, i64) {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        seq_scan: i64,
        #[diesel(sql_type = BigInt)]
        idx_scan: i64,
    }
    let scans: Scans = diesel::sql_query(
        "SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan \
         FROM pg_stat_xact_user_tables WHERE relname = 'notifications'",
    )
    .get_result(conn)
    .await
    .expect("scans");
    (scans.seq_scan, scans.idx_scan)
}
