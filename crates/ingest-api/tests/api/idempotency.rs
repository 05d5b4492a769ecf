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
