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
async fn assert_counts(gw: &TestGateway, api: &Api<'_>, user: &str, frame: &Value) -> Value {
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
