//! Producers changing a user's notification state for them: the same
//! counts and frames as when the user does it, and clear refusals.

use std::time::Duration;

use chrono::Utc;
use domain::Priority;
use platform::redis::RedisSubscriber;
use platform::storage::{inbox, inspect};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::new_notification;

use crate::support::{TestApp, error_fields, problem};

/// Stores `n` notifications for `user`, categories alternating `orders`
/// and `social`; answers their ids in `seq` order.
async fn seed(app: &TestApp, user: &str, n: usize) -> Vec<uuid::Uuid> {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            let mut n = new_notification(user, i, Priority::Normal);
            n.category = Some(if i % 2 == 0 { "orders" } else { "social" }.into());
            n
        })
        .collect();
    testkit::store_batch(&mut app.env.db().await, &batch, Utc::now())
        .await
        .unwrap();
    batch.iter().map(|n| n.id).collect()
}

async fn post(app: &TestApp, user: &str, what: &str, body: &Value) -> reqwest::Response {
    app.with_key(&app.key)
        .post(&format!("/v1/users/{user}/notifications/{what}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_reads_and_archives_for_a_user_with_the_same_frames_and_counts() {
    let app = TestApp::spawn().await;
    let ids = seed(&app, "nia", 6).await;
    let subscriber = RedisSubscriber::connect(&app.env.settings().redis, 64)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("nia").await.unwrap();
    let mut next_frame = async || {
        let frame = tokio::time::timeout(Duration::from_secs(5), frames.recv())
            .await
            .expect("a frame within 5 s")
            .unwrap();
        assert_eq!(frame.user_id, "nia");
        serde_json::from_str::<Value>(&frame.frame).unwrap()
    };
    let unread_rows = async || {
        inspect::count_unread_rows(&mut app.env.db().await, "nia")
            .await
            .unwrap()
    };

    // Two by id (one of them twice in the list: changed once).
    let answer = post(
        &app,
        "nia",
        "read",
        &json!({"ids": [ids[0], ids[1], ids[0]]}),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["unread"], 4);
    assert_eq!(answer["unread"], unread_rows().await);
    let frame = next_frame().await;
    assert_eq!(frame["type"], "read");
    assert_eq!(
        (&frame["ids"], &frame["version"]),
        (&answer["ids"], &answer["version"])
    );

    // Every `orders` one archived: 0, 2, 4 (0 was read: it leaves the
    // list, not the count).
    let answer: Value = post(
        &app,
        "nia",
        "archive",
        &json!({"all": true, "category": "orders"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let mut archived: Vec<String> = answer["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    archived.sort();
    let mut orders = vec![ids[0].to_string(), ids[2].to_string(), ids[4].to_string()];
    orders.sort();
    assert_eq!(archived, orders);
    assert_eq!(answer["unread"], 2);
    assert_eq!(answer["unread"], unread_rows().await);
    let frame = next_frame().await;
    assert_eq!(
        (&frame["type"], &frame["unread"]),
        (&json!("archived"), &json!(2))
    );

    // Everything read (the archived unread ones too: 2, 3, 4, 5); again:
    // nothing changes, no frame, same version.
    let all: Value = post(&app, "nia", "read", &json!({"all": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (all["unread"].as_i64(), all["ids"].as_array().unwrap().len()),
        (Some(0), 4)
    );
    assert_eq!(next_frame().await["type"], "read");
    let again: Value = post(&app, "nia", "read", &json!({"all": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&again["ids"], &again["version"]),
        (&json!([]), &all["version"])
    );
    let state = inbox::state(&mut app.env.db().await, "nia").await.unwrap();
    assert_eq!(
        (state.counts.unread, state.version),
        (0, all["version"].as_i64().unwrap())
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), frames.recv())
            .await
            .is_err(),
        "no frame for a change that changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_names_no_target_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ids = seed(&app, "ola", 2).await;
    let too_many: Vec<uuid::Uuid> = (0..1_001).map(|_| uuid::Uuid::now_v7()).collect();
    for (body, fields) in [
        (json!({}), vec!["ids"]),
        (json!({"ids": [ids[0]], "all": true}), vec!["ids"]),
        (json!({"ids": []}), vec!["ids"]),
        (json!({"ids": too_many}), vec!["ids"]),
        (
            json!({"ids": [ids[0]], "category": "orders"}),
            vec!["category"],
        ),
        (
            json!({"all": true, "category": "no spaces"}),
            vec!["category"],
        ),
    ] {
        let refused = problem(
            post(&app, "ola", "read", &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&refused), fields, "{body}");
    }
    let refused = problem(
        post(&app, "bad%20user", "archive", &json!({"all": true})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&refused), ["user_id"]);
    let unknown = problem(
        post(&app, "ola", "read", &json!({"all": true, "colour": "red"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        unknown["detail"].as_str().unwrap().contains("colour"),
        "{unknown}"
    );
    let state = inbox::state(&mut app.env.db().await, "ola").await.unwrap();
    assert_eq!(
        (state.counts.unread, state.version),
        (2, 1),
        "nothing changed"
    );

    // Both endpoints document these answers.
    let (spec, _) = testkit::openapi(&app.base).await;
    for what in ["read", "archive"] {
        let responses = &spec["paths"][format!("/v1/users/{{user_id}}/notifications/{what}")]["post"]
            ["responses"];
        for status in ["200", "400", "401", "403", "413", "415", "429", "503"] {
            assert!(
                responses[status].is_object(),
                "{what}: {status} in {responses}"
            );
        }
        assert!(responses["400"]["content"]["application/problem+json"].is_object());
        assert_eq!(
            responses["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChangeResult"
        );
    }
}
