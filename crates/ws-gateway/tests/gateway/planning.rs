//! The gateway's statements are planned once per connection: each plan,
//! made while the tables were empty, is still an index lookup once they
//! hold thousands of rows.

use chrono::Utc;
use diesel::sql_types::{Integer, Text};
use diesel_async::RunQueryDsl;
use domain::{Preferences, Priority};
use platform::db::Planning;
use platform::storage::inbox::{self, Change, Filter, PageQuery, Status, Target};
use platform::storage::{inspect, preferences, revoked_tokens};
use testkit::TestEnv;
use uuid::Uuid;

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    statement: String,
    #[diesel(sql_type = Integer)]
    parameters: i32,
}

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// What the gateway asks of storage for `user`: a connect, pages of the
/// inbox, a resume, every kind of change, preferences.
async fn gateway_work(conn: &mut platform::db::DbConn, user: &str) {
    let state = inbox::state(conn, user).await.unwrap();
    preferences::get(conn, user).await.unwrap();
    for (status, unread_only, category) in [
        (Status::Active, false, None),
        (Status::Active, true, None),
        (Status::Archived, false, Some("tests".to_owned())),
        (Status::All, false, None),
    ] {
        let query = PageQuery {
            before: Some(state.last_seq + 1),
            limit: 50,
            unread_only,
            category,
            status,
        };
        inbox::page(conn, user, &query).await.unwrap();
    }
    let held = inbox::after(conn, user, 0, 20).await.unwrap();
    inbox::changed_since(conn, user, 1, state.last_seq)
        .await
        .unwrap();
    let ids: Vec<Uuid> = held.iter().map(|n| n.id).collect();
    let some = &ids[..ids.len().min(2)];
    inbox::template_refs(conn, user, some).await.unwrap();
    if let [id, ..] = some {
        inbox::owns(conn, user, *id).await.unwrap();
    }
    let until = Utc::now() + chrono::Duration::hours(1);
    for change in [
        Change::Read,
        Change::Unread,
        Change::Archive,
        Change::Unarchive,
        Change::Snooze(until),
        Change::Unsnooze,
    ] {
        inbox::apply(conn, user, Target::Ids(some), change)
            .await
            .unwrap();
    }
    let before_seq = Some(state.last_seq.max(1));
    inbox::apply(
        conn,
        user,
        Target::All(Filter {
            before_seq,
            ..Filter::default()
        }),
        Change::Seen,
    )
    .await
    .unwrap();
    let muting = Preferences {
        muted_categories: vec!["tests".into()],
        ..Preferences::default()
    };
    inbox::set_preferences(conn, user, &muting).await.unwrap();
    inbox::set_preferences(conn, user, &Preferences::default())
        .await
        .unwrap();
    revoked_tokens::active(conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_made_on_empty_tables_stay_index_lookups() {
    let env = TestEnv::new().await;
    let pool = env.pool_planned(Planning::OncePerConnection);
    let mut conn = pool.get().await.unwrap();
    // Every statement prepared (and planned) while nothing is stored.
    gateway_work(&mut conn, "plan-empty").await;

    let mut writer = env.db().await;
    for users in ["plan-a", "plan-b", "plan-c", "plan-d"].chunks(2) {
        let batch: Vec<_> = (0..2_000)
            .map(|i| testkit::new_notification(users[i % 2], i, Priority::Normal))
            .collect();
        testkit::store_batch(&mut writer, &batch, Utc::now())
            .await
            .unwrap();
    }
    gateway_work(&mut conn, "plan-a").await;
    assert_eq!(
        inbox::state(&mut conn, "plan-a").await.unwrap().counts,
        inspect::recount(&mut writer, "plan-a").await.unwrap(),
        "the counts after every kind of change"
    );

    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement, cardinality(parameter_types) AS parameters \
         FROM pg_prepared_statements \
         WHERE statement ~ '^\\s*(SELECT|UPDATE|INSERT|DELETE|WITH)' \
         AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(prepared.len() >= 15, "{} statements", prepared.len());
    let mut state_lookups = 0;
    for statement in &prepared {
        let nulls = vec!["NULL"; statement.parameters as usize].join(", ");
        let explain = if nulls.is_empty() {
            format!("EXPLAIN EXECUTE {}", statement.name)
        } else {
            format!("EXPLAIN EXECUTE {}({nulls})", statement.name)
        };
        let plan: Vec<String> = diesel::sql_query(explain)
            .load::<PlanLine>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|line| line.line)
            .collect();
        let plan = plan.join("\n");
        for table in ["notifications", "user_inbox", "user_preferences"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{}\n{plan}",
                statement.statement
            );
        }
        // A resume's state reads only the rows changed since.
        if statement.statement.contains("\"state_version\" >") {
            state_lookups += 1;
            assert!(
                plan.contains("notifications_state"),
                "{}\n{plan}",
                statement.statement
            );
        }
    }
    assert_eq!(state_lookups, 1, "the resume's state statement was checked");
}
