//! How far the schema can be distributed by user (docs/operations.md,
//! "PostgreSQL past one machine"): every table holding a user's data has
//! `user_id` in every unique index, and no foreign key ties two rows
//! together; every other table is one of the small shared ones.

use std::collections::BTreeSet;

use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use testkit::TestEnv;

/// Tables without a user's data: reference tables on a distributed
/// database (read everywhere, written rarely), and the operators' dead
/// letters and the erasure jobs, which stay on the coordinator.
const SHARED_TABLES: [&str; 6] = [
    "__diesel_schema_migrations",
    "api_keys",
    "templates",
    "revoked_tokens",
    "dead_letters",
    "erasures",
];

/// The tables distributed by `user_id`.
const PER_USER_TABLES: [&str; 3] = ["notifications", "user_inbox", "user_preferences"];

#[derive(diesel::QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    has_user_id: bool,
}

#[derive(diesel::QueryableByName, Debug)]
struct UniqueIndex {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Bool)]
    primary: bool,
    #[diesel(sql_type = Bool)]
    has_user_id: bool,
}

#[derive(diesel::QueryableByName)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_tables_are_keyed_by_user_and_nothing_links_rows() {
    let env = TestEnv::new().await;
    let mut conn = env.db().await;

    let tables: Vec<Table> = diesel::sql_query(
        "SELECT c.relname::text AS name, \
                EXISTS (SELECT 1 FROM pg_attribute a \
                        WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped) \
                    AS has_user_id \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let per_user: BTreeSet<&str> = tables
        .iter()
        .filter(|t| t.has_user_id)
        .map(|t| t.name.as_str())
        .collect();
    let shared: BTreeSet<&str> = tables
        .iter()
        .filter(|t| !t.has_user_id)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(per_user, BTreeSet::from(PER_USER_TABLES));
    assert_eq!(
        shared,
        BTreeSet::from(SHARED_TABLES),
        "a new table is either per user (with user_id in its keys) or shared: \
         classify it here and in docs/operations.md"
    );

    let unique: Vec<UniqueIndex> = diesel::sql_query(
        "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
                x.indisprimary AS primary, \
                EXISTS (SELECT 1 FROM pg_attribute a \
                        WHERE a.attrelid = t.oid AND a.attname = 'user_id' \
                          AND a.attnum = ANY (x.indkey::int2[])) AS has_user_id \
         FROM pg_index x \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND x.indisunique",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut primary_keys = BTreeSet::new();
    let mut without_user_id = BTreeSet::new();
    for index in unique
        .iter()
        .filter(|i| per_user.contains(i.table_name.as_str()))
    {
        if !index.has_user_id {
            without_user_id.insert(index.index_name.as_str());
        }
        if index.primary {
            primary_keys.insert(index.table_name.as_str());
        }
    }
    assert_eq!(
        without_user_id,
        BTreeSet::new(),
        "every unique index of a per-user table contains user_id"
    );
    assert_eq!(
        primary_keys,
        BTreeSet::from(PER_USER_TABLES),
        "every per-user table has a primary key"
    );

    let foreign_keys: Vec<ForeignKey> = diesel::sql_query(
        "SELECT c.conname::text AS name FROM pg_constraint c \
         JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = 'public' AND c.contype = 'f'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let names: Vec<String> = foreign_keys.into_iter().map(|f| f.name).collect();
    assert!(names.is_empty(), "foreign keys: {names:?}");
}

/// The migration that added `seen` and the counts per category fills them
/// from the rows a user already had: every unread one unseen, per
/// category; archived, read and expired ones and ones in a category muted
/// now left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_migration_fills_them_from_the_stored_rows() {
    use diesel::sql_types::Jsonb;

    #[derive(diesel::QueryableByName, Debug)]
    struct Kept {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        unread_count: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        unseen_count: i64,
        #[diesel(sql_type = Jsonb)]
        by_category: serde_json::Value,
    }

    let env = TestEnv::without_schema().await;
    let settings = env.settings();
    platform::db::run_migrations_through(&settings.database, "2026-12-04-000011")
        .await
        .unwrap();
    let mut conn = env.db().await;
    // Before: ada has two unread orders, one read, one archived, one in a
    // category she mutes, one unread without a category and one expired on
    // arrival; bo has nothing unread; cy has one stored while social was
    // muted, and has unmuted it since (muting is retroactive from now on:
    // it counts).
    for statement in [
        "INSERT INTO user_inbox (user_id, last_seq, unread_count, version) \
         VALUES ('ada', 6, 3, 9), ('bo', 1, 0, 2), ('cy', 1, 0, 1)",
        "INSERT INTO user_preferences (user_id, muted_categories) \
         VALUES ('ada', '{games}'), ('cy', '{}')",
        "INSERT INTO notifications (id, user_id, seq, title, body, priority, category, created_at, \
         read_at, archived_at, muted, expired) VALUES \
         (gen_random_uuid(), 'ada', 1, 't', 'b', 'normal', 'orders', now(), NULL, NULL, false, false), \
         (gen_random_uuid(), 'ada', 2, 't', 'b', 'normal', 'orders', now(), NULL, NULL, false, false), \
         (gen_random_uuid(), 'ada', 3, 't', 'b', 'normal', 'orders', now(), now(), NULL, false, false), \
         (gen_random_uuid(), 'ada', 4, 't', 'b', 'normal', 'social', now(), NULL, now(), false, false), \
         (gen_random_uuid(), 'ada', 5, 't', 'b', 'normal', 'games', now(), NULL, NULL, true, false), \
         (gen_random_uuid(), 'ada', 6, 't', 'b', 'normal', NULL, now(), NULL, NULL, false, false), \
         (gen_random_uuid(), 'ada', NULL, 't', 'b', 'normal', 'orders', now(), NULL, NULL, false, true), \
         (gen_random_uuid(), 'bo', 1, 't', 'b', 'normal', 'orders', now(), now(), NULL, false, false), \
         (gen_random_uuid(), 'cy', 1, 't', 'b', 'normal', 'social', now(), NULL, NULL, true, false)",
    ] {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    platform::db::run_migrations(&settings.database)
        .await
        .unwrap();

    let kept = |user: &'static str| {
        diesel::sql_query(
            "SELECT unread_count, unseen_count, by_category FROM user_inbox WHERE user_id = $1",
        )
        .bind::<Text, _>(user)
    };
    let ada: Kept = kept("ada").get_result(&mut conn).await.unwrap();
    assert_eq!(
        (ada.unread_count, ada.unseen_count, &ada.by_category),
        (
            3,
            3,
            &serde_json::json!({"orders": {"unread": 2, "unseen": 2}})
        )
    );
    let bo: Kept = kept("bo").get_result(&mut conn).await.unwrap();
    assert_eq!(
        (bo.unread_count, bo.unseen_count, &bo.by_category),
        (0, 0, &serde_json::json!({}))
    );
    let cy: Kept = kept("cy").get_result(&mut conn).await.unwrap();
    assert_eq!(
        (cy.unread_count, cy.unseen_count, &cy.by_category),
        (
            1,
            1,
            &serde_json::json!({"social": {"unread": 1, "unseen": 1}})
        )
    );
    // And they are what the rows say, read the way Herald reads them.
    for user in ["ada", "bo", "cy"] {
        let state = platform::storage::inbox::state(&mut conn, user)
            .await
            .unwrap();
        assert_eq!(
            state.counts,
            platform::storage::inspect::recount(&mut conn, user)
                .await
                .unwrap(),
            "{user}"
        );
    }
}
