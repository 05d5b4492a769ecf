//! The storing transaction itself: prepared statements, query plans, and rounds racing on a new user's inbox.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use domain::Priority;
use platform::storage::{inbox, notifications};
use testkit::TestEnv;
use testkit::new_notification as notification;
use uuid::Uuid;

/// The duplicate check's text in `pg_prepared_statements`, as a `LIKE`
/// pattern (the read-back of redelivered rows selects more columns).
const DUPLICATE_CHECK: &str = r#"SELECT "notifications"."id", "notifications"."user_id" FROM %"#;

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
    // Rounds of new notifications never look for them among the stored
    // ones: the primary key refuses a copy (see the next test's rounds).
    let checks: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE '{DUPLICATE_CHECK}'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(checks.n, 0, "no duplicate check in a round of new ones");
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
    // point where PostgreSQL would settle on a generic plan. The check runs
    // only for a round holding a notification stored before: each one is
    // stored, then delivered again.
    for round in 0..8 {
        let batch = vec![notification("ida", round, Priority::Normal)];
        testkit::store_batch(&mut conn, &batch, Utc::now())
            .await
            .unwrap();
        let again = testkit::store_batch(&mut conn, &batch, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            (again.inserted, again.duplicates),
            (0, HashSet::from([batch[0].id]))
        );
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
    let check: Named = diesel::sql_query(format!(
        "SELECT name FROM pg_prepared_statements WHERE statement LIKE '{DUPLICATE_CHECK}'"
    ))
    .get_result(&mut conn)
    .await
    .expect("the duplicate check is a cached prepared statement");
    // A round's worth of keys: with `id = ANY($ids)` and no statistics
    // PostgreSQL cannot know ids are unique (the primary key has two
    // columns) and scans the table for a few hundred of them.
    #[derive(diesel::QueryableByName)]
    struct Keys {
        #[diesel(sql_type = Text)]
        users: String,
        #[diesel(sql_type = Text)]
        ids: String,
    }
    let keys: Keys = diesel::sql_query(
        "SELECT array_agg(user_id)::text AS users, array_agg(id)::text AS ids \
         FROM (SELECT user_id, id FROM notifications ORDER BY seq DESC LIMIT 256) k",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    let plan = explain(
        &mut conn,
        &format!("EXECUTE {}('{}', '{}')", check.name, keys.users, keys.ids),
    )
    .await;
    assert!(
        plan.iter().any(|l| l.contains("using notifications_pkey"))
            && !plan.iter().any(|l| l.contains("Seq Scan")),
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
        (state.last_seq, state.counts.unread, state.version),
        (2, 2, 2),
        "the first round's row (1, 1, 1), moved on once by the second"
    );
}

/// A round does not look for its notifications among the stored ones; one
/// that holds a notification stored before (a redelivery) is refused by
/// the primary key, rolled back, and stored again with the check: the
/// stored one keeps its number and is answered as stored, the new ones
/// (an existing user's and a new user's) take the next numbers, and each
/// counter moves once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_holding_a_stored_notification_is_stored_again_with_the_check() {
    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    let earlier = notification("fay", 1, Priority::Normal);
    testkit::store_batch(&mut conn, std::slice::from_ref(&earlier), Utc::now())
        .await
        .unwrap();
    let later = notification("fay", 2, Priority::Normal);
    let newcomer = notification("gus", 1, Priority::Normal);
    let batch = vec![later.clone(), earlier.clone(), newcomer.clone()];

    let stored = testkit::store_batch(&mut conn, &batch, Utc::now())
        .await
        .unwrap();
    assert_eq!(stored.inserted, 2);
    assert_eq!(stored.duplicates, HashSet::from([earlier.id]));
    assert_eq!(
        stored
            .visible
            .iter()
            .map(|n| (n.id, n.user_id.as_str(), n.seq))
            .collect::<Vec<_>>(),
        vec![
            (later.id, "fay", 2),
            (earlier.id, "fay", 1),
            (newcomer.id, "gus", 1)
        ],
        "in batch order, the redelivered one as stored before"
    );
    for (user, seqs) in [("fay", vec![1, 2]), ("gus", vec![1])] {
        let rows = platform::storage::inspect::list_for_user(&mut conn, user)
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|n| n.seq).collect::<Vec<_>>(), seqs);
        let state = inbox::state(&mut conn, user).await.unwrap();
        let unread_rows = platform::storage::inspect::count_unread_rows(&mut conn, user)
            .await
            .unwrap();
        assert_eq!(
            (state.last_seq, state.counts.unread, state.version),
            (seqs.len() as i64, unread_rows, seqs.len() as i64),
            "{user}: one move per round that stored"
        );
    }
}

/// A round that refuses a notification it was delivered again (stored
/// before, its template no longer renders) counts it a duplicate and
/// publishes it as stored: the primary key never sees the refused one, so
/// the round looks it up. A new one it refuses stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_notification_that_no_longer_prepares_is_a_duplicate() {
    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    let earlier = notification("hal", 1, Priority::Normal);
    testkit::store_batch(&mut conn, std::slice::from_ref(&earlier), Utc::now())
        .await
        .unwrap();
    let unrenderable = notification("hal", 2, Priority::Normal);
    let fresh = notification("hal", 3, Priority::Normal);
    let batch = [&earlier, &unrenderable, &fresh];
    let (stored, unprepared) =
        notifications::store_preparing(&mut conn, &batch, Utc::now(), |i, _| {
            if i < 2 {
                Err("the template no longer renders".to_owned())
            } else {
                Ok(notifications::Prepared::from(batch[i].clone()))
            }
        })
        .await
        .unwrap();
    assert_eq!(stored.duplicates, HashSet::from([earlier.id]));
    assert_eq!(stored.inserted, 1);
    assert_eq!(
        unprepared,
        vec![(1, "the template no longer renders".to_owned())],
        "only the new one is refused"
    );
    assert_eq!(
        stored
            .visible
            .iter()
            .map(|n| (n.id, n.seq))
            .collect::<Vec<_>>(),
        vec![(earlier.id, 1), (fresh.id, 2)],
        "the stored one published again as stored"
    );
    let state = inbox::state(&mut conn, "hal").await.unwrap();
    assert_eq!((state.last_seq, state.counts.unread), (2, 2));
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
    // ada and kai mute `games`: the worker stores theirs muted.
    let games = domain::Preferences {
        muted_categories: vec!["games".into()],
        ..domain::Preferences::default()
    };
    for user in ["ada", "kai"] {
        platform::storage::preferences::put(&mut conn, user, &games)
            .await
            .unwrap();
    }
    let muted = |user: &str, i| {
        let mut n = notification(user, i, Priority::Normal);
        n.category = Some("games".into());
        Prepared {
            muted: true,
            ..n.into()
        }
    };

    let plain = notification("ada", 1, Priority::Normal);
    let batch: Vec<Prepared> = vec![
        expire(notification("ada", 0, Priority::Normal)).into(),
        plain.clone().into(),
        muted("ada", 2),
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
        // Every count (all in category `tests`) equals a recount.
        let kept = inbox::state(&mut conn, user).await.unwrap().counts;
        assert_eq!(
            kept,
            platform::storage::inspect::recount(&mut conn, user)
                .await
                .unwrap(),
            "{user}: counts == rows"
        );
        assert_eq!(
            kept.by_category.get("tests").map(|c| (c.unread, c.unseen)),
            (unread > 0).then_some((unread, unread)),
            "{user}"
        );
        if let Some(round) = stored.counts.get(user) {
            assert_eq!(
                round.counts, kept,
                "{user}: the round's counts are the kept ones"
            );
        }
        // What the live frames carry: the state the transaction left, for
        // new inboxes and moved ones alike.
        assert_eq!(
            stored
                .counts
                .get(user)
                .map(|c| (c.counts.unread, c.version)),
            Some((unread, version)),
            "{user}: counts of the round"
        );
    }

    // A redelivery moves no inbox: its frames carry no counts.
    let again = testkit::store_prepared(&mut conn, &batch, now)
        .await
        .unwrap();
    assert_eq!(again.inserted, 0);
    assert!(
        !again.visible.is_empty(),
        "redelivered ones are published again"
    );
    assert!(again.counts.is_empty(), "{:?}", again.counts);

    // A round of muted ones only: the version moves, the count does not.
    let stored = testkit::store_prepared(&mut conn, &[muted("kai", 2)], now)
        .await
        .unwrap();
    let kai = inbox::state(&mut conn, "kai").await.unwrap();
    assert_eq!((kai.counts.unread, kai.version), (2, 3));
    assert_eq!(
        stored
            .counts
            .get("kai")
            .map(|c| (c.counts.unread, c.version)),
        Some((2, 3))
    );
}

/// Rounds count each notification in its category, for users whose inbox
/// exists and users getting their first one alike; muted and expired ones
/// in none; and what a round answers (for its frames) is what it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_counts_each_category_for_known_and_new_users() {
    use domain::CategoryCounts;
    use notifications::Prepared;

    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    let now = Utc::now();
    let with = |user: &str, i: usize, category: Option<&str>| {
        let mut n = notification(user, i, Priority::Normal);
        n.category = category.map(str::to_owned);
        n
    };
    testkit::store_batch(&mut conn, &[with("kai", 0, Some("orders"))], now)
        .await
        .unwrap();
    let games = domain::Preferences {
        muted_categories: vec!["games".into()],
        ..domain::Preferences::default()
    };
    platform::storage::preferences::put(&mut conn, "lu", &games)
        .await
        .unwrap();
    let mut expired = with("lu", 9, Some("orders"));
    expired.expires_at = Some(now - chrono::Duration::seconds(1));
    let batch: Vec<Prepared> = vec![
        with("kai", 1, Some("orders")).into(),
        with("kai", 2, Some("social")).into(),
        with("kai", 3, None).into(),
        with("lu", 0, Some("orders")).into(),
        with("lu", 1, Some("orders")).into(),
        Prepared {
            muted: true,
            ..with("lu", 2, Some("games")).into()
        },
        expired.into(),
    ];
    let stored = testkit::store_prepared(&mut conn, &batch, now)
        .await
        .unwrap();
    let both = |n| CategoryCounts {
        unread: n,
        unseen: n,
    };
    for (user, total, categories) in [
        ("kai", 4, vec![("orders", 2), ("social", 1)]),
        ("lu", 2, vec![("orders", 2)]),
    ] {
        let kept = inbox::state(&mut conn, user).await.unwrap().counts;
        assert_eq!((kept.unread, kept.unseen), (total, total), "{user}");
        let expected: Vec<(String, CategoryCounts)> = categories
            .into_iter()
            .map(|(c, n)| (c.to_owned(), both(n)))
            .collect();
        assert_eq!(
            kept.by_category.clone().into_iter().collect::<Vec<_>>(),
            expected,
            "{user}"
        );
        assert_eq!(
            kept,
            platform::storage::inspect::recount(&mut conn, user)
                .await
                .unwrap(),
            "{user}: counts == rows"
        );
        assert_eq!(
            stored.counts[user].counts, kept,
            "{user}: the round's counts"
        );
    }
}

/// Every worker looks for timers that have come every second: in a table
/// of 20,000 notifications that grew past its statistics, both lookups
/// read the partial indexes of pending timers, never the whole table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_timers_are_found_through_their_indexes_not_the_whole_table() {
    use diesel_async::{AsyncConnection, RunQueryDsl};

    let env = TestEnv::new().await;
    let mut conn = env.db().await;
    diesel::sql_query(
        "INSERT INTO notifications (id, user_id, seq, title, body, priority, created_at, expires_at, snoozed_until) \
         SELECT gen_random_uuid(), 'user-' || (g % 500), g, 't', 'b', 'normal', now(), \
         CASE WHEN g % 1000 = 0 THEN now() - interval '1 second' END, \
         CASE WHEN g % 999 = 0 THEN now() - interval '1 second' END \
         FROM generate_series(1, 20000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (scans, (woken, expiring)) = conn
        .transaction::<_, platform::db::DbError, _>(async |conn| {
            let due = inbox::due(conn, Utc::now(), 1000).await?;
            Ok((crate::support::notification_scans(conn).await, due))
        })
        .await
        .unwrap();
    assert_eq!((woken.len(), expiring.len()), (20, 20));
    assert_eq!(scans, (0, 2), "two index scans, no sequential one");
}

/// A state change's statements are prepared once per connection, the two
/// `UPDATE`s too (diesel's own `UPDATE` would be parsed at every change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changes_statements_are_prepared_once_per_connection() {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    use platform::storage::inbox::{Change, Target};

    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = Text)]
        statement: String,
    }
    let env = TestEnv::new().await;
    let batch: Vec<_> = (0..6)
        .map(|i| notification("pia", i, Priority::Normal))
        .collect();
    let stored = testkit::store_batch(&mut env.db().await, &batch, Utc::now())
        .await
        .unwrap()
        .visible;
    let mut conn = env.db().await;
    for id in stored.iter().take(3).map(|n| n.id) {
        for change in [Change::Read, Change::Unread] {
            let applied = inbox::apply(&mut conn, "pia", Target::Ids(&[id]), change)
                .await
                .unwrap();
            assert_eq!(applied.result.ids, [id], "{change:?}");
        }
    }
    let prepared: Vec<String> = diesel::sql_query("SELECT statement FROM pg_prepared_statements")
        .load::<Prepared>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.statement)
        .collect();
    let count = |prefix: &str| prepared.iter().filter(|s| s.starts_with(prefix)).count();
    assert_eq!(
        (
            count("UPDATE notifications SET read_at = $1"),
            count("UPDATE notifications SET read_at = NULL"),
            count("UPDATE user_inbox SET unread_count"),
        ),
        (1, 1, 1),
        "{prepared:#?}"
    );
    assert_eq!(
        inbox::state(&mut conn, "pia").await.unwrap().counts,
        platform::storage::inspect::recount(&mut conn, "pia")
            .await
            .unwrap()
    );
}
