//! Retention's storage: a user's old notifications go a chunk per
//! transaction, the oldest first, found through an index, with the counts
//! moved by exactly what went.

use chrono::{Duration, Utc};
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::Priority;
use platform::storage::inbox::{self, Change, Filter, Target};
use platform::storage::{inspect, preferences};
use testkit::TestEnv;
use testkit::new_notification as notification;

/// Stores `n` notifications for `user` (categories `a`, `b`, `c` in turn),
/// answers their ids in `seq` order.
async fn store(
    conn: &mut diesel_async::AsyncPgConnection,
    user: &str,
    n: usize,
) -> Vec<uuid::Uuid> {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            let mut n = notification(user, i, Priority::Normal);
            n.category = Some(["a", "b", "c"][i % 3].into());
            n
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in batch.chunks(2_000) {
        let stored = testkit::store_batch(conn, chunk, Utc::now()).await.unwrap();
        ids.extend(stored.visible.iter().map(|n| n.id));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_notifications_go_a_chunk_at_a_time_and_the_counts_follow() {
    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    // 11,000 for "old" (10,500 of them past the cutoff), 20 for "young".
    let ids = store(&mut conn, "old", 11_000).await;
    store(&mut conn, "young", 20).await;
    testkit::backdate(&mut conn, "young", 20, 10).await;
    // States that count differently: read, seen, archived, snoozed, a
    // muted category, and one expired before it was ever listed.
    for (change, range) in [
        (Change::Read, 0..300),
        (Change::Seen, 300..400),
        (Change::Archive, 400..500),
        (Change::Snooze(Utc::now() + Duration::days(1)), 500..520),
        (Change::Read, 10_600..10_700),
    ] {
        let target = Target::Ids(&ids[range]);
        inbox::apply(&mut conn, "old", target, change)
            .await
            .unwrap();
    }
    let mut prefs = preferences::get(&mut conn, "old").await.unwrap();
    prefs.muted_categories = vec!["c".into()];
    inbox::set_preferences(&mut conn, "old", &prefs)
        .await
        .unwrap();
    let mut expired = notification("old", 0, Priority::Normal);
    expired.expires_at = Some(Utc::now() - Duration::seconds(1));
    testkit::store_batch(&mut conn, &[expired], Utc::now())
        .await
        .unwrap();
    testkit::backdate(&mut conn, "old", 10_500, 100).await;
    let cutoff = Utc::now() - Duration::days(90);
    let before = inbox::state(&mut conn, "old").await.unwrap();
    assert_eq!(
        before.counts,
        inspect::recount(&mut conn, "old").await.unwrap()
    );

    // The users holding old ones are found through the primary key, a
    // step at a time (on a worker's connection, with its session settings;
    // a fresh one: a session's statistics not flushed yet count in its
    // transaction's).
    let (steps, scans) = env
        .pool()
        .get()
        .await
        .unwrap()
        .transaction::<_, platform::db::DbError, _>(async |conn| {
            let mut steps = vec![inbox::sweep(conn, cutoff, None, 1_000).await?];
            while let Some(after) = steps.last().and_then(|step| step.next) {
                steps.push(inbox::sweep(conn, cutoff, Some(after), 1_000).await?);
            }
            Ok((steps, crate::support::notification_scans(conn).await))
        })
        .await
        .unwrap();
    // 10,501 old ones: ten whole steps and one of 501; young's are within
    // the period.
    assert_eq!(steps.len(), 11);
    assert!(steps.iter().all(|step| step.users == ["old"]));
    assert_eq!(scans, (0, 11), "index scans only");

    // A chunk per call, the oldest first; the counts equal a recount after
    // each, and the version moves with each.
    let mut version = before.version;
    let mut chunks = Vec::new();
    loop {
        let trimmed = inbox::trim(&mut conn, "old", cutoff).await.unwrap();
        let state = inbox::state(&mut conn, "old").await.unwrap();
        assert_eq!(
            state.counts,
            inspect::recount(&mut conn, "old").await.unwrap()
        );
        if let Some(trim) = &trimmed.trim {
            assert_eq!(trim.state.counts, state.counts);
            assert_eq!(trim.state.version, version + 1);
            assert_eq!(state.trimmed_through, trim.up_to_seq);
            version = trim.state.version;
        }
        chunks.push((trimmed.deleted, trimmed.trim.as_ref().map(|t| t.up_to_seq)));
        if !trimmed.more() {
            break;
        }
    }
    // The first chunk also took the one expired before it was listed.
    assert_eq!(
        chunks,
        [
            (5_001, Some(5_000)),
            (5_000, Some(10_000)),
            (500, Some(10_500))
        ]
    );
    let left = inspect::list_for_user(&mut conn, "old").await.unwrap();
    let seqs: Vec<i64> = left.iter().map(|n| n.seq).collect();
    assert_eq!(seqs, (10_501..=11_000).collect::<Vec<_>>());
    assert_eq!(
        inspect::count_for_user(&mut conn, "old").await.unwrap(),
        500
    );
    // What is left counts: of 500, 166 are in the muted c (33 of them
    // read) and 67 others are read.
    let after = inbox::state(&mut conn, "old").await.unwrap();
    assert_eq!(after.counts.unread, 500 - 166 - 67);
    assert!(!after.counts.by_category.contains_key("c"));
    assert_eq!(after.last_seq, 11_000, "the sequence goes on");

    // Nothing more to do: no change, no version.
    let again = inbox::trim(&mut conn, "old", cutoff).await.unwrap();
    assert_eq!(again, inbox::Trimmed::default());
    assert_eq!(
        inbox::state(&mut conn, "old").await.unwrap().version,
        version
    );
    assert_eq!(
        inbox::sweep(&mut conn, cutoff, None, 1_000).await.unwrap(),
        inbox::Sweep::default()
    );
    // One created long ago but stored just now (it waited) is found and
    // kept: retention counts from storing.
    store(&mut conn, "late", 1).await;
    testkit::backdate(&mut conn, "late", 1, 100).await;
    diesel::sql_query("UPDATE notifications SET stored_at = now() WHERE user_id = 'late'")
        .execute(&mut conn)
        .await
        .unwrap();
    let found = inbox::sweep(&mut conn, cutoff, None, 1_000).await.unwrap();
    assert_eq!(
        (&found.users[..], found.next),
        (&["late".to_owned()][..], None)
    );
    assert_eq!(
        inbox::trim(&mut conn, "late", cutoff).await.unwrap(),
        inbox::Trimmed::default()
    );
    assert_eq!(inspect::count_for_user(&mut conn, "late").await.unwrap(), 1);
    assert_eq!(
        inspect::count_for_user(&mut conn, "young").await.unwrap(),
        20
    );

    // Changes and new notifications go on as before after a trim.
    let next = store(&mut conn, "old", 1).await;
    let read_all = inbox::apply(
        &mut conn,
        "old",
        Target::All(Filter::default()),
        Change::Read,
    )
    .await
    .unwrap();
    assert!(read_all.result.ids.contains(&next[0]));
    assert_eq!(
        read_all.result.counts,
        inspect::recount(&mut conn, "old").await.unwrap()
    );
    assert_eq!(
        inbox::state(&mut conn, "old").await.unwrap().last_seq,
        11_001
    );
}
