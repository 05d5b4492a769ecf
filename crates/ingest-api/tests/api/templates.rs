//! Templates: uploads, checks at ingest, a user's locale, and the template folder loaded at start.

use ingest_api::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;

use crate::support::*;

const ORDER_EN: &str = "title = Order shipped\nbody = { $count ->\n    [one] One item for { $name }\n   *[other] { $count } items for { $name }\n}\n";

const ORDER_PL: &str = "title = Zamówienie wysłane\nbody = { $count ->\n    [one] { $count } przedmiot dla { $name }\n    [few] { $count } przedmioty dla { $name }\n   *[many] { $count } przedmiotów dla { $name }\n}\n";

fn order_template() -> Value {
    json!({"params": {"count": "number", "name": "string"}, "locales": {"en": ORDER_EN, "pl": ORDER_PL}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_upload_is_validated_versioned_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key().await;

    // A producer key may not manage templates.
    problem(
        app.upload("order_shipped", &app.key, &order_template())
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Invalid: a syntax error and an undeclared parameter, with positions; nothing stored.
    let broken = json!({"params": {"count": "number"}, "locales": {
        "en": "title = Hi { $name }\nbody = x\n",
        "de": "title = Hallo\nbody = { $count ->\n    [one] eins\n}\n"}});
    let body = problem(
        app.upload("order_shipped", &admin, &broken).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "https://herald.dev/problems/invalid-template");
    let issues = body["issues"].as_array().unwrap();
    let en = issues.iter().find(|i| i["locale"] == "en").unwrap();
    assert_eq!(
        (en["line"].as_u64(), en["column"].as_u64()),
        (Some(1), Some(14))
    );
    assert!(en["message"].as_str().unwrap().contains("$name"));
    let de = issues.iter().find(|i| i["locale"] == "de").unwrap();
    assert!(de["line"].as_u64().unwrap() >= 2);
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "locales.de")
    );
    let missing = app
        .with_key(&admin)
        .get("/v1/admin/templates/order_shipped")
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "nothing invalid is stored"
    );
    let huge = json!({"locales": {"en": format!("title = a\nbody = {}\n", "x".repeat(17_000))}});
    problem(
        app.upload("huge", &admin, &huge).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Valid: version 1; the same again stays 1; a change makes 2.
    let created = app.upload("order_shipped", &admin, &order_template()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.json::<Value>().await.unwrap()["version"], 1);
    let same: Value = app
        .upload("order_shipped", &admin, &order_template())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["version"], 1);
    let mut changed = order_template();
    changed["locales"]["de"] = json!("title = Versandt\nbody = { $count } Artikel für { $name }\n");
    let v2: Value = app
        .upload("order_shipped", &admin, &changed)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2["version"], 2);

    let list: Value = json_of(app.with_key(&admin).get("/v1/admin/templates")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["version"], 2);
    let v1: Value = json_of(
        app.with_key(&admin)
            .get("/v1/admin/templates/order_shipped?version=1"),
    )
    .await;
    assert!(v1["source"]["locales"]["de"].is_null());

    let deleted = app
        .with_key(&admin)
        .delete("/v1/admin/templates/order_shipped")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = app
        .with_key(&admin)
        .delete("/v1/admin/templates/order_shipped")
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::NOT_FOUND).await;
    let body = problem(
        app.post(&json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "a"}})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_notifications_are_checked_at_ingest() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key().await;
    assert_eq!(
        app.upload("order_shipped", &admin, &order_template())
            .await
            .status(),
        StatusCode::CREATED
    );

    let ok = app
        .post(&json!({"user_id": "u1", "template": "order_shipped", "params": {"count": 3, "name": "Ada"}, "locale": "pl"}))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    let appended = app.appended().await;
    assert_eq!(appended.len(), 1);

    let cases = [
        (
            json!({"user_id": "u", "template": "nope", "params": {}}),
            "template",
            "nope",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"name": "Ada"}}),
            "params.count",
            "order_shipped",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": "three", "name": "Ada"}}),
            "params.count",
            "number",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "Ada", "x": 1}}),
            "params.x",
            "not declared",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "title": "t", "body": "b", "params": {"count": 1, "name": "Ada"}}),
            "template",
            "not both",
        ),
        (json!({"user_id": "u"}), "template", "either"),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": 1, "name": "Ada"}, "locale": "not a tag"}),
            "locale",
            "BCP 47",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped", "params": {"count": [1], "name": "Ada"}}),
            "params.count",
            "string or a number",
        ),
        (
            json!({"user_id": "u", "template": "order_shipped",
                   "params": (0..21).map(|i| (format!("p{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            "params",
            "at most 20",
        ),
    ];
    for (request, field, says) in cases {
        let body = problem(app.post(&request).await, StatusCode::BAD_REQUEST).await;
        let error = &body["errors"][0];
        assert_eq!(error["field"], field, "{request}: {body}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{request}: {body}"
        );
    }
    assert_eq!(
        app.appended().await.len(),
        0,
        "nothing queued for refused requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_can_set_a_users_locale() {
    let app = TestApp::spawn().await;
    let put = |user: &str, body: Value| {
        app.with_key(&app.key)
            .put(&format!("/v1/users/{user}/preferences"))
            .json(&body)
            .send()
    };
    let ok: Value = put(
        "ana",
        json!({"locale": "pt-br", "timezone": "America/Sao_Paulo"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        ok,
        json!({"locale": "pt-BR", "timezone": "America/Sao_Paulo", "muted_categories": []})
    );
    let body = problem(
        put(
            "ana",
            json!({"locale": "xx yy", "timezone": "Nowhere/Land"}),
        )
        .await
        .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields: Vec<&str> = error_fields(&body);
    assert_eq!(fields, ["locale", "timezone"]);
    problem(
        put("bad user", json!({"locale": "en"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_load_from_a_folder_at_start_and_broken_ones_stop_it() {
    let mut env = TestEnv::new().await;
    env.set(
        "HERALD__TEMPLATES__DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates"),
    );
    let app = TestApp::spawn_in(env).await;
    let admin = app.admin_key().await;
    let list: Value = json_of(app.with_key(&admin).get("/v1/admin/templates")).await;
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["new_messages", "order_shipped"]);
    for template in list.as_array().unwrap() {
        assert_eq!(
            template["source"]["locales"].as_object().unwrap().len(),
            3,
            "{}",
            template["key"]
        );
    }
    let ok = app
        .post(&json!({"user_id": "u", "template": "order_shipped", "params": {"count": 2, "name": "Ada"}}))
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);

    // A broken file stops the start, naming file, line and column.
    let broken = std::env::temp_dir().join(format!(
        "herald-templates-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(broken.join("oops")).unwrap();
    std::fs::write(
        broken.join("oops/en.ftl"),
        "title = Hi { $who }\nbody = x\n",
    )
    .unwrap();
    let mut env = TestEnv::new().await;
    env.set("HERALD__TEMPLATES__DIR", broken.to_str().unwrap());
    let err = match testkit::service::try_start::<Application>(&env.settings()).await {
        Ok(_) => panic!("a broken template folder must stop the start"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("oops/en.ftl:1:14"), "{err}");
    let _ = std::fs::remove_dir_all(broken);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_template_is_remembered_briefly_and_forgotten_on_upload() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key().await;
    let templated = json!({"user_id": "ann", "template": "later", "params": {}});
    let source = json!({"locales": {"en": "title = Hi\nbody = Hello\n"}});
    let refused = app.post(&templated).await;
    problem(refused, StatusCode::BAD_REQUEST).await;

    // Another replica stores it (here: straight into PostgreSQL): this
    // process still answers from what it found a moment ago, no query.
    platform::storage::templates::create_version(
        &mut app.env.db().await,
        "later",
        &serde_json::from_value(source.clone()).unwrap(),
    )
    .await
    .unwrap();
    problem(app.post(&templated).await, StatusCode::BAD_REQUEST).await;

    // Uploaded through this process: usable at once.
    let uploaded = app.upload("later", &admin, &source).await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    assert_eq!(app.post(&templated).await.status(), StatusCode::ACCEPTED);
}
