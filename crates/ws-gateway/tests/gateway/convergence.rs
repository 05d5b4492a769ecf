//! The inbox converges under concurrency: for each of two users, devices
//! (WebSocket clients) and the REST API apply random sequences of every
//! state operation while new notifications keep arriving through a real
//! stream-worker, and one device leaves and resumes with `since` and
//! `since_version` halfway. Afterwards, for each user:
//!
//! - every count (`unread`, `unseen`, each category's) equals a recount
//!   from the rows;
//! - every change that changed something got its own `version`, none
//!   above the final one, and each device saw its versions grow;
//! - each device, applying only the frames it got (a field's newest
//!   change by `version` wins), holds exactly the state the REST API
//!   reports, and the counts.
//!
//! Halfway, the oldest notifications pass the retention period: retention
//! deletes them while all this goes on, and every device drops them.
//!
//! The operations are drawn from a seed printed on failure
//! (`CONVERGENCE_SEED=<n>` replays one).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::Utc;
use domain::Priority;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::ws::WsClient;

use crate::support::{Api, TestGateway, WAIT, start_worker};

const NOTIFICATIONS: usize = 40;
const REST_OPS: usize = 50;
const SOCKET_OPS: usize = 50;
/// The notifications made old halfway (retention deletes them).
const TRIMMED: i64 = 10;
/// How long snoozes last, in ms: long enough that a frame or request
/// reaches the gateway before its `until` even on a loaded machine (it is
/// refused once `until` has passed).
const SNOOZE_MS: std::ops::Range<i64> = 2_000..3_000;
/// Categories notifications arrive in; only `b` is ever muted.
const CATEGORIES: [&str; 2] = ["a", "b"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_and_rest_converge_on_exact_counts_under_random_concurrent_changes() {
    let seed: u64 = std::env::var("CONVERGENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("CONVERGENCE_SEED={seed}");
    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__CLIENT_REQUESTS_BURST", "10000");
    env.set("HERALD__GATEWAY__CLIENT_REQUESTS_PER_SEC", "10000");
    env.set("HERALD__GATEWAY__REST_WRITES_PER_USER_BURST", "10000");
    env.set("HERALD__GATEWAY__REST_WRITES_PER_USER_PER_SEC", "10000");
    env.set("HERALD__WORKER__TIMERS_INTERVAL_MS", "100");
    env.set("HERALD__RETENTION__DAYS", "30");
    env.set("HERALD__RETENTION__INTERVAL_MS", "100");
    let gw = TestGateway::spawn_in(env).await;
    let _worker = start_worker(&gw.env).await;
    tokio::join!(
        scenario(&gw, "conv-1", seed),
        scenario(&gw, "conv-2", seed.wrapping_add(1)),
    );
}

/// One user's run: a producer, a REST client and three devices (one of
/// them sends its changes as frames, one leaves and resumes), all at once.
/// Every operation is drawn by both the REST client and the frame sender.
async fn scenario(gw: &TestGateway, user: &str, seed: u64) {
    let api = Api::new(gw, user);
    let known: RefCell<Vec<(uuid::Uuid, &'static str)>> = RefCell::default();
    let versions: RefCell<Vec<i64>> = RefCell::default();
    let done = tokio_util::sync::CancellationToken::new();
    let mut rest_rng = StdRng::seed_from_u64(seed);
    let mut socket_rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut producer_rng = StdRng::seed_from_u64(seed ^ 0xfeed);

    let mut watcher = Device::connect(gw, user).await;
    let mut leaver = Device::connect(gw, user).await;
    let mut actor = Device::connect(gw, user).await;

    let producer = async {
        for n in 0..NOTIFICATIONS {
            let mut notification = testkit::new_notification(user, n, Priority::Normal);
            let category = CATEGORIES[producer_rng.random_range(0..CATEGORIES.len())];
            notification.category = Some(category.into());
            testkit::append(&gw.redis, &notification).await;
            known.borrow_mut().push((notification.id, category));
            tokio::time::sleep(Duration::from_millis(producer_rng.random_range(5..40))).await;
        }
    };
    let rest = async {
        for _ in 0..REST_OPS {
            rest_op(&api, &mut rest_rng, &known, &versions).await;
            tokio::time::sleep(Duration::from_millis(rest_rng.random_range(0..25))).await;
        }
    };
    let socket = async {
        for _ in 0..SOCKET_OPS {
            let frame = socket_op(&mut socket_rng, &known, actor.max_seq());
            if let Some(frame) = frame {
                actor.client.send_text(&frame.to_string()).await;
            }
            actor
                .read_for(Duration::from_millis(socket_rng.random_range(1..25)))
                .await;
        }
    };
    let watching = async {
        while !done.is_cancelled() {
            watcher.read_for(Duration::from_millis(50)).await;
        }
    };
    // Once half are stored, the oldest pass the period (their ids and
    // times moved 31 days back): retention deletes them within 100 ms.
    let aging = async {
        testkit::eventually("half stored", WAIT, || async {
            let state = platform::storage::inbox::state(&mut gw.env.db().await, user)
                .await
                .unwrap();
            (state.last_seq >= NOTIFICATIONS as i64 / 2).then_some(())
        })
        .await;
        testkit::backdate(&mut gw.env.db().await, user, TRIMMED, 31).await;
    };
    let leaving = async {
        leaver.read_for(Duration::from_millis(700)).await;
        leaver.resume(gw, user).await;
        while !done.is_cancelled() {
            leaver.read_for(Duration::from_millis(50)).await;
        }
    };
    let work = async {
        tokio::join!(producer, rest, socket, aging);
        // Every appended one stored, every snooze (at most 3 s) woken, the
        // old ones deleted.
        testkit::eventually("every notification stored", WAIT, || async {
            let state = platform::storage::inbox::state(&mut gw.env.db().await, user)
                .await
                .unwrap();
            (state.last_seq == NOTIFICATIONS as i64 && state.trimmed_through == TRIMMED)
                .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(SNOOZE_MS.end as u64 + 500)).await;
        done.cancel();
    };
    tokio::join!(work, watching, leaving);
    for device in [&mut watcher, &mut leaver, &mut actor] {
        device.read_until_quiet().await;
    }

    // Counts == a recount from the rows.
    let answered = api.json("/v1/me/unread-count").await;
    let mut conn = gw.env.db().await;
    let recount = platform::storage::inspect::recount(&mut conn, user)
        .await
        .unwrap();
    assert_eq!(
        answered["counts"],
        serde_json::to_value(&recount).unwrap(),
        "{user}: counts == recount (seed {seed})"
    );
    // Each change its own version, none above the final one.
    let final_version = answered["version"].as_i64().unwrap();
    let versions = versions.into_inner();
    let distinct: BTreeSet<i64> = versions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        versions.len(),
        "{user}: a version per change"
    );
    assert!(
        versions.iter().all(|v| *v <= final_version),
        "{user}: no change above the final version {final_version}"
    );
    assert!(
        versions.len() > REST_OPS / 5,
        "{user}: the REST ops changed things"
    );

    // Each device holds exactly what REST reports.
    let page = api.json("/v1/me/notifications?status=all&limit=100").await;
    assert!(page["next_before"].is_null(), "one page holds them all");
    let rest_items: BTreeMap<String, (State, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap().to_owned();
            (
                id,
                (
                    State::of_item(n),
                    n["category"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        rest_items.len(),
        NOTIFICATIONS - TRIMMED as usize,
        "{user}: every one listed but the deleted"
    );
    for (name, device) in [
        ("watcher", &watcher),
        ("leaver", &leaver),
        ("actor", &actor),
    ] {
        assert!(!device.resynced, "{user}/{name}: no resync (seed {seed})");
        assert!(
            device.hello_versions_grew(),
            "{user}/{name}: hello versions grew"
        );
        assert_eq!(
            device.counts, answered["counts"],
            "{user}/{name}: the device's counts == REST's (seed {seed})"
        );
        assert_eq!(
            device.trimmed_through, TRIMMED,
            "{user}/{name}: told what retention deleted (seed {seed})"
        );
        let gone: Vec<&String> = device
            .held
            .keys()
            .filter(|id| !rest_items.contains_key(*id))
            .collect();
        assert!(
            gone.is_empty(),
            "{user}/{name}: holds deleted {gone:?} (seed {seed})"
        );
        for (id, (state, category)) in &rest_items {
            match device.state_of(id) {
                Some(held) => assert_eq!(
                    held, *state,
                    "{user}/{name}: {id} ({category}) as REST reports it (seed {seed})"
                ),
                // Muted on arrival: never pushed.
                None => assert_eq!(
                    category, "b",
                    "{user}/{name}: {id} was pushed (seed {seed})"
                ),
            }
        }
    }
}

/// One random change through the inbox REST API; the version of each that
/// changed something is kept.
async fn rest_op(
    api: &Api<'_>,
    rng: &mut StdRng,
    known: &RefCell<Vec<(uuid::Uuid, &'static str)>>,
    versions: &RefCell<Vec<i64>>,
) {
    let pick = {
        let known = known.borrow();
        (!known.is_empty()).then(|| known[rng.random_range(0..known.len())].0)
    };
    let Some(id) = pick else {
        return;
    };
    let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    let (path, body) = match rng.random_range(0..12) {
        0 => (format!("/v1/me/notifications/{id}/read"), None),
        1 => (format!("/v1/me/notifications/{id}/unread"), None),
        2 => (format!("/v1/me/notifications/{id}/archive"), None),
        3 | 4 => (format!("/v1/me/notifications/{id}/unarchive"), None),
        5 => {
            let until = Utc::now() + chrono::Duration::milliseconds(rng.random_range(SNOOZE_MS));
            (
                format!("/v1/me/notifications/{id}/snooze"),
                Some(json!({"until": until.to_rfc3339()})),
            )
        }
        6 => (format!("/v1/me/notifications/{id}/unsnooze"), None),
        7 => (
            "/v1/me/notifications/read-all".to_owned(),
            Some(json!({"category": category})),
        ),
        8 => (
            "/v1/me/notifications/archive-all".to_owned(),
            Some(json!({"category": category, "before_seq": rng.random_range(1..20)})),
        ),
        9 => (
            "/v1/me/notifications/seen".to_owned(),
            Some(json!({"up_to_seq": rng.random_range(1..NOTIFICATIONS as i64)})),
        ),
        _ => {
            let muted: Vec<&str> = if rng.random_bool(0.5) {
                vec!["b"]
            } else {
                vec![]
            };
            let body = json!({"locale": null, "timezone": null, "muted_categories": muted});
            let response = api.put_json("/v1/me/preferences", &body).await;
            assert_eq!(response.status(), StatusCode::OK);
            return;
        }
    };
    let response = match body {
        Some(body) => api.post_json(&path, &body).await,
        None => api.post(&path).await,
    };
    // An id not stored yet is not found; anything else is a change.
    if response.status() == StatusCode::NOT_FOUND && !path.contains("-all") {
        return;
    }
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let answer: Value = response.json().await.unwrap();
    if answer["ids"].as_array().is_some_and(|ids| !ids.is_empty()) {
        versions
            .borrow_mut()
            .push(answer["version"].as_i64().unwrap());
    }
}

/// One random change as a client frame.
fn socket_op(
    rng: &mut StdRng,
    known: &RefCell<Vec<(uuid::Uuid, &'static str)>>,
    max_seq: i64,
) -> Option<Value> {
    let known = known.borrow();
    if known.is_empty() {
        return None;
    }
    let ids: Vec<String> = (0..rng.random_range(1..4))
        .map(|_| known[rng.random_range(0..known.len())].0.to_string())
        .collect();
    let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    Some(match rng.random_range(0..12) {
        0 | 1 => json!({"type": "read", "ids": ids}),
        2 | 3 => json!({"type": "unread", "ids": ids}),
        4 => json!({"type": "read_all", "category": category}),
        5 => json!({"type": "seen", "up_to_seq": max_seq.max(1)}),
        6 => json!({"type": "archive", "ids": ids}),
        7 | 8 => json!({"type": "unarchive", "ids": ids}),
        9 => {
            let until = Utc::now() + chrono::Duration::milliseconds(rng.random_range(SNOOZE_MS));
            json!({"type": "snooze", "ids": ids, "until": until.to_rfc3339()})
        }
        10 => json!({"type": "unsnooze", "ids": ids}),
        _ => json!({"type": "archive_all", "read": true, "before_seq": rng.random_range(1..20)}),
    })
}

/// A notification's state as a device can know it from frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct State {
    read: bool,
    seen: bool,
    archived: bool,
    snoozed: bool,
}

impl State {
    fn of_item(n: &Value) -> Self {
        let set = |field: &str| n.get(field).is_some_and(|v| !v.is_null());
        Self {
            read: set("read_at"),
            seen: set("seen_at") || set("read_at"),
            archived: set("archived_at"),
            snoozed: set("snoozed_until"),
        }
    }
}

/// A field's value and the version of the change that set it (0: as the
/// notification frame had it).
type Versioned = (bool, i64);

/// A device: applies the frames it gets, keeping each field's newest change.
struct Device {
    client: WsClient,
    /// `seq` and whether seen, by id, for the notifications it got.
    held: HashMap<String, i64>,
    read: HashMap<String, Versioned>,
    archived: HashMap<String, Versioned>,
    snoozed: HashMap<String, Versioned>,
    /// Seen is never undone: ids seen, and the highest `up_to_seq` heard.
    seen: BTreeSet<String>,
    seen_up_to: i64,
    counts: Value,
    counts_version: i64,
    hello_versions: Vec<i64>,
    resynced: bool,
    /// Every notification up to this `seq` was deleted (retention).
    trimmed_through: i64,
}

impl Device {
    async fn connect(gw: &TestGateway, user: &str) -> Self {
        let (client, hello) = gw.connect(user).await;
        let mut device = Device {
            client,
            held: HashMap::new(),
            read: HashMap::new(),
            archived: HashMap::new(),
            snoozed: HashMap::new(),
            seen: BTreeSet::new(),
            seen_up_to: 0,
            counts: Value::Null,
            counts_version: -1,
            hello_versions: Vec::new(),
            resynced: false,
            trimmed_through: 0,
        };
        device.apply(&hello);
        device
    }

    /// Leaves, then comes back with `since` (the highest `seq` held) and
    /// `since_version` (its first hello's).
    async fn resume(&mut self, gw: &TestGateway, user: &str) {
        let since_version = self.hello_versions[0];
        let query = format!("since={}&since_version={since_version}", self.max_seq());
        let (client, hello) = gw.connect_with(user, &query).await;
        self.client = client;
        self.apply(&hello);
    }

    fn max_seq(&self) -> i64 {
        self.held.values().copied().max().unwrap_or(0)
    }

    async fn read_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.client.next_json(left).await {
                Some(frame) => self.apply(&frame),
                None => return,
            }
        }
    }

    async fn read_until_quiet(&mut self) {
        while let Some(frame) = self.client.next_json(Duration::from_millis(500)).await {
            self.apply(&frame);
        }
    }

    fn take_counts(&mut self, frame: &Value) {
        if let (Some(counts), Some(version)) = (frame.get("counts"), frame["version"].as_i64())
            && version > self.counts_version
        {
            self.counts = counts.clone();
            self.counts_version = version;
        }
    }

    fn apply(&mut self, frame: &Value) {
        assert_ne!(frame["type"], "error", "{frame}");
        self.take_counts(frame);
        let version = frame["version"].as_i64().unwrap_or(0);
        let ids = || {
            frame["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| id.as_str().unwrap().to_owned())
        };
        let set = |map: &mut HashMap<String, Versioned>, id: String, value: bool, at: i64| {
            let entry = map.entry(id).or_insert((false, -1));
            if at > entry.1 {
                *entry = (value, at);
            }
        };
        match frame["type"].as_str().unwrap() {
            "hello" => {
                self.hello_versions.push(version);
                self.trim(frame["trimmed_through"].as_i64().unwrap());
            }
            "trimmed" => self.trim(frame["up_to_seq"].as_i64().unwrap()),
            "notification" => {
                let id = frame["id"].as_str().unwrap().to_owned();
                let seq = frame["seq"].as_i64().unwrap();
                self.held.insert(id.clone(), seq);
                let state = State::of_item(frame);
                set(&mut self.read, id.clone(), state.read, 0);
                set(&mut self.archived, id.clone(), state.archived, 0);
                set(&mut self.snoozed, id.clone(), state.snoozed, 0);
                if state.seen {
                    self.seen.insert(id);
                }
            }
            "read" => {
                for id in ids() {
                    set(&mut self.read, id.clone(), true, version);
                    self.seen.insert(id);
                }
            }
            "unread" => ids().for_each(|id| set(&mut self.read, id, false, version)),
            "archived" => ids().for_each(|id| set(&mut self.archived, id, true, version)),
            "unarchived" => ids().for_each(|id| set(&mut self.archived, id, false, version)),
            "snoozed" => ids().for_each(|id| set(&mut self.snoozed, id, true, version)),
            "unsnoozed" => ids().for_each(|id| set(&mut self.snoozed, id, false, version)),
            "seen" => {
                self.seen_up_to = self.seen_up_to.max(frame["up_to_seq"].as_i64().unwrap());
            }
            "state" => {
                for item in frame["items"].as_array().unwrap() {
                    let id = item["id"].as_str().unwrap().to_owned();
                    let at = item["version"].as_i64().unwrap();
                    let state = State::of_item(item);
                    set(&mut self.read, id.clone(), state.read, at);
                    set(&mut self.archived, id.clone(), state.archived, at);
                    set(&mut self.snoozed, id.clone(), state.snoozed, at);
                    if state.seen {
                        self.seen.insert(id);
                    }
                }
            }
            "resync" => self.resynced = true,
            // Counts only (taken above).
            "muted" | "pong" => {}
            other => panic!("unexpected frame {other}: {frame}"),
        }
    }

    /// Drops what it holds up to `seq` (deleted by retention).
    fn trim(&mut self, seq: i64) {
        self.trimmed_through = self.trimmed_through.max(seq);
        let through = self.trimmed_through;
        self.held.retain(|_, held| *held > through);
    }

    fn state_of(&self, id: &str) -> Option<State> {
        let seq = *self.held.get(id)?;
        let field = |map: &HashMap<String, Versioned>| map.get(id).is_some_and(|(v, _)| *v);
        Some(State {
            read: field(&self.read),
            seen: self.seen.contains(id) || seq <= self.seen_up_to,
            archived: field(&self.archived),
            snoozed: field(&self.snoozed),
        })
    }

    fn hello_versions_grew(&self) -> bool {
        self.hello_versions.windows(2).all(|w| w[0] <= w[1])
    }
}
