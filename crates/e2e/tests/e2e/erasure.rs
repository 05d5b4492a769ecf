//! Erasing a user through ingest-api (real processes): stored, read,
//! muted, dead-lettered and still-queued notifications of the user, their
//! preferences and inbox all go; their socket gets `erased` and closes
//! 4004; afterwards no table row and no Redis key under the prefix
//! mentions the user, another user's data is untouched, and the user's
//! next notification starts a new inbox.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::ws::{Ended, WsClient};
use testkit::{eventually, sign_token};

use crate::support::{Stack, start};

/// Distinctive, so any trace of it is found by a plain substring search.
const ERASED: &str = "erase-me-7f3a";
const KEPT: &str = "keep-me-2c9d";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_user_leaves_no_trace_in_any_table_or_key() {
    let stack = Stack::new().await;
    let mut vars = stack.vars();
    vars.insert("HERALD__WORKER__TIMERS_INTERVAL_MS".into(), "200".into());
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let gateway = start("ws-gateway", &vars, &stack.logs).await;
    let worker = start("stream-worker", &vars, &stack.logs).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", ingest.port);
    let inbox = format!("http://127.0.0.1:{}", gateway.port);
    let send = |user: &'static str, n: usize| {
        http.post(format!("{base}/v1/notifications"))
            .header("x-api-key", &stack.key)
            .json(&json!({"user_id": user, "title": format!("t{n}"), "body": "b", "category": "orders"}))
            .send()
    };

    // The user's history: stored, some read, a preference of each kind,
    // and a dead letter (a template that does not exist, appended directly).
    for n in 0..20 {
        assert_eq!(
            send(ERASED, n).await.unwrap().status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(send(KEPT, n).await.unwrap().status(), StatusCode::ACCEPTED);
    }
    let redis = stack.env.redis().await;
    let mut poisoned = testkit::new_notification(ERASED, 99, domain::Priority::Normal);
    poisoned.template = Some(domain::TemplateRef {
        key: "no-such-template".into(),
        version: 1,
        params: Default::default(),
        locale: None,
    });
    testkit::append(&redis, &poisoned).await;
    let token = sign_token(ERASED, 600);
    eventually(
        "the user's notifications stored",
        Duration::from_secs(10),
        || async { (unread_of(&http, &inbox, &token).await == Some(20)).then_some(()) },
    )
    .await;
    let kept_token = sign_token(KEPT, 600);
    eventually(
        "the other user's stored",
        Duration::from_secs(10),
        || async { (unread_of(&http, &inbox, &kept_token).await == Some(20)).then_some(()) },
    )
    .await;
    let read = http
        .post(format!("{inbox}/v1/me/notifications/read-all"))
        .bearer_auth(&token)
        .json(&json!({"category": "orders", "before_seq": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let muted = http
        .put(format!("{inbox}/v1/me/preferences"))
        .bearer_auth(&token)
        .json(&json!({"locale": "de", "timezone": "Europe/Berlin", "muted_categories": ["promos"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(muted.status(), StatusCode::OK);
    eventually(
        "the dead letter recorded",
        Duration::from_secs(10),
        || async {
            let mut conn = stack.env.db().await;
            let tables = platform::storage::inspect::tables_mentioning(&mut conn, ERASED)
                .await
                .unwrap();
            tables
                .iter()
                .any(|(table, _)| table == "dead_letters")
                .then_some(())
        },
    )
    .await;

    let (mut erased_ws, _) = WsClient::connect_user(gateway.port, &token).await;
    let (mut kept_ws, _) = WsClient::connect_user(gateway.port, &kept_token).await;

    // Queued while no worker runs: the erasure drops them.
    drop(worker);
    for n in 20..25 {
        assert_eq!(
            send(ERASED, n).await.unwrap().status(),
            StatusCode::ACCEPTED
        );
    }
    let erase = |user: &str, key: &str| {
        http.delete(format!("{base}/v1/users/{user}"))
            .header("x-api-key", key)
            .send()
    };
    let asked = erase(ERASED, &stack.key).await.unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let location = asked.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = asked.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/erasures/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["status"], "running", "{job}");
    // Asked again while it runs: the same job.
    let again: Value = erase(ERASED, &stack.key)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], job["id"]);
    let status = |location: String| {
        let http = http.clone();
        let key = stack.key.clone();
        let base = base.clone();
        async move {
            http.get(format!("{base}{location}"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
        }
    };
    let running: Value = status(location.clone()).await.json().await.unwrap();
    assert_eq!(running["status"], "running", "no worker yet: {running}");

    let _worker = start("stream-worker", &vars, &stack.logs).await;
    let done: Value = eventually("the erasure done", Duration::from_secs(15), || async {
        let job: Value = status(location.clone()).await.json().await.unwrap();
        (job["status"] == "done").then_some(job)
    })
    .await;
    assert!(done["finished_at"].is_string(), "{done}");
    // 20 stored; the queued ones were either dropped from the stream or
    // stored by the restarted worker first and then erased.
    let erased = done["notifications_erased"].as_i64().unwrap();
    let dropped = done["entries_dropped"].as_i64().unwrap();
    assert!((20..=25).contains(&erased), "{done}");
    assert!(dropped >= 1, "the dead letter at least: {done}");

    // Queued ones the restarted worker read before the erasure deleted
    // them were stored (and pushed) first, then erased.
    loop {
        let frame = erased_ws
            .next_json(Duration::from_secs(5))
            .await
            .expect("the erased frame");
        if frame["type"] == "erased" {
            break;
        }
        assert_eq!(frame["type"], "notification", "{frame}");
    }
    assert_eq!(
        erased_ws.closed(Duration::from_secs(5)).await,
        Ended::Closed(Some(4004))
    );
    assert!(
        kept_ws
            .next_or_end(Duration::from_millis(300))
            .await
            .is_none(),
        "the other user's socket hears nothing and stays open"
    );

    // Nothing of the user anywhere.
    let mut conn = stack.env.db().await;
    let tables = platform::storage::inspect::tables_mentioning(&mut conn, ERASED)
        .await
        .unwrap();
    assert_eq!(
        tables,
        Vec::<(String, i64)>::new(),
        "rows mentioning the user"
    );
    let keys = redis.keys_mentioning(ERASED).await.unwrap();
    assert_eq!(keys, Vec::<String>::new(), "Redis keys mentioning the user");
    // The other user's data is all there.
    let kept = platform::storage::inspect::tables_mentioning(&mut conn, KEPT)
        .await
        .unwrap();
    assert!(
        kept.contains(&("notifications".to_owned(), 20)),
        "the other user keeps every notification: {kept:?}"
    );
    assert_eq!(unread_of(&http, &inbox, &kept_token).await, Some(20));

    // Afterwards the user starts again: a new inbox, numbered from 1.
    assert_eq!(unread_of(&http, &inbox, &token).await, Some(0));
    assert_eq!(
        send(ERASED, 100).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let (mut fresh_ws, hello) = WsClient::connect_user(gateway.port, &token).await;
    let first = if hello["last_seq"] == 1 {
        hello
    } else {
        fresh_ws
            .next_json(Duration::from_secs(5))
            .await
            .expect("the new notification")
    };
    assert!(
        first["last_seq"] == 1 || first["seq"] == 1,
        "numbered from 1 again: {first}"
    );

    // Refusals: an invalid user id, an unknown job.
    assert_eq!(
        erase("bad%20user", &stack.key).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let unknown = status(format!("/v1/erasures/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    drop((ingest, gateway, _worker));
}

/// The user's unread count from the inbox API.
async fn unread_of(http: &reqwest::Client, inbox: &str, token: &str) -> Option<i64> {
    let answer: Value = http
        .get(format!("{inbox}/v1/me/unread-count"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["unread"].as_i64()
}
