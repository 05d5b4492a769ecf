//! `GET /v1/notifications/{id}`: a notification's place as it moves
//! (queued, processing, stored with the user's state, muted, expired,
//! dead-lettered), read from the real stream and rows; unknown ids and
//! other tenants' notifications are not found.

use chrono::{Duration, Utc};
use domain::{NewNotification, Priority};
use platform::storage::api_keys::KeyPolicy;
use platform::storage::dead_letters::{self, NewDeadLetter};
use platform::storage::inbox::{self, Change, Target};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{TestApp, json_of, problem, valid};

async fn status(app: &TestApp, key: &str, id: Uuid) -> reqwest::Response {
    app.with_key(key)
        .get(&format!("/v1/notifications/{id}"))
        .send()
        .await
        .unwrap()
}

async fn status_json(app: &TestApp, id: Uuid) -> Value {
    json_of(
        app.with_key(&app.key)
            .get(&format!("/v1/notifications/{id}")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_followed_from_the_stream_to_the_inbox() {
    let app = TestApp::spawn().await;
    let accepted = app.post(&valid("tom")).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let id: Uuid = accepted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let queued = status_json(&app, id).await;
    assert_eq!(
        (&queued["status"], &queued["user_id"], &queued["priority"]),
        (&"queued".into(), &"tom".into(), &"normal".into()),
        "{queued}"
    );
    assert!(queued["state"].is_null());

    // A consumer of the group reads it: processing until acknowledged.
    assert_eq!(app.appended().await.len(), 1);
    let processing = status_json(&app, id).await;
    assert_eq!(processing["status"], "processing", "{processing}");

    // Stored (as the worker would), then seen and read by the user.
    let mut stored = testkit::new_notification("tom", 0, Priority::Normal);
    stored.id = id;
    let mut conn = app.env.db().await;
    testkit::store_batch(&mut conn, &[stored], Utc::now())
        .await
        .unwrap();
    let fresh = status_json(&app, id).await;
    assert_eq!(
        (&fresh["status"], &fresh["seq"], &fresh["category"]),
        (&"stored".into(), &1.into(), &"tests".into()),
        "{fresh}"
    );
    assert!(fresh["stored_at"].is_string());
    assert!(fresh["state"]["read_at"].is_null());
    inbox::apply(&mut conn, "tom", Target::Ids(&[id]), Change::Read)
        .await
        .unwrap();
    let read = status_json(&app, id).await;
    assert!(read["state"]["read_at"].is_string(), "{read}");
    assert!(
        read["state"]["seen_at"].is_string(),
        "read ones are seen: {read}"
    );
    assert!(read["state"]["archived_at"].is_null());

    // Another tenant's key does not find it; nor does anyone an unknown id.
    let tenant = app
        .create_key(&KeyPolicy {
            tenant: Some("acme".into()),
            ..KeyPolicy::producer()
        })
        .await;
    let hidden = problem(status(&app, &tenant, id).await, StatusCode::NOT_FOUND).await;
    assert_eq!(hidden["status"], 404);
    problem(
        status(&app, &app.key, Uuid::now_v7()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_expired_and_dead_lettered_notifications_say_so() {
    let app = TestApp::spawn().await;
    let mut conn = app.env.db().await;
    let user = "una";
    let preferences = domain::Preferences {
        muted_categories: vec!["promos".into()],
        ..domain::Preferences::default()
    };
    inbox::set_preferences(&mut conn, user, &preferences)
        .await
        .unwrap();
    let mut muted = testkit::new_notification(user, 0, Priority::Low);
    muted.category = Some("promos".into());
    let mut expired = testkit::new_notification(user, 1, Priority::High);
    expired.expires_at = Some(Utc::now() - Duration::seconds(1));
    testkit::store_batch_muting(&mut conn, &[muted.clone(), expired.clone()], Utc::now())
        .await
        .unwrap();
    let muted_status = status_json(&app, muted.id).await;
    assert_eq!(muted_status["status"], "muted", "{muted_status}");
    let expired_status = status_json(&app, expired.id).await;
    assert_eq!(
        (&expired_status["status"], &expired_status["seq"]),
        (&"expired".into(), &Value::Null),
        "stored already expired: no seq: {expired_status}"
    );

    let letter: NewNotification = testkit::new_notification(user, 2, Priority::Normal);
    let record = NewDeadLetter::new(
        domain::Shard::FIRST,
        Priority::Normal,
        "1-1",
        &serde_json::to_string(&letter).unwrap(),
        "template not found",
        1,
    );
    dead_letters::record(&mut conn, std::slice::from_ref(&record))
        .await
        .unwrap();
    let dead = status_json(&app, letter.id).await;
    assert_eq!(
        (
            &dead["status"],
            &dead["user_id"],
            &dead["dead_letter"]["error"]
        ),
        (
            &"dead_lettered".into(),
            &user.into(),
            &"template not found".into()
        ),
        "{dead}"
    );
    assert_eq!(dead["dead_letter"]["id"], record.id.to_string());
}

/// `sockets_written` reads what gateways added in Redis (the same keys,
/// written here through the gateways' own call), for stored ones within
/// `gateway.sockets_written_ttl_secs` of their creation; `null` otherwise,
/// and always with counting off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_written_is_counted_within_its_ttl_and_null_otherwise() {
    let app = TestApp::spawn().await;
    let made = |ago: Duration| domain::ids::first_id_at(Utc::now() - ago);
    let (fresh, old) = (made(Duration::seconds(1)), made(Duration::hours(2)));
    let mut conn = app.env.db().await;
    for (n, id) in [fresh, old].into_iter().enumerate() {
        let mut stored = testkit::new_notification("ivy", n, Priority::Normal);
        stored.id = id;
        testkit::store_batch(&mut conn, &[stored], Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(
        status_json(&app, fresh).await["sockets_written"],
        0,
        "none yet"
    );
    let shard = app.redis.keys().shard_of("ivy");
    let ttl = std::time::Duration::from_secs(3600);
    for _ in 0..2 {
        app.redis
            .add_sockets_written(&[(shard, fresh, 2), (shard, old, 1)], ttl)
            .await
            .unwrap();
    }
    assert_eq!(
        status_json(&app, fresh).await["sockets_written"],
        4,
        "added up"
    );
    assert!(
        status_json(&app, old).await["sockets_written"].is_null(),
        "past the TTL: not known"
    );

    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__GATEWAY__SOCKETS_WRITTEN_TTL_SECS", "0");
    let off = TestApp::spawn_in(env).await;
    let mut stored = testkit::new_notification("ivy", 0, Priority::Normal);
    stored.id = made(Duration::seconds(1));
    testkit::store_batch(&mut off.env.db().await, &[stored.clone()], Utc::now())
        .await
        .unwrap();
    assert!(status_json(&off, stored.id).await["sockets_written"].is_null());
}
