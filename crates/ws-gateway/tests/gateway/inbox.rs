//! The inbox REST API and read-state sync between socket and REST.

use std::time::Duration;

use domain::Priority;
use platform::storage::{inbox, notifications};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::new_notification;

use crate::support::{Api, TestGateway, WAIT, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_filters_and_archive() {
    let gw = TestGateway::spawn().await;
    let stored = seed(&gw, "wes", 25).await;
    let api = Api::new(&gw, "wes");

    let mut seen = Vec::new();
    let mut path = "/v1/me/notifications?limit=10".to_owned();
    loop {
        let page = api.json(&path).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["seq"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(before) => path = format!("/v1/me/notifications?limit=10&before={before}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=25).rev().collect::<Vec<_>>(),
        "newest first, every one once"
    );

    let orders = api
        .json("/v1/me/notifications?category=orders&limit=100")
        .await;
    assert!(
        orders["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["category"] == "orders")
    );
    assert_eq!(orders["items"].as_array().unwrap().len(), 13);

    // Read two, archive one unread and one read.
    for n in &stored[..2] {
        assert_eq!(
            api.post(&format!("/v1/me/notifications/{}/read", n.id))
                .await
                .status(),
            StatusCode::OK
        );
    }
    let archived: Value = api
        .post(&format!("/v1/me/notifications/{}/archive", stored[5].id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(archived["unread"], 22);
    let archived: Value = api
        .post(&format!("/v1/me/notifications/{}/archive", stored[0].id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        archived["unread"], 22,
        "archiving a read one leaves the count"
    );
    let unread = api.json("/v1/me/notifications?unread=true&limit=100").await;
    assert_eq!(unread["items"].as_array().unwrap().len(), 22);
    let all = api.json("/v1/me/notifications?limit=100").await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        23,
        "archived ones leave the default list"
    );
    let read_one = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == stored[1].id.to_string())
        .unwrap();
    assert!(read_one["read_at"].is_string());

    let badge = api.json("/v1/me/unread-count").await;
    assert_eq!(badge["unread"], 22);
    assert_eq!(badge["last_seq"], 25);
    assert_eq!(
        badge["unread"],
        platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "wes")
            .await
            .unwrap()
    );

    for bad in ["limit=0", "limit=101", "category=no%20spaces", "colour=red"] {
        let response = api.get(&format!("/v1/me/notifications?{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_notification_is_404_like_an_unknown_one() {
    let gw = TestGateway::spawn().await;
    let theirs = seed(&gw, "xena", 1).await;
    let api = Api::new(&gw, "yuri");
    for path in [
        format!("/v1/me/notifications/{}/read", theirs[0].id),
        format!("/v1/me/notifications/{}/archive", theirs[0].id),
        format!("/v1/me/notifications/{}/read", uuid::Uuid::now_v7()),
        "/v1/me/notifications/not-a-uuid/read".to_owned(),
    ] {
        let response = api.post(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let list = api.json("/v1/me/notifications").await;
    assert_eq!(list["items"], json!([]), "yuri sees nothing of xena's");
    let state = inbox::state(&mut gw.env.db().await, "xena").await.unwrap();
    assert_eq!(state.counts.unread, 1, "xena's state untouched");

    // No token, or a bad one: 401.
    let bare = reqwest::get(format!("http://127.0.0.1:{}/v1/me/unread-count", gw.port))
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let forged = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/me/unread-count", gw.port))
        .bearer_auth(testkit::sign_claims(
            &json!({"sub": "xena", "exp": jsonwebtoken::get_current_timestamp() + 60}),
            "not-the-secret-not-the-secret-xx",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_syncs_between_socket_and_rest_and_devices() {
    let gw = TestGateway::spawn().await;
    let stored = seed(&gw, "zoe", 5).await;
    let api = Api::new(&gw, "zoe");
    let (mut phone, hello) = gw.connect("zoe").await;
    assert_eq!(hello["unread"], 5);
    let (mut laptop, _) = gw.connect("zoe").await;

    // Over the socket.
    phone
        .send_text(&json!({"type": "read", "ids": [stored[0].id, stored[1].id]}).to_string())
        .await;
    let on_phone = phone.next_json(WAIT).await.unwrap();
    let on_laptop = laptop.next_json(WAIT).await.unwrap();
    assert_eq!(on_phone, on_laptop);
    assert_eq!(on_phone["type"], "read");
    assert_eq!(on_phone["unread"], 3);
    let first_version = on_phone["version"].as_i64().unwrap();

    // Reading the same ones again changes nothing and says nothing.
    phone
        .send_text(&json!({"type": "read", "ids": [stored[0].id]}).to_string())
        .await;
    assert_eq!(laptop.next_json(Duration::from_millis(300)).await, None);
    assert_eq!(api.json("/v1/me/unread-count").await["unread"], 3);

    // Over REST: the sockets hear it too.
    let answer: Value = api
        .post(&format!("/v1/me/notifications/{}/read", stored[2].id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["unread"], 2);
    let on_laptop = laptop.next_json(WAIT).await.unwrap();
    assert_eq!(on_laptop["ids"], json!([stored[2].id]));
    assert!(
        on_laptop["version"].as_i64().unwrap() > first_version,
        "version only grows"
    );
    assert_eq!(phone.next_json(WAIT).await.unwrap(), on_laptop);

    // read_all over the socket.
    laptop.send_text(r#"{"type":"read_all"}"#).await;
    let done = phone.next_json(WAIT).await.unwrap();
    assert_eq!(done["unread"], 0);
    assert_eq!(done["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "zoe")
            .await
            .unwrap(),
        0
    );

    // Too many ids: an error frame, nothing changed.
    let many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    phone
        .send_text(&json!({"type": "read", "ids": many}).to_string())
        .await;
    assert_eq!(phone.next_json(WAIT).await.unwrap()["code"], "too_many_ids");
}

/// Mark unread and unarchive undo read and archive: over the socket and
/// REST, every device hears them, the archived view lists what the inbox
/// does not, doing either twice changes nothing, and after every step the
/// count equals the unread rows and the version only grew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_and_unarchive_undo_read_and_archive_on_every_device() {
    let gw = TestGateway::spawn().await;
    let stored = seed(&gw, "uma", 4).await;
    let api = Api::new(&gw, "uma");
    let (mut phone, _) = gw.connect("uma").await;
    let (mut laptop, _) = gw.connect("uma").await;
    let mut version = 0;
    let mut step = async |frame: Value, unread: i64| {
        assert_eq!(
            laptop.next_json(WAIT).await.unwrap(),
            frame,
            "the other device"
        );
        assert_eq!(frame["unread"], unread, "{frame}");
        let now = frame["version"].as_i64().unwrap();
        assert!(now > version, "version only grows: {frame}");
        version = now;
        assert_eq!(
            platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "uma")
                .await
                .unwrap(),
            unread
        );
    };
    let (a, b, c) = (stored[0].id, stored[1].id, stored[2].id);

    phone
        .send_text(&json!({"type": "read", "ids": [a, b]}).to_string())
        .await;
    step(phone.next_json(WAIT).await.unwrap(), 2).await;
    phone
        .send_text(&json!({"type": "unread", "ids": [a, c]}).to_string())
        .await;
    let unread = phone.next_json(WAIT).await.unwrap();
    assert_eq!(
        (unread["type"].clone(), unread["ids"].clone()),
        (json!("unread"), json!([a])),
        "only the read one changes"
    );
    step(unread, 3).await;

    // Archive a read one and an unread one, then bring both back over REST.
    for (id, unread) in [(b, 3), (a, 2)] {
        let answer: Value = api
            .post(&format!("/v1/me/notifications/{id}/archive"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(phone.next_json(WAIT).await.unwrap()["type"], "archived");
        step(json!({"type": "archived", "ids": answer["ids"], "unread": answer["unread"], "version": answer["version"], "counts": answer["counts"]}), unread).await;
    }
    let archived = api.json("/v1/me/notifications?status=archived").await;
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&archived),
        [b.to_string(), a.to_string()],
        "newest first"
    );
    assert!(
        archived["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["archived_at"].is_string())
    );
    assert_eq!(
        ids(&api.json("/v1/me/notifications?status=all").await).len(),
        4
    );
    assert_eq!(ids(&api.json("/v1/me/notifications").await).len(), 2);

    for (id, unread) in [(a, 3), (b, 3)] {
        let response = api
            .post(&format!("/v1/me/notifications/{id}/unarchive"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(phone.next_json(WAIT).await.unwrap()["type"], "unarchived");
        step(json!({"type": "unarchived", "ids": answer["ids"], "unread": answer["unread"], "version": answer["version"], "counts": answer["counts"]}), unread).await;
    }
    assert_eq!(ids(&api.json("/v1/me/notifications").await).len(), 4);

    // Again: nothing changes, nothing is said.
    let again: Value = api
        .post(&format!("/v1/me/notifications/{a}/unarchive"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["ids"].clone(), again["version"].as_i64()),
        (json!([]), Some(version))
    );
    let again: Value = api
        .post(&format!("/v1/me/notifications/{c}/unread"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["ids"], json!([]));
    assert_eq!(laptop.next_json(Duration::from_millis(300)).await, None);

    // Another user's id, and a bad status, are refused.
    let theirs = seed(&gw, "ivy", 1).await;
    for path in ["unread", "unarchive"] {
        let response = api
            .post(&format!("/v1/me/notifications/{}/{path}", theirs[0].id))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let response = api.get("/v1/me/notifications?status=deleted").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Read-all and archive-all narrowed by category, by `before_seq` and (for
/// archive-all) to read ones; over REST and the socket; every step's count
/// equals the unread rows, and bad filters are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_changes_take_filters() {
    let gw = TestGateway::spawn().await;
    // seq 1..=10; odd seqs are `orders`, even ones `social`.
    let stored = seed(&gw, "bo", 10).await;
    let api = Api::new(&gw, "bo");
    let (mut phone, _) = gw.connect("bo").await;
    let changed_seqs = |answer: &Value| -> Vec<i64> {
        let mut seqs: Vec<i64> = answer["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| {
                stored
                    .iter()
                    .find(|n| n.id.to_string() == id.as_str().unwrap())
                    .unwrap()
                    .seq
            })
            .collect();
        seqs.sort();
        seqs
    };
    let unread_rows = async || {
        platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "bo")
            .await
            .unwrap()
    };

    let answer: Value = api
        .post("/v1/me/notifications/read-all?category=orders&before_seq=7")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed_seqs(&answer), [1, 3, 5]);
    assert_eq!(answer["unread"], 7);
    assert_eq!(answer["unread"], unread_rows().await);
    assert_eq!(phone.next_json(WAIT).await.unwrap()["type"], "read");

    let answer: Value = api
        .post("/v1/me/notifications/archive-all?read=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed_seqs(&answer), [1, 3, 5], "only the read ones");
    assert_eq!(answer["unread"], 7, "read ones were not counted");
    assert_eq!(phone.next_json(WAIT).await.unwrap()["type"], "archived");
    let listed = api.json("/v1/me/notifications?limit=100").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 7);

    // Over the socket: the `social` ones below 9.
    phone
        .send_text(r#"{"type":"read_all","category":"social","before_seq":9}"#)
        .await;
    let frame = phone.next_json(WAIT).await.unwrap();
    assert_eq!(frame["type"], "read");
    assert_eq!(changed_seqs(&frame), [2, 4, 6, 8]);
    assert_eq!(frame["unread"], 3);
    assert_eq!(frame["unread"], unread_rows().await);

    let answer: Value = api
        .post("/v1/me/notifications/archive-all?category=orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed_seqs(&answer), [7, 9]);
    assert_eq!(answer["unread"], 1);
    assert_eq!(answer["unread"], unread_rows().await);
    assert_eq!(phone.next_json(WAIT).await.unwrap()["type"], "archived");

    for bad in [
        "read-all?before_seq=0",
        "read-all?category=no%20spaces",
        "read-all?read=true",
        "archive-all?colour=red",
    ] {
        let response = api.post(&format!("/v1/me/notifications/{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    for bad in [
        r#"{"type":"read_all","category":"no spaces"}"#,
        r#"{"type":"read_all","before_seq":0}"#,
    ] {
        phone.send_text(bad).await;
        assert_eq!(
            phone.next_json(WAIT).await.unwrap()["code"],
            "bad_frame",
            "{bad}"
        );
    }
    assert_eq!(
        unread_rows().await,
        1,
        "nothing changed by the refused ones"
    );
}

/// A bulk change of more rows than one chunk commits chunk by chunk, the
/// oldest first: a frame per chunk with its own growing version, and the
/// answer lists every id with the state after the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bulk_change_commits_and_tells_chunk_by_chunk() {
    let gw = TestGateway::spawn().await;
    let chunk = inbox::CHUNK as usize;
    let total = 2 * chunk + 1;
    let stored = seed(&gw, "cy", total).await;
    let api = Api::new(&gw, "cy");
    let (mut phone, hello) = gw.connect("cy").await;
    assert_eq!(hello["unread"], total);

    let answer: Value = api
        .post("/v1/me/notifications/read-all")
        .await
        .json()
        .await
        .unwrap();
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.push(phone.next_json(WAIT).await.unwrap());
    }
    let sizes: Vec<usize> = frames
        .iter()
        .map(|f| f["ids"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [chunk, chunk, 1]);
    let unread: Vec<i64> = frames
        .iter()
        .map(|f| f["unread"].as_i64().unwrap())
        .collect();
    assert_eq!(unread, [(chunk + 1) as i64, 1, 0]);
    let versions: Vec<i64> = frames
        .iter()
        .map(|f| f["version"].as_i64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let first: std::collections::HashSet<String> = frames[0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    let oldest: std::collections::HashSet<String> =
        stored[..chunk].iter().map(|n| n.id.to_string()).collect();
    assert!(first == oldest, "the oldest chunk first");
    assert_eq!(answer["ids"].as_array().unwrap().len(), total);
    assert_eq!(
        (&answer["unread"], &answer["version"]),
        (&json!(0), &json!(versions[2]))
    );
    assert_eq!(
        platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "cy")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        phone.next_json(Duration::from_millis(300)).await,
        None,
        "no empty chunk is told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_a_connection_past_its_first_token() {
    let gw = TestGateway::spawn().await;
    let (mut client, _) =
        testkit::ws::WsClient::connect_user(gw.port, &gw.env.token("abe", 2)).await;
    client
        .send_text(
            &json!({"type": "refresh", "token": gw.env.token("someone-else", 300)}).to_string(),
        )
        .await;
    assert_eq!(client.next_json(WAIT).await.unwrap()["code"], "bad_token");
    client
        .send_text(&json!({"type": "refresh", "token": gw.env.token("abe", 300)}).to_string())
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(
        client.next_json(WAIT).await.unwrap(),
        json!({"type": "pong"}),
        "still open after the first token expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_metrics() {
    let gw = TestGateway::spawn().await;
    let (_client, _) = gw.connect("bea").await;
    let (spec, queries) = testkit::openapi(&format!("http://127.0.0.1:{}", gw.port)).await;
    assert!(
        queries.contains_key("GET /readyz"),
        "the operations endpoints too"
    );
    let muted = &spec["components"]["schemas"]["Preferences"]["properties"]["muted_categories"];
    assert_eq!(muted["maxItems"], 50, "{muted}");
    assert_eq!(
        queries["GET /v1/me/notifications"],
        ["before", "limit", "unread", "category", "status", "render"]
    );
    let limit = &spec["paths"]["/v1/me/notifications"]["get"]["parameters"][1];
    assert_eq!(limit["name"], "limit");
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(100))
    );
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let heading = format!("`{} {path}`", method.to_uppercase());
            assert!(docs.contains(&heading), "docs/api.md lacks {heading}");
        }
    }
    let text = testkit::scrape_metrics(gw.port).await;
    for name in [
        "herald_gateway_connections 1",
        "herald_gateway_users_online 1",
        "herald_gateway_frames_sent_total",
        "herald_gateway_send_queue_drops_total",
        "herald_gateway_resume_backlog_frames",
        "herald_gateway_delivery_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_are_validated_and_muted_ones_are_skipped_on_resume() {
    let gw = TestGateway::spawn().await;
    let api = Api::new(&gw, "cleo");
    let put = |body: Value| {
        api.http
            .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
            .bearer_auth(&api.token)
            .json(&body)
            .send()
    };
    assert_eq!(
        api.json("/v1/me/preferences").await,
        json!({"locale": null, "timezone": null, "muted_categories": []})
    );
    let stored: Value = put(
        json!({"locale": "zh-hant-tw", "timezone": "Asia/Taipei", "muted_categories": ["social"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(stored["locale"], "zh-Hant-TW");
    assert_eq!(api.json("/v1/me/preferences").await, stored);
    let refused =
        put(json!({"locale": "??", "timezone": "Moon/Base", "muted_categories": ["a b"]}))
            .await
            .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused: Value = refused.json().await.unwrap();
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["locale", "timezone", "muted_categories[0]"]);
    assert_eq!(
        api.json("/v1/me/preferences").await,
        stored,
        "nothing half-stored"
    );

    // A muted notification is in the history but skipped by a resume.
    let mut batch: Vec<_> = (0..3)
        .map(|i| new_notification("cleo", i, Priority::Normal))
        .collect();
    batch[1].category = Some("social".into());
    let prepared: Vec<notifications::Prepared> = batch
        .iter()
        .enumerate()
        .map(|(i, n)| notifications::Prepared {
            notification: n.clone(),
            locale: None,
            muted: i == 1,
        })
        .collect();
    testkit::store_prepared(&mut gw.env.db().await, &prepared, chrono::Utc::now())
        .await
        .unwrap();
    let token = gw.env.token("cleo", 300);
    let mut client = testkit::ws::WsClient::connect(gw.port, "/v1/ws?since=0", Some(&token))
        .await
        .unwrap();
    let hello = client.next_json(WAIT).await.unwrap();
    assert_eq!(hello["unread"], 2);
    let (frames, _) = crate::support::notifications(&mut client, 2, WAIT).await;
    assert_eq!(crate::support::seqs(&frames), vec![1, 3], "seq 2 is muted");
    assert_eq!(client.next_json(Duration::from_millis(300)).await, None);
    let history = api.json("/v1/me/notifications").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 3);
    assert_eq!(history["items"][1]["muted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_can_follow_the_users_new_language() {
    let gw = TestGateway::spawn().await;
    let source = templates::TemplateSource {
        params: std::collections::BTreeMap::from([(
            "count".to_owned(),
            templates::ParamKind::Number,
        )]),
        locales: std::collections::BTreeMap::from([
            (
                "en".to_owned(),
                "title = Hello\nbody = { $count } new\n".to_owned(),
            ),
            (
                "pl".to_owned(),
                "title = Cześć\nbody = { $count } nowe\n".to_owned(),
            ),
        ]),
    };
    let version =
        platform::storage::templates::create_version(&mut gw.env.db().await, "hello", &source)
            .await
            .unwrap();
    // Delivered in English, as the worker stores it.
    let mut delivered = new_notification("dora", 0, Priority::Normal);
    delivered.title = "Hello".into();
    delivered.body = "3 new".into();
    delivered.template = Some(domain::TemplateRef {
        key: "hello".into(),
        version,
        params: json!({"count": 3}).as_object().cloned().unwrap(),
        locale: None,
    });
    let prepared = notifications::Prepared {
        notification: delivered,
        locale: Some("en".into()),
        muted: false,
    };
    testkit::store_prepared(&mut gw.env.db().await, &[prepared], chrono::Utc::now())
        .await
        .unwrap();

    // Dora switches to Polish.
    let api = Api::new(&gw, "dora");
    let put = api
        .http
        .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
        .bearer_auth(&api.token)
        .json(&json!({"locale": "pl", "timezone": null, "muted_categories": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let as_delivered = api.json("/v1/me/notifications").await;
    assert_eq!(as_delivered["items"][0]["title"], "Hello");
    assert_eq!(as_delivered["items"][0]["locale"], "en");
    let current = api.json("/v1/me/notifications?render=current").await;
    assert_eq!(current["items"][0]["title"], "Cześć");
    assert_eq!(current["items"][0]["body"], "3 nowe");
    assert_eq!(current["items"][0]["locale"], "pl");
    assert_eq!(
        api.get("/v1/me/notifications?render=fancy").await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_with_the_configured_retry_after() {
    let proxy = testkit::proxy::Proxy::start(5432).await;
    let mut env = testkit::TestEnv::new().await;
    env.database_through(&proxy);
    env.set("HERALD__HTTP__RETRY_AFTER_SECS", "9");
    let gw = TestGateway::spawn_in(env).await;
    let api = Api::new(&gw, "rita");
    assert_eq!(
        api.get("/v1/me/unread-count").await.status(),
        StatusCode::OK
    );

    proxy.cut();
    let response = api.get("/v1/me/unread-count").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "9");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "https://herald.dev/problems/unavailable");
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_refusals_are_problems() {
    let gw = TestGateway::spawn().await;
    let api = Api::new(&gw, "hugo");
    let is_problem = |response: &reqwest::Response| {
        response.headers()["content-type"] == "application/problem+json"
    };
    let bad_query = api.get("/v1/me/notifications?limit=many").await;
    assert_eq!(bad_query.status(), StatusCode::BAD_REQUEST);
    assert!(is_problem(&bad_query));
    let put = |content_type: &'static str, body: String| {
        testkit::send_answered(
            api.http
                .put(format!("http://127.0.0.1:{}/v1/me/preferences", gw.port))
                .bearer_auth(&api.token)
                .header("content-type", content_type)
                .body(body),
        )
    };
    let plain = put("text/plain", r#"{"locale":"pl"}"#.into()).await;
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(is_problem(&plain));
    let array = put("application/json", "[null, null, []]".into()).await;
    assert_eq!(array.status(), StatusCode::BAD_REQUEST);
    assert!(is_problem(&array));
    let huge = put(
        "application/json",
        json!({"locale": "x".repeat(200_000)}).to_string(),
    )
    .await;
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_problem(&huge));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_repeating_storage_frames_is_held_to_its_budget() {
    let mut env = testkit::TestEnv::new().await;
    env.set("HERALD__GATEWAY__CLIENT_REQUESTS_BURST", "5");
    env.set("HERALD__GATEWAY__CLIENT_REQUESTS_PER_SEC", "1");
    let gw = TestGateway::spawn_in(env).await;
    seed(&gw, "ivo", 3).await;
    let (mut client, _) = gw.connect("ivo").await;
    // The connection's own catch-up is not a frame of the client's: the
    // budget is whole. 40 read_all at once: the burst is applied, the rest
    // answered `rate_limited` and not applied.
    for _ in 0..40 {
        client.send_text(r#"{"type":"read_all"}"#).await;
    }
    let started = std::time::Instant::now();
    let mut limited = 0;
    while let Some(frame) = client.next_json(Duration::from_secs(1)).await {
        if frame["type"] == "error" && frame["code"] == "rate_limited" {
            limited += 1;
        }
    }
    // At most the burst plus what a second per second refilled meanwhile.
    let refilled = started.elapsed().as_secs() as usize + 2;
    assert!(limited >= 40 - 5 - refilled, "{limited} refused");
    assert!(
        limited <= 40 - 5,
        "the burst itself is served: {limited} refused"
    );
    let text = testkit::scrape_metrics(gw.port).await;
    assert!(
        text.lines().any(
            |l| l.starts_with("herald_gateway_frames_rate_limited_total ") && !l.ends_with(" 0")
        ),
        "counted in metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_sent_while_one_is_served_are_coalesced_into_one_catch_up() {
    let mut env = testkit::TestEnv::new().await;
    // A budget that would let every resume through: only coalescing
    // keeps the replay down.
    env.set("HERALD__GATEWAY__CLIENT_REQUESTS_BURST", "100");
    let gw = TestGateway::spawn_in(env).await;
    seed(&gw, "uma", 3).await;
    let (mut client, _) = gw.connect("uma").await;
    for n in 0..40 {
        // The earliest `since` is in the middle: the merged catch-up
        // starts there and covers what every frame asked for.
        let since = if n == 20 { 0 } else { 2 };
        client
            .send_text(&format!(r#"{{"type":"resume","since":{since}}}"#))
            .await;
    }
    client.send_text(r#"{"type":"ping"}"#).await;
    let mut replayed = Vec::new();
    let mut pongs = 0;
    while let Some(frame) = client.next_json(Duration::from_secs(1)).await {
        match frame["type"].as_str() {
            Some("notification") => replayed.push(frame["seq"].as_i64().unwrap()),
            Some("pong") => pongs += 1,
            Some(other) => panic!("unexpected {other} frame: {frame}"),
            None => {}
        }
    }
    // Without coalescing: 39 x 1 + 3 = 42 frames. Each catch-up sends
    // seq 3 (or 1..=3 once the since-0 frame is merged in).
    assert!(
        replayed.len() <= 10,
        "{} notifications replayed for 40 resumes",
        replayed.len()
    );
    for seq in 1..=3 {
        assert!(replayed.contains(&seq), "seq {seq} replayed: {replayed:?}");
    }
    assert_eq!(
        pongs, 1,
        "the frame after the resumes is answered, in order"
    );
}
