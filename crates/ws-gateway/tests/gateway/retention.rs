//! Retention with a real worker: notifications past the period leave the
//! inbox and the counts with a `trimmed` frame, and a device that was away
//! learns from its `hello` which of the ones it holds are gone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::counts::{assert_counts, next_of};
use crate::support::{Api, TestGateway, WAIT, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_notifications_leave_every_device_and_the_counts() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__RETENTION__DAYS", "30");
    env.set("HERALD__RETENTION__INTERVAL_MS", "100");
    let gw = TestGateway::spawn_in(env).await;
    // seq 1, 3, 5, 7, 9: orders; 2, 4, 6, 8, 10: social.
    let stored = seed(&gw, "rita", 10).await;
    seed(&gw, "otto", 3).await;
    let api = Api::new(&gw, "rita");
    let id = |seq: usize| stored[seq - 1].id;
    assert_eq!(
        api.post(&format!("/v1/me/notifications/{}/read", id(2)))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        api.post(&format!("/v1/me/notifications/{}/archive", id(3)))
            .await
            .status(),
        StatusCode::OK
    );

    // The laptop holds all ten, then goes away; the phone stays.
    let (laptop, hello) = gw.connect("rita").await;
    let since_version = hello["version"].as_i64().unwrap();
    assert_eq!(hello["trimmed_through"], 0);
    drop(laptop);
    let (mut phone, _) = gw.connect("rita").await;

    // seq 1-6 were stored 31 days ago; otto's are new.
    let mut db = gw.env.db().await;
    testkit::backdate(&mut db, "rita", 6, 31).await;

    let _worker = crate::support::start_worker(&gw.env).await;
    let trimmed = next_of(&mut phone, "trimmed", Duration::from_secs(10)).await;
    assert_eq!(trimmed["up_to_seq"], 6);
    // 10 unread less the read 2 and the archived 3; of 1-6, 1, 4, 5, 6
    // counted: 7-10 are left, two in each category.
    assert_eq!(
        assert_counts(&gw, &api, "rita", &trimmed).await,
        json!({"unread": 4, "unseen": 4, "by_category": {
            "orders": {"unread": 2, "unseen": 2},
            "social": {"unread": 2, "unseen": 2},
        }})
    );
    assert!(trimmed["version"].as_i64().unwrap() > since_version);
    let listed: Vec<i64> = api.json("/v1/me/notifications?status=all").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [10, 9, 8, 7]);
    let response = api
        .post(&format!("/v1/me/notifications/{}/read", id(1)))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "gone for good");
    assert_eq!(
        platform::storage::inspect::count_for_user(&mut db, "otto")
            .await
            .unwrap(),
        3,
        "within the period"
    );

    // The laptop comes back: its hello says what went, the resume sends
    // nothing stored before it (nothing new), and no state of a gone one.
    let (mut laptop, hello) = gw
        .connect_with("rita", &format!("since=10&since_version={since_version}"))
        .await;
    assert_eq!(hello["trimmed_through"], 6);
    assert_eq!(hello["counts"], trimmed["counts"]);
    assert_eq!(hello["version"], trimmed["version"]);
    // Nothing changed of what is left, and a deleted one has no state.
    let state = laptop.next_json(WAIT).await.expect("the state frame");
    assert_eq!(
        (&state["type"], &state["items"], &state["version"]),
        (&json!("state"), &json!([]), &hello["version"])
    );
    assert_eq!(
        laptop.next_json(Duration::from_millis(300)).await,
        None,
        "nothing to resume"
    );
    // A device resuming from before the trim gets what is left after it.
    let (mut old, hello) = gw.connect_with("rita", "since=2").await;
    assert_eq!(hello["trimmed_through"], 6);
    let mut resumed = Vec::new();
    while resumed.len() < 4 {
        let frame: Value = old.next_json(WAIT).await.expect("the ones left");
        assert_eq!(frame["type"], "notification", "{frame}");
        resumed.push(frame["seq"].as_i64().unwrap());
    }
    assert_eq!(resumed, [7, 8, 9, 10]);

    // New ones go on from the sequence; nothing more is trimmed (five
    // retention intervals later, only storing the new one moved anything).
    seed(&gw, "rita", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = platform::storage::inbox::state(&mut db, "rita")
        .await
        .unwrap();
    assert_eq!((state.last_seq, state.trimmed_through), (11, 6));
    assert_eq!(
        state.version,
        trimmed["version"].as_i64().unwrap() + 1,
        "the new one only"
    );
}
