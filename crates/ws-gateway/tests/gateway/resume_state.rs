//! A device that was away comes back exact without refetching pages: it
//! reconnects with `since` and `since_version`, and the `state` frames bring
//! every notification it holds to the state the REST API reports.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::ws::WsClient;

use crate::support::{Api, TestGateway, WAIT, seed};

/// The state fields a device keeps per notification.
const FIELDS: [&str; 4] = ["read_at", "seen_at", "archived_at", "snoozed_until"];

/// What a device holds: each notification's state fields, by id.
type Held = BTreeMap<String, BTreeMap<&'static str, Value>>;

fn held_from(items: &[Value]) -> Held {
    items
        .iter()
        .map(|n| {
            let fields = FIELDS.iter().map(|f| (*f, n[*f].clone())).collect();
            (n["id"].as_str().unwrap().to_owned(), fields)
        })
        .collect()
}

/// Every listed notification of the user, in any state, as the REST API
/// reports it.
async fn rest_state(api: &Api<'_>) -> Held {
    let page = api.json("/v1/me/notifications?status=all&limit=100").await;
    held_from(page["items"].as_array().unwrap())
}

/// Connects as `user` resuming from `since` and `since_version`; answers
/// the client and its hello.
async fn reconnect(
    gw: &TestGateway,
    user: &str,
    since: i64,
    since_version: i64,
) -> (WsClient, Value) {
    gw.connect_with(
        user,
        &format!("since={since}&since_version={since_version}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_away_ends_with_exactly_the_state_rest_reports() {
    let gw = TestGateway::spawn().await;
    // seq 1, 3, 5, 7: orders; 2, 4, 6, 8: social.
    let stored = seed(&gw, "dev", 8).await;
    let api = Api::new(&gw, "dev");
    let ids: Vec<String> = stored.iter().map(|n| n.id.to_string()).collect();

    // The laptop holds everything, as of its hello; then it goes away.
    let (laptop, hello) = gw.connect("dev").await;
    let mut held = rest_state(&api).await;
    let since_version = hello["version"].as_i64().unwrap();
    drop(laptop);

    // Meanwhile the phone reads, archives, snoozes, sees, mutes.
    let (mut phone, _) = gw.connect("dev").await;
    let next_change = async |phone: &mut WsClient| {
        let frame = phone.next_json(WAIT).await.expect("a change frame");
        assert_ne!(frame["type"], "error", "{frame}");
    };
    phone
        .send_text(&json!({"type": "read", "ids": [ids[0], ids[1], ids[2]]}).to_string())
        .await;
    next_change(&mut phone).await;
    for (path, body) in [
        (format!("/v1/me/notifications/{}/archive", ids[3]), None),
        (
            format!("/v1/me/notifications/{}/snooze", ids[4]),
            Some(json!({"until": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()})),
        ),
        (format!("/v1/me/notifications/{}/unread", ids[1]), None),
        (
            "/v1/me/notifications/seen".to_owned(),
            Some(json!({"up_to_seq": 6})),
        ),
    ] {
        let response = match body {
            Some(body) => api.post_json(&path, &body).await,
            None => api.post(&path).await,
        };
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        next_change(&mut phone).await;
    }
    let muted = api
        .http
        .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
        .bearer_auth(&api.token)
        .json(&json!({"locale": null, "timezone": null, "muted_categories": ["social"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(muted.status(), StatusCode::OK);
    next_change(&mut phone).await;
    // One that arrived while away is sent whole, after the state.
    let mut late = testkit::new_notification("dev", 9, domain::Priority::Normal);
    late.category = Some("orders".into());
    testkit::store_batch(&mut gw.env.db().await, &[late], chrono::Utc::now())
        .await
        .unwrap();

    // The laptop comes back.
    let (mut laptop, hello) = reconnect(&gw, "dev", 8, since_version).await;
    let now_version = hello["version"].as_i64().unwrap();
    let mut told = 0;
    loop {
        let frame = laptop.next_json(WAIT).await.expect("state frames");
        assert_eq!(frame["type"], "state", "state frames come first: {frame}");
        for item in frame["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            let Some(fields) = held.get_mut(id) else {
                panic!("told about {id}, which it does not hold");
            };
            assert!(item["version"].as_i64().unwrap() > since_version, "{item}");
            for field in FIELDS {
                fields.insert(field, item.get(field).cloned().unwrap_or(Value::Null));
            }
            told += 1;
        }
        if frame["version"] == now_version {
            break;
        }
    }
    assert_eq!(told, 6, "the six it holds that changed, once each");
    let mut rest = rest_state(&api).await;
    rest.retain(|id, _| held.contains_key(id));
    assert_eq!(held, rest, "the device's state == REST's");
    let late = laptop.next_json(WAIT).await.expect("the late one");
    assert_eq!(
        (&late["type"], &late["seq"]),
        (&json!("notification"), &json!(9))
    );
    assert_eq!(
        hello["counts"],
        api.json("/v1/me/unread-count").await["counts"]
    );

    // From its new version nothing is left to tell; one it never had
    // (the server's storage was reset) asks it to list again.
    let (mut again, hello) = reconnect(&gw, "dev", 9, now_version).await;
    let frame = again.next_json(WAIT).await.unwrap();
    assert_eq!(
        frame,
        json!({"type": "state", "items": [], "version": hello["version"]})
    );
    let (mut ahead, _) = reconnect(&gw, "dev", 9, now_version + 100).await;
    assert_eq!(ahead.next_json(WAIT).await, Some(json!({"type": "resync"})));
    assert_eq!(laptop.next_json(Duration::from_millis(200)).await, None);
}

/// A device away while its user was erased (and notified again) resumes
/// with the `since` and `epoch` of the inbox it held: the gateway sends the
/// new inbox from its start, nothing of the old one's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_away_during_an_erasure_gets_the_new_inbox_from_its_start() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__WORKER__TIMERS_INTERVAL_MS", "100");
    let gw = TestGateway::spawn_in(env).await;
    let _worker = crate::support::start_worker(&gw.env).await;
    seed(&gw, "eve", 3).await;
    let (laptop, hello) = gw.connect("eve").await;
    let (old_epoch, since_version) = (hello["epoch"].as_i64().unwrap(), hello["version"].clone());
    assert_ne!(old_epoch, 0, "an inbox has an epoch");
    drop(laptop);

    let mut db = gw.env.db().await;
    platform::storage::erasures::request(&mut db, "eve", None)
        .await
        .unwrap();
    testkit::eventually("eve erased", Duration::from_secs(10), || async {
        let state = platform::storage::inbox::state(&mut gw.env.db().await, "eve")
            .await
            .unwrap();
        (state.last_seq == 0).then_some(())
    })
    .await;
    // While nothing is stored yet, the epoch is unknown (0).
    let (_, empty) = gw.connect("eve").await;
    assert_eq!(
        (&empty["epoch"], &empty["last_seq"]),
        (&json!(0), &json!(0))
    );
    let new = seed(&gw, "eve", 2).await;

    let (mut laptop, hello) = gw
        .connect_with(
            "eve",
            &format!("since=3&since_version={since_version}&epoch={old_epoch}"),
        )
        .await;
    let new_epoch = hello["epoch"].as_i64().unwrap();
    assert!(new_epoch != 0 && new_epoch != old_epoch, "{hello}");
    assert_eq!(hello["last_seq"], 2);
    let mut frames = Vec::new();
    while let Some(frame) = laptop.next_json(Duration::from_millis(500)).await {
        frames.push(frame);
    }
    let sent: Vec<(&str, i64, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap(),
                f["seq"].as_i64().unwrap_or(0),
                f["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let (one, two) = (new[0].id.to_string(), new[1].id.to_string());
    assert_eq!(
        sent,
        [
            ("notification", 1, one.as_str()),
            ("notification", 2, two.as_str())
        ],
        "the new inbox from its start, no state of the old one"
    );

    // Resuming in the new inbox is an ordinary resume.
    let (mut again, _) = gw
        .connect_with("eve", &format!("since=1&epoch={new_epoch}"))
        .await;
    let next = again.next_json(WAIT).await.expect("seq 2");
    assert_eq!((&next["seq"], &next["id"]), (&json!(2), &json!(two)));
    assert_eq!(again.next_json(Duration::from_millis(300)).await, None);
}
