//! `POST /v1/notifications/batch`: items checked like single bodies, appended together, once per key.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_are_decoded_like_single_bodies() {
    let app = TestApp::spawn().await;
    let json_ct = Some("application/json");
    // A field given twice: the single endpoint refuses the body...
    let twice = r#"{"user_id":"u1","title":"a","title":"b","body":"c"}"#;
    let single = problem(
        app.post_raw(Some(&app.key), json_ct, twice.into()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.appended().await.len(), 0);
    // ...and a batch refuses that item alone, for the same field; an item
    // of the wrong type or with a mistyped field is refused alone too.
    let body = format!(
        r#"{{"notifications":[{},{twice},{{"user_id":"u2","title":5,"body":"b"}},42,{}]}}"#,
        valid("u0"),
        valid("u3")
    );
    let response = app.post_batch_text(&body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    let results = result["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "rejected", "rejected", "rejected", "accepted"]
    );
    assert_eq!(
        results[1]["errors"][0]["field"],
        single["errors"][0]["field"]
    );
    assert_eq!(results[2]["errors"][0]["field"], "title");
    assert_eq!(results[3]["errors"][0]["field"], "$", "not an object");
    assert_eq!(app.appended().await.len(), 2, "the two valid items only");
    // Broken JSON inside an item is the whole request's: nothing appended.
    // The envelope's parse catches a syntax error; a lone surrogate escape
    // or a number out of range only shows when the item is decoded.
    for item in [
        r#"{"user_id": }"#,
        r#"{"user_id":"u5","title":"\ud800","body":"b"}"#,
        r#"{"user_id":"u5","title":"t","body":"b","data":{"n":1e400}}"#,
    ] {
        let broken = format!(r#"{{"notifications":[{},{item}]}}"#, valid("u4"));
        let body = problem(app.post_batch_text(&broken).await, StatusCode::BAD_REQUEST).await;
        assert!(
            body["type"].as_str().unwrap().ends_with("malformed-json"),
            "{body}"
        );
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "a malformed batch appends nothing (appended() reads what is new)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_appends_the_valid_items_and_reports_each() {
    let app = TestApp::spawn().await;
    let mut items: Vec<Value> = (0..100).map(|i| valid(&format!("user-{i}"))).collect();
    items[10] = json!({"user_id": "bad id", "title": "t", "body": "b"});
    items[20] = json!({"user_id": "u", "title": "t", "body": "b", "priority": "urgent"});
    items[30] = json!({"user_id": "u"});
    items[40]["priority"] = json!("high");
    let response = app
        .post_batch(None, &json!({ "notifications": items }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["accepted"], 97);
    assert_eq!(result["rejected"], 3);
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 100, "one result per item, in order");
    assert_eq!(results[10]["status"], "rejected");
    assert_eq!(results[10]["errors"][0]["field"], "user_id");
    assert_eq!(results[20]["errors"][0]["field"], "priority");
    assert_eq!(results[30]["errors"][0]["field"], "template");
    let accepted: HashSet<String> = results
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let appended: HashSet<String> = app.appended().await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        appended, accepted,
        "ids answered accepted == entries appended"
    );

    for bad in [
        json!({"notifications": []}),
        json!({"notifications": vec![valid("u"); 1_001]}),
        json!({"items": []}),
    ] {
        let body = problem(app.post_batch(None, &bad).await, StatusCode::BAD_REQUEST).await;
        assert!(body["errors"][0]["field"].is_string());
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "refused batches append nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_retries_with_an_idempotency_key_append_once() {
    let app = TestApp::spawn().await;
    let batch =
        json!({ "notifications": (0..50).map(|i| valid(&format!("u{i}"))).collect::<Vec<_>>() });
    let first = app.post_batch(Some("batch-1"), &batch).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let retry = app.post_batch(Some("batch-1"), &batch).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "the first answer, ids included");
    assert_eq!(app.appended().await.len(), 50, "appended once");
    let other = json!({ "notifications": [valid("someone-else")] });
    problem(
        app.post_batch(Some("batch-1"), &other).await,
        StatusCode::CONFLICT,
    )
    .await;
}
