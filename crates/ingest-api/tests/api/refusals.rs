//! Every refusal is problem+json whoever makes it (the router, actix's
//! extractors, the handlers), bodies are JSON objects within
//! `http.max_body_bytes`, and a problem never echoes a huge value back.

use platform::storage::api_keys::{self, KeyPolicy};
use platform::storage::preferences;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problems_whoever_makes_them() {
    let app = TestApp::spawn().await;
    let admin_key = api_keys::create(&mut app.env.db().await, "ops", &KeyPolicy::admin())
        .await
        .unwrap();
    let producer = app.with_key(&app.key);
    let admin = app.with_key(&admin_key);

    // A method the route lacks (the router answers).
    let wrong_method = producer.get("/v1/notifications").send().await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    // Paths routed one method at a time too, and the operations endpoints:
    // 405 with what the path answers (from the OpenAPI document), not 404.
    for (path, allow) in [
        ("/v1/admin/templates/{key}", "GET, POST, DELETE"),
        ("/healthz", "GET"),
    ] {
        let path = path.replace("{key}", "welcome");
        let response = admin
            .request(reqwest::Method::TRACE, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{path}");
        problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    problem(
        admin.get("/v1/nowhere").send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    // A malformed query and a malformed path segment (actix's extractors).
    let bad_query = admin
        .get("/v1/admin/dead-letters?limit=lots")
        .send()
        .await
        .unwrap();
    let body = problem(bad_query, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("Query"), "{body}");
    let bad_path = admin
        .post("/v1/admin/dead-letters/not-a-uuid/replay")
        .send()
        .await
        .unwrap();
    problem(bad_path, StatusCode::NOT_FOUND).await;

    let preferences_of_ann = "/v1/users/ann/preferences";
    // Not JSON: 415 before anything is read.
    let plain = producer
        .put(preferences_of_ann)
        .header("content-type", "text/plain")
        .body(r#"{"locale":"pl"}"#)
        .send()
        .await
        .unwrap();
    problem(plain, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // An array where an object is expected changes nothing.
    let stored = producer
        .put(preferences_of_ann)
        .json(&json!({"locale": "pl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    let array = producer
        .put(preferences_of_ann)
        .json(&json!([null, null]))
        .send()
        .await
        .unwrap();
    problem(array, StatusCode::BAD_REQUEST).await;
    let kept = preferences::get(&mut app.env.db().await, "ann")
        .await
        .unwrap();
    assert_eq!(kept.locale.as_deref(), Some("pl"));
    // Over http.max_body_bytes (64 KiB): 413.
    let huge = testkit::send_answered(
        producer
            .put(preferences_of_ann)
            .json(&json!({"locale": "x".repeat(200_000)})),
    )
    .await;
    problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Within the limit but invalid: the answer does not repeat the value.
    let long = producer
        .put(preferences_of_ann)
        .json(&json!({"locale": "x".repeat(60_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), StatusCode::BAD_REQUEST);
    let text = long.text().await.unwrap();
    assert!(text.len() < 4_096, "a {} byte answer", text.len());
}
