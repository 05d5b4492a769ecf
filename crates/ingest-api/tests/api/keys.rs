//! What a key may do: its scopes, its tenant's users, and its rate, shared
//! by every replica, with the RateLimit headers.

use ingest_api::Application;
use platform::storage::api_keys::{KeyPolicy, Scope, Scopes};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, error_fields, problem, valid};

fn limited(per_sec: f64, burst: u32) -> KeyPolicy {
    KeyPolicy {
        rate_per_sec: Some(per_sec),
        burst: Some(burst),
        ..KeyPolicy::producer()
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers()[name].to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_over_its_rate_gets_429_on_every_replica_and_nothing_appended() {
    let app = TestApp::spawn().await;
    // 5 at once, then one every 10 s: nothing refills during the test.
    let key = app.create_key(&limited(0.1, 5)).await;
    let replica = testkit::service::start::<Application>(&app.env.settings()).await;
    let replica_url = format!("http://127.0.0.1:{}/v1/notifications", replica.port);

    let mut accepted = Vec::new();
    for n in 0..5 {
        // Alternate replicas: they share one limit.
        let request = if n % 2 == 0 {
            app.with_key(&key).post("/v1/notifications")
        } else {
            app.http.post(&replica_url).header("x-api-key", &key)
        };
        let response = request.json(&valid("alice")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "ratelimit-policy"), "\"key\";q=5;w=50");
        assert!(
            header(&response, "ratelimit").starts_with(&format!("\"key\";r={};t=", 4 - n)),
            "{}",
            header(&response, "ratelimit")
        );
        let body: serde_json::Value = response.json().await.unwrap();
        accepted.push(body["id"].as_str().unwrap().to_owned());
    }

    for request in [
        app.with_key(&key).post("/v1/notifications"),
        app.http.post(&replica_url).header("x-api-key", &key),
    ] {
        let response = request.json(&valid("alice")).send().await.unwrap();
        let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
        assert!((1..=10).contains(&retry_after), "{retry_after}");
        assert!(header(&response, "ratelimit").starts_with("\"key\";r=0;t="));
        let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(body["type"], "https://herald.dev/problems/rate-limited");
    }

    // Another key has its own budget.
    let response = app.post(&valid("bob")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let other: serde_json::Value = response.json().await.unwrap();
    accepted.push(other["id"].as_str().unwrap().to_owned());

    let appended: Vec<String> = app.appended().await.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        appended, accepted,
        "what was answered 202 is what was appended"
    );

    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_ingest_notifications_rejected_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_counts_its_items_and_one_over_the_burst_is_413() {
    let app = TestApp::spawn().await;
    let key = app.create_key(&limited(0.1, 10)).await;
    let batch = |n: usize| json!({ "notifications": vec![valid("alice"); n] });

    let response = app
        .with_key(&key)
        .post("/v1/notifications/batch")
        .json(&batch(8))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "ratelimit").starts_with("\"key\";r=2;"));

    let response = app
        .with_key(&key)
        .post("/v1/notifications/batch")
        .json(&batch(3))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::TOO_MANY_REQUESTS).await;

    let response = app
        .with_key(&key)
        .post("/v1/notifications/batch")
        .json(&batch(11))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["type"], "https://herald.dev/problems/batch-over-burst");

    // The two remaining fit.
    let response = app
        .with_key(&key)
        .post("/v1/notifications/batch")
        .json(&batch(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.appended().await.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_endpoint_needs_its_scope() {
    let app = TestApp::spawn().await;
    let only = |scope| KeyPolicy::with_scopes(Scopes::default().with(scope));
    let notify = app.create_key(&only(Scope::Notify)).await;
    let dlq = app.create_key(&only(Scope::Dlq)).await;
    let templates = app.create_key(&only(Scope::Templates)).await;
    let preferences = app.create_key(&only(Scope::Preferences)).await;
    let locale = json!({ "locale": "pt-BR", "timezone": null });

    let cases = [
        (&notify, "PUT", "/v1/users/alice/preferences", "preferences"),
        (&notify, "GET", "/v1/admin/dead-letters", "dlq"),
        (&notify, "GET", "/v1/admin/templates", "templates"),
        (&dlq, "POST", "/v1/notifications", "notify"),
        (&dlq, "GET", "/v1/admin/templates", "templates"),
        (&templates, "GET", "/v1/admin/dead-letters", "dlq"),
        (&preferences, "POST", "/v1/notifications/batch", "notify"),
    ];
    for (key, method, path, needed) in cases {
        let request = match method {
            "PUT" => app.with_key(key).put(path).json(&locale),
            "POST" => app.with_key(key).post(path).json(&valid("alice")),
            _ => app.with_key(key).get(path),
        };
        let body = problem(request.send().await.unwrap(), StatusCode::FORBIDDEN).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("`{needed}`")),
            "{method} {path}: {body}"
        );
    }
    assert!(app.appended().await.is_empty());

    // ...and with it, passes.
    let allowed = [
        app.with_key(&notify)
            .post("/v1/notifications")
            .json(&valid("alice")),
        app.with_key(&preferences)
            .put("/v1/users/alice/preferences")
            .json(&locale),
        app.with_key(&dlq).get("/v1/admin/dead-letters"),
        app.with_key(&templates).get("/v1/admin/templates"),
    ];
    for request in allowed {
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.url());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_key_addresses_only_its_users() {
    let app = TestApp::spawn().await;
    let key = app
        .create_key(&KeyPolicy {
            tenant: Some("tenant-a".into()),
            ..KeyPolicy::producer()
        })
        .await;

    let response = app.post_as(&key, &valid("tenant-a:alice")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let before = app.appended().await.len();
    assert_eq!(before, 1);

    for user in ["tenant-b:alice", "tenant-ab:alice", "alice"] {
        let response = app.post_as(&key, &valid(user)).await;
        let body = problem(response, StatusCode::FORBIDDEN).await;
        assert_eq!(body["type"], "https://herald.dev/problems/forbidden-user");
        assert_eq!(error_fields(&body), ["user_id"]);
    }

    // One foreign item refuses the whole batch.
    let batch = json!({ "notifications": [
        valid("tenant-a:bob"), valid("tenant-b:eve"), valid("tenant-a:carol"), valid("x:y"),
    ]});
    let response = app
        .with_key(&key)
        .post("/v1/notifications/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        error_fields(&body),
        ["notifications[1].user_id", "notifications[3].user_id"]
    );

    let response = app
        .with_key(&key)
        .put("/v1/users/tenant-b:alice/preferences")
        .json(&json!({ "locale": "de" }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN).await;
    assert!(app.appended().await.is_empty(), "nothing more appended");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_guessing_keys_is_shut_out_before_they_are_looked_up() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__AUTH__FAILURES_PER_ADDRESS_BURST", "3");
    env.set("HERALD__AUTH__FAILURES_PER_ADDRESS_PER_MIN", "0.5");
    let app = TestApp::spawn_in(env).await;
    // A producer behind the same address, verified a moment ago.
    let working = app.create_key(&KeyPolicy::producer()).await;
    let response = app.post_as(&working, &valid("alice")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Well-formed and unknown: each would cost a query.
    let guesses = (0..4).map(|n| format!("hrld_{:064x}", n + 1));
    for guess in guesses {
        let response = app.post_as(&guess, &valid("alice")).await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // Shut out now, even with a valid key this process has not verified yet.
    let response = app.post(&valid("alice")).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        body["type"],
        "https://herald.dev/problems/too-many-failures"
    );
    // The producer it verified a moment ago is not locked out by the guesser.
    let response = app.post_as(&working, &valid("alice")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.appended().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_spending_leases_never_exceed_the_shared_rate() {
    let app = TestApp::spawn().await;
    // Leases of 2 units (50 ms of 40/s, a tenth of the burst of 20).
    let key = app.create_key(&limited(40.0, 20)).await;
    let replica = testkit::service::start::<Application>(&app.env.settings()).await;
    let replica_url = format!("http://127.0.0.1:{}/v1/notifications", replica.port);
    let started = std::time::Instant::now();
    let (mut accepted, mut limited_count) = (0u32, 0u32);
    for n in 0..100 {
        let request = if n % 2 == 0 {
            app.with_key(&key).post("/v1/notifications")
        } else {
            app.http.post(&replica_url).header("x-api-key", &key)
        };
        match request.json(&valid("alice")).send().await.unwrap().status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => limited_count += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, plus what the rate refilled meanwhile (one unit of slack
    // for the clock's rounding): leases are taken from the shared state.
    let most = 20.0 + 40.0 * elapsed + 1.0;
    assert!(
        f64::from(accepted) <= most,
        "{accepted} accepted in {elapsed:.2} s, at most {most:.0}"
    );
    assert!(accepted >= 18, "the burst is served: {accepted}");
    assert_eq!(accepted + limited_count, 100);
    assert_eq!(app.appended().await.len(), accepted as usize);
}
