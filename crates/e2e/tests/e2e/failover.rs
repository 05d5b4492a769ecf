//! A burst of notifications through a Redis failover, and the clients that
//! check what arrived: shared by the Redis Cluster and Sentinel tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::eventually;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::gateway::{Live, client};
use crate::support::{BurstPlan, Progress, Service, Stack, USERS, send_burst, start_as};

/// A service's environment.
pub(crate) type Vars = HashMap<String, String>;

/// The settings of `stack` with Redis at `url`, `min_replicas_acks` and
/// short WAIT and command timeouts (a dead master is given up on fast),
/// and the per-address limits lifted (every test client shares one address).
pub(crate) fn failover_vars(stack: &Stack, url: &str, min_replicas_acks: &str) -> Vars {
    let mut vars = lifted_limits(stack);
    vars.insert("HERALD__REDIS__URL".into(), url.into());
    vars.insert(
        "HERALD__REDIS__MIN_REPLICAS_ACKS".into(),
        min_replicas_acks.into(),
    );
    vars.insert("HERALD__REDIS__WAIT_TIMEOUT_MS".into(), "500".into());
    vars.insert("HERALD__REDIS__COMMAND_TIMEOUT_MS".into(), "1000".into());
    vars
}

/// The settings of `stack`, with the gateway's per-address limits lifted.
pub(crate) fn lifted_limits(stack: &Stack) -> Vars {
    let mut vars = stack.vars();
    for (key, value) in [
        ("HERALD__GATEWAY__MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        ("HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_BURST", "100000"),
        ("HERALD__GATEWAY__HANDSHAKES_PER_ADDRESS_PER_SEC", "100000"),
    ] {
        vars.insert(key.into(), value.into());
    }
    vars
}

/// A burst of single notifications through an ingest-api, two workers and
/// a gateway on `vars`' Redis, during which `fail_over` runs once 1,000
/// were accepted (it kills a master and waits until the service is whole
/// again). Checks that nothing was stored twice and that every user's
/// `seq` is gapless; when nothing was lost, that every client saw every
/// seq once, in order. Answers how many were accepted, and how many of
/// those were never stored.
pub(crate) async fn burst_through_a_failover(
    stack: &Stack,
    vars: &Vars,
    fail_over: impl AsyncFnOnce(),
) -> (usize, usize) {
    let ingest = start_as("ingest-api", "ingest-api-0", vars, &stack.logs).await;
    let _workers = start_all("stream-worker", 2, vars, stack).await;
    let gateways = start_all("ws-gateway", 1, vars, stack).await;
    let clients = Clients::connect(stack, &gateways, USERS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (burst, progress) = start_burst(&ingest, stack, 8);
    progress.reached(1_000, Duration::from_secs(60)).await;
    fail_over().await;
    eprintln!("failed over at {} accepted", progress.accepted());
    let burst = burst.await.unwrap();

    let (stored, rows) = eventually_stored(stack, &burst.accepted).await;
    assert_eq!(rows, stored.len(), "no duplicate rows");
    let lost = burst.accepted.difference(&stored).count();
    // Whatever Redis lost, what was stored is gapless per user.
    let per_user = rows_per_user(stack, USERS).await;
    if lost == 0 {
        clients
            .assert_every_seq_once_in_order(stored.len(), &per_user, Duration::from_secs(60))
            .await;
    }
    (burst.accepted.len(), lost)
}

pub(crate) async fn start_all(
    name: &str,
    count: usize,
    vars: &HashMap<String, String>,
    stack: &Stack,
) -> Vec<Service> {
    let mut services = Vec::new();
    for i in 0..count {
        services.push(start_as(name, &format!("{name}-{i}"), vars, &stack.logs).await);
    }
    services
}

/// A user's client task: the seqs it saw, and how often it reconnected.
type ClientTask = tokio::task::JoinHandle<(Vec<i64>, usize)>;

/// Users' clients on the gateways, each reconnecting with `since`.
pub(crate) struct Clients {
    stop: tokio_util::sync::CancellationToken,
    received: Arc<AtomicUsize>,
    tasks: Vec<(String, ClientTask)>,
}

impl Clients {
    pub(crate) async fn connect(stack: &Stack, gateways: &[Service], users: usize) -> Self {
        let live: Live = Arc::new(Mutex::new(gateways.iter().map(|g| g.port).collect()));
        let stop = tokio_util::sync::CancellationToken::new();
        let received = Arc::new(AtomicUsize::new(0));
        let tasks = (0..users)
            .map(|u| {
                let user = format!("user-{u}");
                let token = stack.env.token(&user, 600);
                let task = tokio::spawn(client(
                    user.clone(),
                    token,
                    live.clone(),
                    received.clone(),
                    stop.clone(),
                ));
                (user, task)
            })
            .collect();
        Self {
            stop,
            received,
            tasks,
        }
    }

    /// Waits until `total` frames arrived, then checks that every user saw
    /// exactly `1..=per_user[user]`, in order; returns the reconnects.
    pub(crate) async fn assert_every_seq_once_in_order(
        self,
        total: usize,
        per_user: &HashMap<String, i64>,
        within: Duration,
    ) -> usize {
        let received = self.received.clone();
        eventually(
            "every stored notification on its user's socket",
            within,
            || {
                let received = received.clone();
                async move { (received.load(Ordering::Relaxed) >= total).then_some(()) }
            },
        )
        .await;
        // Frames still in flight would be doubles: give them a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.cancel();
        let mut reconnects = 0;
        for (user, task) in self.tasks {
            let (seen, again) = task.await.unwrap();
            reconnects += again;
            let expected: Vec<i64> = (1..=per_user.get(&user).copied().unwrap_or(0)).collect();
            assert_eq!(seen, expected, "{user}: every seq once, in order");
        }
        reconnects
    }
}

/// Stored rows per user, each user's seq checked gapless.
pub(crate) async fn rows_per_user(stack: &Stack, users: usize) -> HashMap<String, i64> {
    let mut conn = stack.env.db().await;
    let mut counts = HashMap::new();
    for u in 0..users {
        let user = format!("user-{u}");
        let rows = testkit::gapless_history(&mut conn, &user).await;
        counts.insert(user, rows.len() as i64);
    }
    counts
}

/// 3,000 single notifications to `ingest` from `concurrency` producers,
/// each retried with its key until answered.
pub(crate) fn start_burst(
    ingest: &Service,
    stack: &Stack,
    concurrency: usize,
) -> (tokio::task::JoinHandle<crate::support::Burst>, Progress) {
    let progress = Progress::default();
    let burst = tokio::spawn(send_burst(
        ingest.port,
        stack.key.clone(),
        BurstPlan {
            total: 3_000,
            concurrency,
            timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(150),
        },
        progress.clone(),
    ));
    (burst, progress)
}

/// Waits (up to 60 s) for every accepted id to be stored; returns what is
/// stored then, and the row count.
pub(crate) async fn eventually_stored(
    stack: &Stack,
    accepted: &HashSet<Uuid>,
) -> (HashSet<Uuid>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (stored, rows) = stack.stored().await;
        if accepted.is_subset(&stored) || Instant::now() > deadline {
            return (stored, rows);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
