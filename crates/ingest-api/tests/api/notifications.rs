//! `POST /v1/notifications`: what is answered 202 is in its stream; what is refused is problem+json with nothing written.

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use platform::redis::ReadFrom;
use platform::storage::api_keys::{self, KeyPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_202_id_is_in_its_priority_stream() {
    let app = TestApp::spawn().await;
    let mut accepted = HashSet::new();
    for (i, priority) in ["high", "normal", "low"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let mut body = valid(&format!("user-{}", i % 4));
        body["priority"] = json!(priority);
        body["category"] = json!("orders");
        body["data"] = json!({ "order": i });
        let response = app.post(&body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "accepted");
        let id = answer["id"].as_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        accepted.insert((priority.parse::<Priority>().unwrap(), id));
    }
    let appended: HashSet<_> = app.appended().await.into_iter().collect();
    assert_eq!(appended, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_problem_json_and_nothing_written() {
    let app = TestApp::spawn().await;
    let json_ct = Some("application/json");
    let key = Some(app.key.as_str());

    // Malformed JSON.
    let body = problem(
        app.post_raw(key, json_ct, b"{\"user_id\": ".to_vec()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "https://herald.dev/problems/malformed-json");

    // Wrong type names the field.
    let body = problem(
        app.post(&json!({"user_id": 42, "title": "t", "body": "b"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "user_id");

    // Missing field names the field.
    let body = problem(
        app.post(&json!({"user_id": "u", "body": "b"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "title");

    // Unknown priority.
    let mut unknown_priority = valid("u");
    unknown_priority["priority"] = json!("urgent");
    let body = problem(app.post(&unknown_priority).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["errors"][0]["field"], "priority");

    // Invalid user id and oversized data, reported together.
    let body = problem(
        app.post(
            &json!({"user_id": "no spaces allowed", "title": "t", "body": "b",
                          "data": {"blob": "x".repeat(5_000)}}),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields: Vec<&str> = error_fields(&body);
    assert_eq!(fields, ["user_id", "data"]);

    // data must be an object.
    let body = problem(
        app.post(&json!({"user_id": "u", "title": "t", "body": "b", "data": [1]}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "data");

    // Over 64 KiB.
    let huge =
        serde_json::to_vec(&json!({"user_id": "u", "title": "t", "body": "x".repeat(70_000)}))
            .unwrap();
    problem(
        app.post_raw(key, json_ct, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // Missing and wrong content type.
    let ok_body = serde_json::to_vec(&valid("u")).unwrap();
    problem(
        app.post_raw(key, None, ok_body.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        app.post_raw(key, Some("text/plain"), ok_body.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;

    // Missing, unknown and revoked API keys.
    problem(
        app.post_raw(None, json_ct, ok_body.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post_raw(Some("hrld_nope"), json_ct, ok_body.clone())
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let mut conn = app.env.db().await;
    let revoked = api_keys::create(&mut conn, "soon-revoked", &KeyPolicy::producer())
        .await
        .unwrap();
    assert_eq!(
        app.post_raw(Some(&revoked), json_ct, ok_body.clone())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // The key is cached now; revoking it evicts it everywhere at once.
    let (_, told) = ingest_api::key_cache::revoke(&mut conn, &app.redis, "soon-revoked")
        .await
        .unwrap();
    assert_eq!(told.unwrap(), 1, "this ingest-api heard the revocation");
    // Pub/Sub delivery takes well under a millisecond; allow a second, far
    // below the cache TTL (60 s) that would apply without the announcement.
    // The key is checked before the body: an empty body asked while the
    // key is still accepted gets 400 and appends nothing.
    let refused = testkit::eventually(
        "the revoked key is refused",
        Duration::from_secs(1),
        || async {
            let response = app.post_raw(Some(&revoked), json_ct, b"{}".to_vec()).await;
            (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
        },
    )
    .await;
    problem(refused, StatusCode::UNAUTHORIZED).await;

    // Only the one request with a valid key and body was appended.
    assert_eq!(app.appended().await.len(), 1);

    // Unknown routes are problem+json too.
    let response = app.without_key().get("/v1/nothing").send().await.unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charset_parameter_is_still_json() {
    let app = TestApp::spawn().await;
    let response = app
        .post_raw(
            Some(&app.key),
            Some("application/json; charset=utf-8"),
            serde_json::to_vec(&valid("u")).unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_seconds_travels_as_expires_at() {
    let app = TestApp::spawn().await;
    let mut body = valid("rita");
    body["ttl_seconds"] = json!(60);
    assert_eq!(app.post(&body).await.status(), StatusCode::ACCEPTED);
    app.redis.ensure_consumer_group().await.unwrap();
    let entries = app
        .redis
        .read_group("inspector", ReadFrom::New, 10, Duration::from_millis(1))
        .await
        .unwrap();
    let entry: Value = serde_json::from_str(entries[0].payload.as_deref().unwrap()).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(entry["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(entry["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 60);
    body["ttl_seconds"] = json!(0);
    problem(app.post(&body).await, StatusCode::BAD_REQUEST).await;
}
