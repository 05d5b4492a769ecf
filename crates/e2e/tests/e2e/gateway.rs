//! ws-gateway as a process: a rolling restart during a stream of
//! notifications, with clients that reconnect with `since`; and a slow client
//! that cannot make the gateway's memory grow.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::ws::WsClient;
use tokio::sync::Mutex;

use crate::support::{BurstPlan, Progress, Stack, USERS, send_burst, start, start_as};

/// Ports of the gateways currently up; clients pick from it when they (re)connect.
pub(crate) type Live = Arc<Mutex<Vec<u16>>>;

/// A user's client: reads notifications and, whenever its connection ends,
/// reconnects to any live gateway with `since` = the last seq it saw.
pub(crate) async fn client(
    user: String,
    token: String,
    live: Live,
    received: Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<i64>, usize) {
    let mut seen: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    'connect: while !stop.is_cancelled() {
        let port = {
            let ports = live.lock().await;
            ports[(user.len() + reconnects) % ports.len()]
        };
        let since = seen.last().copied().unwrap_or(0);
        let Ok(mut ws) =
            WsClient::try_connect(port, &format!("/v1/ws?since={since}"), &token).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reconnects += 1;
            continue;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => break 'connect,
                event = ws.next_or_end(Duration::from_secs(30)) => match event {
                    Some(Ok(frame)) if frame["type"] == "notification" => {
                        seen.push(frame["seq"].as_i64().unwrap());
                        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        reconnects += 1;
                        continue 'connect;
                    }
                }
            }
        }
    }
    (seen, reconnects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_of_gateways_loses_and_duplicates_nothing() {
    let stack = Stack::new().await;
    let vars = stack.vars();
    let ingest = start("ingest-api", &vars, &stack.logs).await;
    let _worker = start("stream-worker", &vars, &stack.logs).await;
    let mut gateways = vec![
        start_as("ws-gateway", "gateway-0", &vars, &stack.logs).await,
        start_as("ws-gateway", "gateway-1", &vars, &stack.logs).await,
    ];
    let live: Live = Arc::new(Mutex::new(gateways.iter().map(|g| g.port).collect()));

    let stop = tokio_util::sync::CancellationToken::new();
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..USERS)
        .map(|u| {
            let user = format!("user-{u}");
            let token = stack.env.token(&user, 600);
            tokio::spawn(client(
                user,
                token,
                live.clone(),
                received.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let progress = Progress::default();
    let total = 3_000;
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        BurstPlan {
            total,
            concurrency: 16,
            timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(240),
        },
        progress.clone(),
    ));
    // Roll both gateways, one at a time, while notifications flow.
    for (round, at) in [(0usize, 800usize), (1, 1_800)] {
        progress.reached(at, Duration::from_secs(120)).await;
        let replacement = start_as(
            "ws-gateway",
            &format!("gateway-{}", round + 2),
            &vars,
            &stack.logs,
        )
        .await;
        live.lock().await.push(replacement.port);
        let old = gateways.remove(0);
        live.lock().await.retain(|p| *p != old.port);
        let mut old = old;
        let status = old
            .process
            .terminate(Duration::from_secs(15))
            .expect("gateway exits after SIGTERM");
        assert!(status.success(), "drain exits 0, got {status}");
        gateways.push(replacement);
    }
    let burst = burst.await.unwrap();
    stack
        .assert_all_stored_once(&burst.accepted, Duration::from_secs(120))
        .await;

    // Every client ends with exactly its user's notifications, 1..=n, in order.
    let mut expected = HashMap::new();
    let mut conn = stack.env.db().await;
    for u in 0..USERS {
        let user = format!("user-{u}");
        let n = platform::storage::inspect::count_for_user(&mut conn, &user)
            .await
            .unwrap();
        expected.insert(u, n);
    }
    let stored: usize = expected.values().map(|n| *n as usize).sum();
    testkit::eventually(
        "clients received as many frames as were stored",
        Duration::from_secs(60),
        || async { (received.load(std::sync::atomic::Ordering::Relaxed) >= stored).then_some(()) },
    )
    .await;
    stop.cancel();
    let mut reconnects = 0;
    for (u, handle) in clients.into_iter().enumerate() {
        let (seen, r) = handle.await.unwrap();
        reconnects += r;
        assert_eq!(
            seen,
            (1..=expected[&u]).collect::<Vec<_>>(),
            "user-{u}: every seq once, in order"
        );
    }
    eprintln!(
        "rolling restart of 2 gateways: {total} notifications to {USERS} users, {reconnects} reconnects, nothing lost or doubled, {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_cannot_grow_the_gateways_memory() {
    let stack = Stack::new().await;
    let mut vars = stack.vars();
    // What the gateway may hold is its subscriber's buffer (shared, bounded
    // in messages) plus each connection's queue (bounded in frames): with
    // 8 KB frames, at most 1,024 x 8 KB + 256 x 8 KB here, whatever the
    // client does.
    vars.insert(
        "HERALD__GATEWAY__SUBSCRIBER_BUFFER_MESSAGES".into(),
        "1024".into(),
    );
    let gateway = start("ws-gateway", &vars, &stack.logs).await;
    let token = stack.env.token("sloth", 300);
    let (mut sloth, _) = WsClient::connect_user(gateway.port, &token).await;
    let before = gateway.process.rss_kib();

    // 160 MB of frames for a client that reads nothing.
    let redis = stack.env.redis().await;
    let frame = json!({"type": "notification", "pad": "x".repeat(8_000)}).to_string();
    for _ in 0..100 {
        let frames: Vec<(&str, String)> = (0..200).map(|_| ("sloth", frame.clone())).collect();
        redis.publish_to_users(&frames).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = gateway.process.rss_kib();
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "gateway RSS {before} KiB -> {after} KiB after 160 MB sent to a client that never reads"
    );
    assert!(grown_mib < 48, "gateway memory grew by {grown_mib} MiB");
    // The client was cut off.
    let (_, ended) = sloth.drain_until_closed(Duration::from_secs(20)).await;
    assert_eq!(ended, testkit::ws::Ended::Closed(Some(1008)));
}

/// A benchmark target (bench/README.md): an idle WebSocket connection, heartbeats on,
/// costs the gateway at most 12 KiB of RSS. actix-http's dispatcher alone
/// kept 16 KiB of empty buffers per connection before the vendored patch
/// (vendor/actix-http).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_connections_hold_under_12_kib_each() {
    const WARM_UP: usize = 20;
    // Many, so that a 2 MiB step of RSS (a transparent huge page, on hosts
    // that back the heap with them) moves the result by 2.5 KiB at most;
    // few enough for the common open-files limit of 1,024 on both sides.
    const MEASURED: usize = 800;
    let stack = Stack::new().await;
    let mut vars = stack.vars();
    vars.insert("RUST_LOG".into(), "info".into());
    vars.insert("HERALD__GATEWAY__PING_INTERVAL_SECS".into(), "1".into());
    // Every socket comes from this one address, as fast as it can.
    vars.insert(
        "HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_PER_SEC".into(),
        "0".into(),
    );
    let gateway = start("ws-gateway", &vars, &stack.logs).await;
    let mut readers = tokio::task::JoinSet::new();
    let mut connect = async |n: usize| {
        let token = stack.env.token(&format!("idle-{n}"), 300);
        let (mut client, _) = WsClient::connect_user(gateway.port, &token).await;
        // Reading answers the server's pings (tungstenite replies to them).
        readers.spawn(async move {
            while let Some(Ok(_)) = client.next_or_end(Duration::from_secs(60)).await {}
        });
    };
    // The first connections size the runtime's and allocator's pools.
    for n in 0..WARM_UP {
        connect(n).await;
    }
    let before = gateway.process.rss_kib();
    for n in WARM_UP..WARM_UP + MEASURED {
        connect(n).await;
    }
    // Three heartbeats: pings written, pongs read, on every connection.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let after = gateway.process.rss_kib();
    let metrics = testkit::scrape_metrics(gateway.port).await;
    let open = format!("herald_gateway_connections {}", WARM_UP + MEASURED);
    assert!(
        metrics.lines().any(|line| line == open),
        "all connections open while measured: {open}"
    );
    assert!(readers.try_join_next().is_none(), "no connection ended");
    let per_connection = after.saturating_sub(before) as f64 / MEASURED as f64;
    eprintln!(
        "gateway RSS {before} KiB -> {after} KiB for {MEASURED} idle connections: {per_connection:.1} KiB each"
    );
    assert!(
        per_connection <= 12.0,
        "{per_connection:.1} KiB per idle connection"
    );
}
