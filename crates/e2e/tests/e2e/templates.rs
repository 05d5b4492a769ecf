//! Two users with different languages receive the same template, each in
//! their own language, over their WebSockets (real processes).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::processes::run_binary;
use testkit::ws::WsClient;

use crate::support::{Stack, start, stdout_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_template_arrives_in_each_users_language() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let admin = stdout_line(
        &run_binary(
            "ingest-api",
            &vars,
            &["keys", "create", "--name", "ops", "--admin"],
        ),
        "keys create --admin",
    );
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let _worker = start("stream-worker", &vars, &stack.logs).await;
    let gateway = start("ws-gateway", &vars, &stack.logs).await;
    let http = reqwest::Client::new();
    let ingest_url = |path: &str| format!("http://127.0.0.1:{}{path}", ingest.port);

    let template = json!({
        "params": {"count": "number"},
        "locales": {
            "en": "title = New messages\nbody = { $count ->\n    [one] You have one new message\n   *[other] You have { $count } new messages\n}\n",
            "pl": "title = Nowe wiadomości\nbody = { $count ->\n    [one] Masz jedną nową wiadomość\n    [few] Masz { $count } nowe wiadomości\n   *[many] Masz { $count } nowych wiadomości\n}\n",
            "ja": "title = 新着メッセージ\nbody = 新着メッセージが{ $count }件あります\n"
        }
    });
    let created = http
        .post(ingest_url("/v1/admin/templates/new_messages"))
        .header("x-api-key", &admin)
        .json(&template)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // One user chooses Polish in the app; the producer tells Herald the other reads Japanese.
    let kasia = stack.env.token("kasia", 300);
    let set = http
        .put(format!(
            "http://127.0.0.1:{}/v1/me/preferences",
            gateway.port
        ))
        .bearer_auth(&kasia)
        .json(&json!({"locale": "pl-PL", "timezone": "Europe/Warsaw", "muted_categories": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let set = http
        .put(ingest_url("/v1/users/haruto/preferences"))
        .header("x-api-key", &stack.key)
        .json(&json!({"locale": "ja", "timezone": "Asia/Tokyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);

    let (mut kasia_ws, _) = WsClient::connect_user(gateway.port, &kasia).await;
    let (mut haruto_ws, _) =
        WsClient::connect_user(gateway.port, &stack.env.token("haruto", 300)).await;
    for user in ["kasia", "haruto"] {
        let response = http
            .post(ingest_url("/v1/notifications"))
            .header("x-api-key", &stack.key)
            .json(&json!({"user_id": user, "template": "new_messages", "params": {"count": 3}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let polish: Value = kasia_ws.next_json(Duration::from_secs(10)).await.unwrap();
    assert_eq!(polish["title"], "Nowe wiadomości");
    assert_eq!(polish["body"], "Masz 3 nowe wiadomości");
    assert_eq!(polish["locale"], "pl");
    let japanese: Value = haruto_ws.next_json(Duration::from_secs(10)).await.unwrap();
    assert_eq!(japanese["title"], "新着メッセージ");
    assert_eq!(japanese["body"], "新着メッセージが3件あります");
    assert_eq!(japanese["locale"], "ja");
}
