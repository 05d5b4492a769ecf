//! The operators' dead-letter endpoints.

use domain::Priority;
use platform::storage::api_keys::{self, KeyPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dead_letter_endpoints() {
    let app = TestApp::spawn().await;
    let admin_key = api_keys::create(&mut app.env.db().await, "ops", &KeyPolicy::admin())
        .await
        .unwrap();
    let url = |path: &str| format!("{}{path}", app.base);

    // A producer key may not use them.
    let response = app
        .with_key(&app.key)
        .get("/v1/admin/dead-letters")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .http
        .get(url("/v1/admin/dead-letters"))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;

    // Two dead letters, as the worker records them.
    let fixable = testkit::new_notification("sam", 1, Priority::Low);
    let mut broken = serde_json::to_value(&fixable).unwrap();
    broken["user_id"] = json!("not valid");
    let records = vec![
        platform::storage::dead_letters::NewDeadLetter::new(
            domain::Shard::FIRST,
            Priority::Low,
            "1-0",
            &broken.to_string(),
            "user_id: invalid",
            1,
        ),
        platform::storage::dead_letters::NewDeadLetter::new(
            domain::Shard::FIRST,
            Priority::Normal,
            "2-0",
            "{garbage",
            "malformed",
            1,
        ),
    ];
    platform::storage::dead_letters::record(&mut app.env.db().await, &records)
        .await
        .unwrap();

    let listed: Value = json_of(app.with_key(&admin_key).get("/v1/admin/dead-letters")).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Replay as is: invalid -> 400, nothing appended.
    let id = records[0].id;
    let response = app
        .with_key(&admin_key)
        .post(&format!("/v1/admin/dead-letters/{id}/replay"))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST).await;
    // Replay corrected: 200 with the new entry id.
    let response = app
        .with_key(&admin_key)
        .post(&format!("/v1/admin/dead-letters/{id}/replay"))
        .json(&json!({"payload": fixable}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replayed: Value = response.json().await.unwrap();
    assert!(replayed["entry_id"].is_string());
    let appended = app.appended().await;
    assert_eq!(appended, vec![(Priority::Low, fixable.id.to_string())]);
    // Twice: 409. Unknown: 404.
    let again = app
        .with_key(&admin_key)
        .post(&format!("/v1/admin/dead-letters/{id}/replay"))
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::CONFLICT).await;
    let unknown = app
        .with_key(&admin_key)
        .post(&format!(
            "/v1/admin/dead-letters/{}/replay",
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap();
    problem(unknown, StatusCode::NOT_FOUND).await;

    // Replay all: the garbage one cannot be replayed as it is and is reported.
    let report: Value = json_of(
        app.with_key(&admin_key)
            .post("/v1/admin/dead-letters/replay"),
    )
    .await;
    assert_eq!(report["replayed"], json!([]));
    assert_eq!(report["failed"][0]["id"], records[1].id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_port_metrics_and_admin_endpoints_answer_only_there() {
    let admin_port = testkit::free_port();
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__HTTP__ADMIN_PORT", admin_port.to_string());
    let app = TestApp::spawn_in(env).await;
    let admin_key = api_keys::create(&mut app.env.db().await, "ops", &KeyPolicy::admin())
        .await
        .unwrap();
    let admin_base = format!("http://127.0.0.1:{admin_port}");
    let status = |base: &str, path: &str, key: Option<&str>| {
        let mut request = app.http.get(format!("{base}{path}"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        async move { request.send().await.unwrap().status() }
    };

    // The main port (what an Ingress forwards): the API and health, no
    // metrics, no admin endpoints.
    assert_eq!(
        status(&app.base, "/metrics", None).await,
        StatusCode::NOT_FOUND
    );
    let hidden = app
        .with_key(&admin_key)
        .get("/v1/admin/templates")
        .send()
        .await
        .unwrap();
    problem(hidden, StatusCode::NOT_FOUND).await;
    assert_eq!(status(&app.base, "/healthz", None).await, StatusCode::OK);
    assert_eq!(status(&app.base, "/readyz", None).await, StatusCode::OK);
    assert_eq!(
        app.post(&json!({"user_id": "ida", "title": "hi", "body": "b"}))
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    // The admin port: metrics, admin endpoints, health; not the API.
    let metrics = app
        .http
        .get(format!("{admin_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("herald_http_requests_total")
    );
    assert_eq!(
        status(&admin_base, "/v1/admin/templates", Some(&admin_key)).await,
        StatusCode::OK
    );
    assert_eq!(status(&admin_base, "/healthz", None).await, StatusCode::OK);
    let api_on_admin = app
        .http
        .post(format!("{admin_base}/v1/notifications"))
        .header("x-api-key", &app.key)
        .json(&json!({"user_id": "ida", "title": "hi", "body": "b"}))
        .send()
        .await
        .unwrap();
    problem(api_on_admin, StatusCode::NOT_FOUND).await;
}
