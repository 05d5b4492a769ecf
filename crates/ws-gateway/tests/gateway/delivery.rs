//! Gapless, ordered delivery: resume, gap filling, concurrency, several
//! instances, slow clients, token refresh.

use std::collections::HashSet;
use std::time::Duration;

use domain::Priority;
use platform::storage::inbox;
use serde_json::{Value, json};
use testkit::ws::{Ended, WsClient};
use testkit::{TestEnv, eventually, new_notification};

use crate::support::{TestGateway, WAIT, notifications as read_notifications, seqs, start_worker};

fn batch(user: &str, from: usize, n: usize) -> Vec<domain::NewNotification> {
    (from..from + n)
        .map(|i| new_notification(user, i, Priority::ALL[i % 3]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_seam_delivers_exactly_1_to_1000_in_order() {
    // The seam is under test here, not the slow-client kick: a queue that
    // holds every live frame of the test, so a loaded machine (the whole
    // suite on two cores) stalling the catch-up's page query cannot fill
    // it and end the connection with 1008 halfway (seen twice in full runs).
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__SEND_QUEUE_FRAMES", "1024");
    let gw = TestGateway::spawn_in(env).await;
    let _worker = start_worker(&gw.env).await;
    let (first, _) = gw.connect("rose").await;
    first.close().await;

    // 500 while the client is away.
    testkit::append_all(&gw.redis, &batch("rose", 0, 500)).await;
    eventually("500 stored", Duration::from_secs(30), || async {
        (platform::storage::inspect::count_for_user(&mut gw.env.db().await, "rose")
            .await
            .unwrap()
            == 500)
            .then_some(())
    })
    .await;

    // 500 more in small bursts while it reconnects with since=0.
    let producer = {
        let redis = gw.redis.clone();
        tokio::spawn(async move {
            for chunk in batch("rose", 500, 500).chunks(10) {
                testkit::append_all(&redis, chunk).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let token = gw.env.token("rose", 300);
    let mut client = WsClient::connect(gw.port, "/v1/ws?since=0", Some(&token))
        .await
        .unwrap();
    let hello = client.next_json(WAIT).await.unwrap();
    assert_eq!(hello["type"], "hello");
    let (frames, _) = read_notifications(&mut client, 1_000, Duration::from_secs(60)).await;
    producer.await.unwrap();
    assert_eq!(
        seqs(&frames),
        (1..=1_000).collect::<Vec<_>>(),
        "exactly 1..=1000, in order"
    );
    let ids: HashSet<&str> = frames.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1_000, "no duplicate");
    assert_eq!(
        client.next_json(Duration::from_millis(300)).await,
        None,
        "nothing after 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_frame_and_gaps_are_filled_from_storage_duplicates_dropped() {
    let gw = TestGateway::spawn().await;
    let (mut client, hello) = gw.connect("sid").await;
    assert_eq!(hello["last_seq"], 0);
    // Three stored, only the third published (the first two were "lost" live).
    let stored = testkit::store_batch(
        &mut gw.env.db().await,
        &batch("sid", 0, 3),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .visible;
    let frame = |i: usize| domain::ServerFrame::Notification(stored[i].clone().into()).to_json();
    gw.redis
        .publish_to_users(&[("sid", frame(2))])
        .await
        .unwrap();
    let (got, _) = read_notifications(&mut client, 3, WAIT).await;
    assert_eq!(
        seqs(&got),
        vec![1, 2, 3],
        "the gap before 3 was filled, in order"
    );
    // A late duplicate is dropped; the next one comes through.
    gw.redis
        .publish_to_users(&[("sid", frame(1))])
        .await
        .unwrap();
    let more = testkit::store_batch(
        &mut gw.env.db().await,
        &batch("sid", 3, 1),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .visible;
    gw.redis
        .publish_to_users(&[(
            "sid",
            domain::ServerFrame::Notification(more[0].clone().into()).to_json(),
        )])
        .await
        .unwrap();
    let next = client.next_json(WAIT).await.unwrap();
    assert_eq!(next["seq"], 4, "duplicate of 2 dropped: {next}");

    // A resume frame replays from the client's own position.
    client.send_text(r#"{"type":"resume","since":2}"#).await;
    let (again, _) = read_notifications(&mut client, 2, WAIT).await;
    assert_eq!(seqs(&again), vec![3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_and_readers_keep_seq_and_unread_exact() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__WORKER__BATCH_SIZE", "64");
    let gw = TestGateway::spawn_in(env).await;
    // Two workers store concurrently (same user, contending for the same lock).
    let workers = {
        let mut a = gw.env.settings();
        a.worker.consumer_name = "w-a".into();
        let mut b = gw.env.settings();
        b.worker.consumer_name = "w-b".into();
        let mut running = Vec::new();
        for settings in [a, b] {
            running.push(testkit::service::start::<stream_worker::Worker>(&settings).await);
        }
        running
    };

    // 4 producers x 1,000.
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let redis = gw.redis.clone();
            tokio::spawn(async move {
                for chunk in batch("tess", p * 1_000, 1_000).chunks(50) {
                    testkit::append_all(&redis, chunk).await;
                }
            })
        })
        .collect();
    // Both devices read what they see, concurrently with the inserts. A
    // device cut off for being slow does what clients do: resume from its last seq.
    let mut readers = Vec::new();
    for device in 0..2 {
        let (port, token) = (gw.port, gw.env.token("tess", 300));
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut resumes = 0;
            let mut client = WsClient::connect(port, "/v1/ws?since=0", Some(&token))
                .await
                .unwrap();
            while seen.len() < 4_000 {
                match client
                    .next_or_end(Duration::from_secs(60))
                    .await
                    .expect("frames keep coming")
                {
                    Ok(frame) if frame["type"] == "notification" => {
                        seen.push(frame["seq"].as_i64().unwrap());
                        if seen.len() % 3 == device {
                            let read = json!({"type": "read", "ids": [frame["id"]]});
                            client.send_text(&read.to_string()).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        resumes += 1;
                        let since = seen.last().copied().unwrap_or(0);
                        client =
                            WsClient::connect(port, &format!("/v1/ws?since={since}"), Some(&token))
                                .await
                                .unwrap();
                    }
                }
            }
            (seen, resumes)
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    for reader in readers {
        let (seen, resumes) = reader.await.unwrap();
        assert_eq!(
            seen,
            (1..=4_000).collect::<Vec<_>>(),
            "every seq once, in order, on each device"
        );
        eprintln!("device resumed {resumes} time(s)");
    }
    drop(workers);
    let mut conn = gw.env.db().await;
    let rows = platform::storage::inspect::list_for_user(&mut conn, "tess")
        .await
        .unwrap();
    assert_eq!(
        seqs_of(&rows),
        (1..=4_000).collect::<Vec<_>>(),
        "no gap in storage"
    );
    // Reads may still be landing; the promise is that the counter always equals the rows.
    eventually(
        "counter equals unread rows",
        Duration::from_secs(10),
        || async {
            let state = inbox::state(&mut gw.env.db().await, "tess").await.unwrap();
            let rows =
                platform::storage::inspect::count_unread_rows(&mut gw.env.db().await, "tess")
                    .await
                    .unwrap();
            (state.counts.unread == rows).then_some(())
        },
    )
    .await;
    let state = inbox::state(&mut conn, "tess").await.unwrap();
    assert!(
        state.counts.unread < 4_000,
        "reads landed: unread {}",
        state.counts.unread
    );
    assert!(state.counts.unread >= 0);
}

fn seqs_of(rows: &[domain::Notification]) -> Vec<i64> {
    rows.iter().map(|n| n.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_delivery_and_read_state() {
    let a = TestGateway::spawn().await;
    // A second gateway process would share the database and Redis prefix: same env.
    let b = testkit::service::start::<ws_gateway::Application>(&a.env.settings()).await;
    let port_b = b.port;
    let _worker = start_worker(&a.env).await;

    let token = a.env.token("uma", 300);
    let (mut tab_a, _) = WsClient::connect_user(a.port, &token).await;
    let (mut tab_b, _) = WsClient::connect_user(port_b, &token).await;
    let sent = batch("uma", 0, 20);
    let started = std::time::Instant::now();
    testkit::append_all(&a.redis, &sent).await;
    let (on_a, _) = read_notifications(&mut tab_a, 20, Duration::from_secs(20)).await;
    let (on_b, _) = read_notifications(&mut tab_b, 20, Duration::from_secs(20)).await;
    eprintln!(
        "20 notifications reached both instances in {:?}",
        started.elapsed()
    );
    assert_eq!(seqs(&on_a), (1..=20).collect::<Vec<_>>());
    assert_eq!(seqs(&on_b), (1..=20).collect::<Vec<_>>());

    // Read on instance B: the tab on instance A hears it, with the same count.
    let ids: Vec<&Value> = on_b.iter().take(5).map(|f| &f["id"]).collect();
    tab_b
        .send_text(&json!({"type": "read", "ids": ids}).to_string())
        .await;
    let on_a_read = tab_a.next_json(WAIT).await.unwrap();
    let on_b_read = tab_b.next_json(WAIT).await.unwrap();
    assert_eq!(on_a_read["type"], "read");
    assert_eq!(on_a_read, on_b_read, "both tabs get the same event");
    assert_eq!(on_a_read["unread"], 15);
    assert_eq!(on_a_read["ids"].as_array().unwrap().len(), 5);
    let rest: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/me/unread-count", a.port))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["unread"], 15);
    assert_eq!(rest["version"], on_a_read["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_consumer_is_cut_off_and_resumes_without_loss() {
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__SEND_QUEUE_FRAMES", "4");
    let gw = TestGateway::spawn_in(env).await;
    let _worker = start_worker(&gw.env).await;
    let (mut client, _) = gw.connect("vic").await;
    // Big notifications, far more than the queue and socket buffers hold, while the client reads nothing.
    let mut big = batch("vic", 0, 400);
    for n in &mut big {
        n.data = Some(serde_json::from_value(json!({"pad": "x".repeat(3_500)})).unwrap());
    }
    testkit::append_all(&gw.redis, &big).await;
    eventually("all stored", Duration::from_secs(30), || async {
        (platform::storage::inspect::count_for_user(&mut gw.env.db().await, "vic")
            .await
            .unwrap()
            == 400)
            .then_some(())
    })
    .await;
    // It gets what was buffered, then 1008.
    let mut seen = Vec::new();
    let ended = loop {
        match client.next_or_end(Duration::from_secs(10)).await {
            Some(Ok(frame)) if frame["type"] == "notification" => {
                seen.push(frame["seq"].as_i64().unwrap())
            }
            Some(Ok(_)) => {}
            Some(Err(ended)) => break ended,
            None => panic!("neither frames nor a close within 10 s"),
        }
    };
    assert_eq!(ended, Ended::Closed(Some(1008)));
    assert!(
        seen.len() < 400,
        "cut off before receiving everything ({})",
        seen.len()
    );
    assert_eq!(
        seen,
        (1..=seen.len() as i64).collect::<Vec<_>>(),
        "what it got was in order"
    );

    // It resumes from its last seq and gets the rest, nothing lost or doubled.
    let last = seen.last().copied().unwrap_or(0);
    let token = gw.env.token("vic", 300);
    let mut again = WsClient::connect(gw.port, &format!("/v1/ws?since={last}"), Some(&token))
        .await
        .unwrap();
    let rest_count = 400 - last as usize;
    let (rest, _) = read_notifications(&mut again, rest_count, Duration::from_secs(30)).await;
    assert_eq!(
        seqs(&rest),
        ((last + 1)..=400).collect::<Vec<_>>(),
        "the rest, in order, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_the_future_does_not_swallow_what_comes_next() {
    let gw = TestGateway::spawn().await;
    let (mut client, _) = gw.connect("yara").await;
    client.send_text(r#"{"type":"resume","since":1000}"#).await;
    // Give the resume time to run: then the first real notification must still arrive.
    client.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(client.next_json(WAIT).await.unwrap()["type"], "pong");
    let stored = testkit::store_batch(
        &mut gw.env.db().await,
        &batch("yara", 0, 1),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .visible;
    gw.redis
        .publish_to_users(&[(
            "yara",
            domain::ServerFrame::Notification(stored[0].clone().into()).to_json(),
        )])
        .await
        .unwrap();
    assert_eq!(client.next_json(WAIT).await.unwrap()["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_reconnect_connections_catch_up_from_storage() {
    let mut redis = testkit::processes::RedisServer::start().await;
    let mut env = TestEnv::new().await;
    env.set("HERALD__REDIS__URL", redis.url());
    let gw = TestGateway::spawn_in(env).await;
    let (mut client, _) = gw.connect("zed").await;

    // Redis goes away; meanwhile a notification commits whose publish is lost.
    redis.kill();
    let stored = testkit::store_batch(
        &mut gw.env.db().await,
        &batch("zed", 0, 1),
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .visible;
    assert_eq!(stored.len(), 1);
    redis.restart().await;
    // No publish ever reaches the gateway: the resync after the reconnect delivers it.
    let frame = client
        .next_json(Duration::from_secs(20))
        .await
        .expect("delivered from storage after the reconnect");
    assert_eq!(frame["seq"], 1);
    assert_eq!(frame["id"], stored[0].id.to_string());
}
