//! `Idempotency-Key`: one append per key, the first answer replayed, keys per producer.

use std::collections::HashSet;

use platform::storage::api_keys::{self, KeyPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let body = valid("olga");
    let first = app.post_with_key("order-1-shipped", &body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    for _ in 0..3 {
        let retry = app.post_with_key("order-1-shipped", &body).await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: Value = retry.json().await.unwrap();
        assert_eq!(retry["id"], first["id"]);
    }

    let mut other = body.clone();
    other["title"] = json!("Something else");
    let body_409 = problem(
        app.post_with_key("order-1-shipped", &other).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body_409["type"],
        "https://herald.dev/problems/idempotency-key-reused"
    );

    // Another key is another notification; no key is always a new one.
    assert_eq!(
        app.post_with_key("order-2-shipped", &body).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.post(&body).await.status(), StatusCode::ACCEPTED);

    // Exactly three appended: the first, order-2 and the keyless one.
    let appended = app.appended().await;
    assert_eq!(appended.len(), 3);
    assert!(appended.iter().any(|(_, id)| *id == first["id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_append_once() {
    let app = TestApp::spawn().await;
    let body = valid("pam");
    let attempts = (0..16).map(|_| app.post_with_key("same-key", &body));
    let responses = futures_util::future::join_all(attempts).await;
    let mut ids = HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.unwrap();
        ids.insert(answer["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every retry got the same id");
    assert_eq!(app.appended().await.len(), 1, "appended once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_per_producer_and_validated() {
    let app = TestApp::spawn().await;
    let other_key = api_keys::create(&mut app.env.db().await, "other", &KeyPolicy::producer())
        .await
        .unwrap();
    let body = valid("quinn");
    let mine: Value = app.post_with_key("k1", &body).await.json().await.unwrap();
    let theirs = app
        .with_key(&other_key)
        .post("/v1/notifications")
        .header("idempotency-key", "k1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::ACCEPTED);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(mine["id"], theirs["id"]);

    for bad in ["", "has space", &"x".repeat(256)] {
        let body = problem(
            app.post_with_key(bad, &valid("quinn")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    }
    assert_eq!(app.appended().await.len(), 2);
}

/// Runs `redis-cli` against the shared test server (to put a key of the
/// wrong type in a stream's place, and to read idempotency records);
/// answers its output.
fn redis_cli(args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", &testkit::redis_url()])
        .args(args)
        .output()
        .expect("redis-cli on PATH");
    assert!(output.status.success(), "redis-cli {args:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_shards_that_failed_part_way_is_completed_by_its_retry() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__REDIS__STREAM_SHARDS", "8");
    let app = TestApp::spawn_in(env).await;
    let keys = app.redis.keys().clone();
    let users: Vec<String> = (0..40).map(|u| format!("u{u}")).collect();
    let shards: HashSet<_> = users.iter().map(|u| keys.shard_of(u)).collect();
    assert!(shards.len() >= 6, "40 users cover most of the 8 shards");
    let body = json!({ "notifications": users.iter().map(|u| valid(u)).collect::<Vec<_>>() });
    let post = |body: Value| {
        app.with_key(&app.key)
            .post("/v1/notifications/batch")
            .header("idempotency-key", "spanning-1")
            .json(&body)
            .send()
    };
    assert!(app.appended().await.is_empty());

    // One shard's `normal` lane is a string: appending there fails.
    let broken_shard = keys.shard_of("u0");
    let broken = keys.stream(domain::Lane {
        shard: broken_shard,
        priority: domain::Priority::Normal,
    });
    redis_cli(&["DEL", &broken]);
    redis_cli(&["SET", &broken, "in the way"]);
    let failed = post(body.clone()).await.unwrap();
    problem(failed, StatusCode::SERVICE_UNAVAILABLE).await;
    redis_cli(&["DEL", &broken]);
    let first_part = app.appended().await;
    let broken_users = users
        .iter()
        .filter(|u| keys.shard_of(u) == broken_shard)
        .count();
    assert_eq!(
        first_part.len(),
        users.len() - broken_users,
        "every other shard appended its items"
    );

    // The retry with the same key appends exactly the missing shard's items.
    let completed = post(body.clone()).await.unwrap();
    assert_eq!(completed.status(), StatusCode::OK);
    assert!(completed.headers().get("idempotent-replayed").is_none());
    let completed: Value = completed.json().await.unwrap();
    assert_eq!(completed["accepted"], 40);
    let rest = app.appended().await;
    assert_eq!(rest.len(), broken_users, "only the missing items appended");
    let in_streams: HashSet<String> = first_part
        .iter()
        .chain(&rest)
        .map(|(_, id)| id.clone())
        .collect();
    let answered: HashSet<String> = completed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        answered, in_streams,
        "each item answers the id appended for it"
    );

    // Each shard recorded only its own items' results, not the whole answer.
    let records = redis_cli(&[
        "--scan",
        "--pattern",
        &format!("{}:*:idem:*", keys.prefix()),
    ]);
    let records: Vec<&str> = records.lines().filter(|k| !k.is_empty()).collect();
    assert_eq!(records.len(), shards.len(), "one record per shard touched");
    for record in records {
        let value = redis_cli(&["GET", record]);
        let (_, part) = value.trim_end().split_once(' ').unwrap();
        let part: Value = serde_json::from_str(part).unwrap();
        let items = part["items"].as_array().unwrap();
        let shard = items.first().map(|item| {
            let index = item[0].as_u64().unwrap() as usize;
            keys.shard_of(&users[index])
        });
        for item in items {
            let index = item[0].as_u64().unwrap() as usize;
            assert_eq!(
                Some(keys.shard_of(&users[index])),
                shard,
                "{record}: its shard's items only"
            );
        }
        let in_shard = users
            .iter()
            .filter(|u| Some(keys.shard_of(u)) == shard)
            .count();
        assert_eq!(items.len(), in_shard, "{record}: every item of its shard");
    }

    // Later retries replay that answer and append nothing.
    let replayed = post(body.clone()).await.unwrap();
    assert_eq!(replayed.status(), StatusCode::OK);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed, completed);
    assert!(app.appended().await.is_empty());

    // The same key with another body: 409 before any shard appends.
    let mut other = body.clone();
    other["notifications"][0]["title"] = json!("Something else");
    problem(post(other).await.unwrap(), StatusCode::CONFLICT).await;
    assert!(app.appended().await.is_empty());
}
