//! The counts every badge shows (`unread`, `unseen`, per category): kept in
//! the same transactions as the rows, equal to a recount from them after
//! every step, and the same in every frame, `hello` and the REST API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::ws::WsClient;

use crate::support::{Api, TestGateway, WAIT, seed};

/// The user's counts three ways: recounted from the rows, kept (REST),
/// and as the newest frame carried them; all three must agree.
pub(crate) async fn assert_counts(
    gw: &TestGateway,
    api: &Api<'_>,
    user: &str,
    frame: &Value,
) -> Value {
    let recount = platform::storage::inspect::recount(&mut gw.env.db().await, user)
        .await
        .unwrap();
    let recount = serde_json::to_value(recount).unwrap();
    let kept = api.json("/v1/me/unread-count").await;
    assert_eq!(kept["counts"], recount, "kept counts == rows");
    assert_eq!(kept["unread"], recount["unread"]);
    assert_eq!(
        frame["counts"], recount,
        "the frame's counts == rows: {frame}"
    );
    assert_eq!(frame["unread"], recount["unread"], "{frame}");
    assert_eq!(frame["version"], kept["version"], "{frame}");
    recount
}

/// Both devices get the same frame; answers it.
async fn on_both(phone: &mut WsClient, laptop: &mut WsClient) -> Value {
    let frame = phone.next_json(WAIT).await.expect("a frame on the phone");
    assert_eq!(
        laptop.next_json(WAIT).await.as_ref(),
        Some(&frame),
        "the other device"
    );
    frame
}

fn counts(unread: i64, unseen: i64, by_category: Value) -> Value {
    json!({"unread": unread, "unseen": unseen, "by_category": by_category})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_unread_and_archive_keep_every_count_exact_on_every_device() {
    let gw = TestGateway::spawn().await;
    // seq 1, 3, 5: orders; 2, 4, 6: social.
    let stored = seed(&gw, "sam", 6).await;
    let api = Api::new(&gw, "sam");
    let (mut phone, hello) = gw.connect("sam").await;
    let (mut laptop, _) = gw.connect("sam").await;
    let both = json!({"unread": 3, "unseen": 3});
    assert_eq!(
        hello["counts"],
        counts(6, 6, json!({"orders": both, "social": both}))
    );
    assert_counts(&gw, &api, "sam", &hello).await;

    // The feed was opened up to seq 4: unseen drops, unread stays.
    phone
        .send_text(&json!({"type": "seen", "up_to_seq": 4}).to_string())
        .await;
    let seen = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        (&seen["type"], &seen["up_to_seq"]),
        (&json!("seen"), &json!(4))
    );
    let one = json!({"unread": 3, "unseen": 1});
    assert_eq!(
        assert_counts(&gw, &api, "sam", &seen).await,
        counts(6, 2, json!({"orders": one, "social": one}))
    );
    let page = api.json("/v1/me/notifications").await;
    let seen_at: Vec<bool> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seen_at"].is_string())
        .collect();
    assert_eq!(
        seen_at,
        [false, false, true, true, true, true],
        "newest first"
    );

    // Reading an unseen one (seq 5) sees it; unread again, it stays seen.
    let five = stored[4].id;
    let read: Value = api
        .post(&format!("/v1/me/notifications/{five}/read"))
        .await
        .json()
        .await
        .unwrap();
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(frame["type"], "read");
    assert_eq!(frame["counts"], read["counts"], "the answer == the frame");
    assert_eq!(
        assert_counts(&gw, &api, "sam", &frame).await,
        counts(
            5,
            1,
            json!({"orders": {"unread": 2, "unseen": 0}, "social": one})
        )
    );
    let again = api
        .post(&format!("/v1/me/notifications/{five}/unread"))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(frame["type"], "unread");
    assert_eq!(
        assert_counts(&gw, &api, "sam", &frame).await,
        counts(
            6,
            1,
            json!({"orders": {"unread": 3, "unseen": 0}, "social": one})
        ),
        "unread again, but seen"
    );

    // Archiving the last unseen one (seq 6) takes it out of both counts;
    // the category keeps its entry while it has unread ones.
    let six = stored[5].id;
    let archived = api
        .post(&format!("/v1/me/notifications/{six}/archive"))
        .await;
    assert_eq!(archived.status(), StatusCode::OK);
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        assert_counts(&gw, &api, "sam", &frame).await,
        counts(
            5,
            0,
            json!({"orders": {"unread": 3, "unseen": 0}, "social": {"unread": 2, "unseen": 0}})
        )
    );
    // Read every social one: the category leaves `by_category`.
    let read = api
        .post("/v1/me/notifications/read-all?category=social")
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        assert_counts(&gw, &api, "sam", &frame).await,
        counts(3, 0, json!({"orders": {"unread": 3, "unseen": 0}}))
    );

    // Seen over REST: nothing unseen is left, so nothing changes and
    // nothing is said.
    let response = api
        .post_json("/v1/me/notifications/seen", &json!({"up_to_seq": 100}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["ids"], json!([]));
    assert_eq!(answer["version"], frame["version"]);
    assert_eq!(laptop.next_json(Duration::from_millis(300)).await, None);

    // A new notification is unread and unseen in its category at once.
    let mut fresh = testkit::new_notification("sam", 9, domain::Priority::Normal);
    fresh.category = Some("billing".into());
    testkit::store_batch(&mut gw.env.db().await, &[fresh], chrono::Utc::now())
        .await
        .unwrap();
    let kept = api.json("/v1/me/unread-count").await;
    assert_eq!(
        kept["counts"]["by_category"]["billing"],
        json!({"unread": 1, "unseen": 1})
    );
    assert_eq!(
        (&kept["counts"]["unread"], &kept["counts"]["unseen"]),
        (&json!(4), &json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_by_rest_tells_every_device_and_bad_ones_are_refused() {
    let gw = TestGateway::spawn().await;
    seed(&gw, "tia", 3).await;
    let api = Api::new(&gw, "tia");
    let (mut phone, _) = gw.connect("tia").await;

    for body in [
        json!({"up_to_seq": -1}),
        json!({"up_to": 2}),
        json!({"up_to_seq": "2"}),
        json!({}),
    ] {
        let response = api.post_json("/v1/me/notifications/seen", &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
    }
    phone
        .send_text(&json!({"type": "seen", "up_to_seq": -3}).to_string())
        .await;
    let refused = phone.next_json(WAIT).await.unwrap();
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("bad_frame"))
    );
    assert_eq!(
        api.json("/v1/me/unread-count").await["counts"]["unseen"],
        3,
        "nothing was applied"
    );

    let response = api
        .post_json("/v1/me/notifications/seen", &json!({"up_to_seq": 2}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["ids"].as_array().unwrap().len(), 2);
    let frame = phone.next_json(WAIT).await.unwrap();
    assert_eq!(
        (&frame["type"], &frame["up_to_seq"], &frame["version"]),
        (&json!("seen"), &json!(2), &answer["version"])
    );
    assert_counts(&gw, &api, "tia", &frame).await;
    assert_eq!(frame["counts"]["unseen"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_takes_a_category_out_of_the_counts_at_once_and_unmuting_brings_it_back() {
    let gw = TestGateway::spawn().await;
    // seq 1, 3, 5: orders; 2, 4, 6: social.
    let stored = seed(&gw, "mo", 6).await;
    let api = Api::new(&gw, "mo");
    let (mut phone, _) = gw.connect("mo").await;
    let (mut laptop, _) = gw.connect("mo").await;
    let put = |muted: Value| {
        api.http
            .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
            .bearer_auth(&api.token)
            .json(&json!({"locale": null, "timezone": null, "muted_categories": muted}))
            .send()
    };
    let three = json!({"unread": 3, "unseen": 3});

    assert_eq!(
        put(json!(["social"])).await.unwrap().status(),
        StatusCode::OK
    );
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        (&frame["type"], &frame["muted"], &frame["unmuted"]),
        (&json!("muted"), &json!(["social"]), &json!([]))
    );
    assert_eq!(
        assert_counts(&gw, &api, "mo", &frame).await,
        counts(3, 3, json!({"orders": three}))
    );
    let unread_page = api.json("/v1/me/notifications?unread=true").await;
    assert!(
        unread_page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["category"] == "orders"),
        "the unread list is what the count counts: {unread_page}"
    );
    // The same mutes again: nothing moves, nothing is said.
    assert_eq!(
        put(json!(["social"])).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(laptop.next_json(Duration::from_millis(300)).await, None);

    // While muted: reading one of its notifications moves no count; a new
    // one is stored (not pushed) and not counted.
    let two = stored[1].id;
    api.post(&format!("/v1/me/notifications/{two}/read")).await;
    let read = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        assert_counts(&gw, &api, "mo", &read).await,
        counts(3, 3, json!({"orders": three}))
    );
    let mut quiet = testkit::new_notification("mo", 9, domain::Priority::Normal);
    quiet.category = Some("social".into());
    testkit::store_prepared(
        &mut gw.env.db().await,
        &[platform::storage::notifications::Prepared {
            muted: true,
            ..quiet.into()
        }],
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        api.json("/v1/me/unread-count").await["counts"],
        counts(3, 3, json!({"orders": three}))
    );

    // Unmuted: its unread ones count again, the one that arrived meanwhile
    // too (2 of the 3 seeded, plus it).
    assert_eq!(put(json!([])).await.unwrap().status(), StatusCode::OK);
    let frame = on_both(&mut phone, &mut laptop).await;
    assert_eq!(
        (&frame["muted"], &frame["unmuted"]),
        (&json!([]), &json!(["social"]))
    );
    assert_eq!(
        assert_counts(&gw, &api, "mo", &frame).await,
        counts(6, 6, json!({"orders": three, "social": three}))
    );
}

/// A user's first preferences create the inbox row, so that a worker
/// storing the user's first notifications at the same time counts them
/// with the mutes that end up stored (it reads them again when it finds
/// the row created meanwhile): after both, the counts equal the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_preferences_racing_first_notifications_leave_exact_counts() {
    use platform::storage::inbox;

    let gw = TestGateway::spawn().await;
    for round in 0..20 {
        let user = format!("racer-{round}");
        let batch: Vec<_> = (0..4)
            .map(|i| {
                let mut n = testkit::new_notification(&user, i, domain::Priority::Normal);
                n.category = Some(if i % 2 == 0 { "orders" } else { "social" }.into());
                n
            })
            .collect();
        let muted = domain::Preferences {
            muted_categories: vec!["social".into()],
            ..domain::Preferences::default()
        };
        let (mut a, mut b) = (gw.env.db().await, gw.env.db().await);
        let (stored, set) = tokio::join!(
            testkit::store_batch_muting(&mut a, &batch, chrono::Utc::now()),
            inbox::set_preferences(&mut b, &user, &muted),
        );
        stored.unwrap();
        set.unwrap();
        let kept = inbox::state(&mut a, &user).await.unwrap().counts;
        assert_eq!(
            kept,
            platform::storage::inspect::recount(&mut a, &user)
                .await
                .unwrap(),
            "{user}: counts == rows"
        );
        assert_eq!((kept.unread, kept.by_category.len()), (2, 1), "{user}");
    }
}

/// The next frame of `kind` on `client` within `within` (other frames are
/// skipped).
pub(crate) async fn next_of(client: &mut WsClient, kind: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(frame) = client.next_json(left).await else {
            panic!("no {kind} frame within {within:?}");
        };
        if frame["type"] == kind {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snoozed_ones_come_back_on_time_across_a_restart_and_expired_ones_leave() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__WORKER__TIMERS_INTERVAL_MS", "100");
    let gw = TestGateway::spawn_in(env).await;
    let now = chrono::Utc::now();
    // seq 1, 3: orders; 2: social, expiring in 3 s.
    let batch: Vec<_> = (0..3)
        .map(|i| {
            let mut n = testkit::new_notification("sia", i, domain::Priority::Normal);
            n.category = Some(if i == 1 { "social" } else { "orders" }.into());
            if i == 1 {
                n.expires_at = Some(now + chrono::Duration::seconds(3));
            }
            n
        })
        .collect();
    let stored = testkit::store_batch(&mut gw.env.db().await, &batch, now)
        .await
        .unwrap()
        .visible;
    let (one, two, three) = (stored[0].id, stored[1].id, stored[2].id);
    let api = Api::new(&gw, "sia");
    let (mut phone, _) = gw.connect("sia").await;
    let snooze = async |id: uuid::Uuid, until: chrono::DateTime<chrono::Utc>| {
        api.post_json(
            &format!("/v1/me/notifications/{id}/snooze"),
            &json!({"until": until.to_rfc3339()}),
        )
        .await
    };
    let listed = async |status: &str| -> Vec<String> {
        api.json(&format!("/v1/me/notifications?status={status}"))
            .await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Bad snoozes change nothing.
    for until in [
        now - chrono::Duration::seconds(1),
        now + chrono::Duration::days(400),
    ] {
        let response = snooze(one, until).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{until}");
    }
    let response = api
        .post_json(
            &format!("/v1/me/notifications/{one}/snooze"),
            &json!({"until": "tomorrow"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = snooze(uuid::Uuid::now_v7(), now + chrono::Duration::hours(1)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // No worker runs yet: seq 3 snoozed for a second stays snoozed past it.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(1);
    let answer: Value = snooze(three, soon).await.json().await.unwrap();
    assert_eq!(answer["ids"], json!([three]));
    let frame = next_of(&mut phone, "snoozed", WAIT).await;
    assert_eq!(frame["ids"], json!([three]));
    assert_eq!(
        assert_counts(&gw, &api, "sia", &frame).await,
        counts(
            2,
            2,
            json!({"orders": {"unread": 1, "unseen": 1}, "social": {"unread": 1, "unseen": 1}})
        )
    );
    assert_eq!(listed("active").await, [two.to_string(), one.to_string()]);
    assert_eq!(listed("snoozed").await, [three.to_string()]);
    // Snoozed again for an hour, then back to a second: no count moves.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let again: Value = snooze(three, later).await.json().await.unwrap();
    assert_eq!(
        (&again["ids"], &again["counts"]),
        (&json!([three]), &frame["counts"])
    );
    next_of(&mut phone, "snoozed", WAIT).await;
    let again: Value = snooze(three, soon).await.json().await.unwrap();
    assert_eq!(again["counts"], frame["counts"]);
    next_of(&mut phone, "snoozed", WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        listed("snoozed").await,
        [three.to_string()],
        "nothing wakes it yet"
    );

    // A worker starts (as after a restart): it comes back at once, and the
    // social one expires at its time.
    let _worker = crate::support::start_worker(&gw.env).await;
    let back = next_of(&mut phone, "unsnoozed", Duration::from_secs(10)).await;
    assert_eq!(back["ids"], json!([three]));
    assert_counts(&gw, &api, "sia", &back).await;
    assert_eq!(back["counts"]["unread"], 3);
    let expired = next_of(&mut phone, "expired", Duration::from_secs(10)).await;
    assert_eq!(expired["ids"], json!([two]));
    assert!(
        chrono::Utc::now() >= now + chrono::Duration::seconds(3),
        "not before its time"
    );
    assert_eq!(
        assert_counts(&gw, &api, "sia", &expired).await,
        counts(2, 2, json!({"orders": {"unread": 2, "unseen": 2}}))
    );
    assert_eq!(listed("all").await, [three.to_string(), one.to_string()]);
    let response = api.post(&format!("/v1/me/notifications/{two}/read")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "expired: gone");

    // Snoozed while running: back within the timer interval of its time;
    // unsnoozed by hand: back at once.
    snooze(one, chrono::Utc::now() + chrono::Duration::seconds(1)).await;
    next_of(&mut phone, "snoozed", WAIT).await;
    let back = next_of(&mut phone, "unsnoozed", Duration::from_secs(10)).await;
    assert_eq!(back["ids"], json!([one]));
    snooze(one, chrono::Utc::now() + chrono::Duration::hours(1)).await;
    next_of(&mut phone, "snoozed", WAIT).await;
    let answer: Value = api
        .post(&format!("/v1/me/notifications/{one}/unsnooze"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ids"], json!([one]));
    let back = next_of(&mut phone, "unsnoozed", WAIT).await;
    assert_counts(&gw, &api, "sia", &back).await;
    assert_eq!(back["counts"]["unread"], 2);
}
