//! `state-churn`: 1,000 users with two devices each. One device of each
//! user changes the state of its notifications over its socket (read,
//! unread, archive, unarchive: 2,000 changes/s over all users, one in
//! flight per user) while 1,000 notifications/s arrive; the other device
//! times each change from its sending to the frame that tells it. At the
//! end every user's counts are checked three ways: the other device's
//! (from the newest frame it got), the inbox API's, and a recount of the
//! inbox API's list.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Ctx, Send, post_paced};
use crate::client::{self, Socket};
use crate::deliveries::Deliveries;
use crate::report::{self, Latency, Outcome};

const USERS: u64 = 1_000;
const CHANGES_PER_SEC: f64 = 2_000.0;
const NOTIFICATIONS_PER_SEC: u64 = 1_000;
/// A change the other device has not heard of after this is counted lost.
const GIVE_UP: Duration = Duration::from_secs(5);
/// At the end, a user's devices are done once the watcher heard nothing
/// for this long (and no change is in flight).
const QUIET: Duration = Duration::from_millis(300);

fn churn_user(k: u64) -> String {
    format!("churn-{}", k % USERS)
}

/// What the other device knows of the user's notifications.
#[derive(Default)]
struct Known {
    /// Recent ids and whether each is read and archived, as frames told.
    items: Vec<(String, bool, bool)>,
    counts: Value,
    version: i64,
}

/// The change in flight: its frame's type, id and when it was sent.
struct InFlight {
    kind: &'static str,
    id: String,
    sent: Instant,
}

#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
    version: Option<i64>,
    counts: Option<Value>,
}

/// Shared by every user's task.
struct Tally {
    latency: Mutex<Histogram<u64>>,
    changes: AtomicU64,
    lost: AtomicU64,
}

pub async fn state_churn(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let seconds = ctx.seconds;
    let count = NOTIFICATIONS_PER_SEC * seconds;
    // Numbers and stamps the notifications posted (their frames are
    // heard by the two devices below).
    let deliveries = Deliveries::new(count as usize);
    let tally = Arc::new(Tally {
        latency: Mutex::new(report::histogram()),
        changes: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    let stop = Arc::new(tokio::sync::Notify::new());
    let known: Arc<Vec<Mutex<Known>>> =
        Arc::new((0..USERS).map(|_| Mutex::new(Known::default())).collect());
    let mut users = Vec::with_capacity(USERS as usize);
    for u in 0..USERS {
        let name = churn_user(u);
        let actor = client::connect_user(&ctx.gateway, &ctx.jwt_secret, &name, None).await?;
        let watcher = client::connect_user(&ctx.gateway, &ctx.jwt_secret, &name, None).await?;
        // Spread the users' changes over the period.
        let period = Duration::from_secs_f64(USERS as f64 / CHANGES_PER_SEC);
        let offset = period.mul_f64(u as f64 / USERS as f64);
        users.push(tokio::spawn(churn(
            actor,
            watcher,
            period,
            offset,
            known.clone(),
            u as usize,
            tally.clone(),
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let send = Send {
        rate: NOTIFICATIONS_PER_SEC as f64,
        batch: 1,
        connections: 16,
        priority: "normal",
    };
    let posted = post_paced(ctx, &deliveries, 0..count, send, churn_user, "state-churn").await?;
    let elapsed = started.elapsed().as_secs_f64();
    let changes = tally.changes.load(Ordering::Relaxed);
    // Every notification stored and pushed, then each user's last change
    // told (or given up on) before the counts are compared.
    super::wait_drained(ctx).await?;
    stop.notify_waiters();
    for user in users {
        user.await?;
    }

    let (exact, mismatches) = check_counts(ctx, &known).await?;
    let lost = tally.lost.load(Ordering::Relaxed);
    let latency = Latency::of(&tally.latency.lock().unwrap_or_else(PoisonError::into_inner));
    let mut outcome = Outcome::new("state-churn");
    outcome.rate_per_sec = changes as f64 / elapsed;
    outcome.count = changes;
    outcome.handled = Some(changes + posted.0);
    outcome.errors = posted.1;
    outcome.latency = latency;
    outcome.lost = Some(lost);
    outcome.seconds = elapsed;
    outcome.detail("users", USERS);
    outcome.detail("devices_per_user", 2);
    outcome.detail("notifications_accepted", posted.0);
    outcome.detail("users_with_exact_counts", exact);
    outcome.detail("count_mismatches", mismatches);
    outcome.target(
        "p99 of a change reaching the other device <= 20 ms",
        latency.p99_ms <= 20.0,
    );
    outcome.target(
        ">= 2,000 changes/s with 1,000 notifications/s",
        outcome.rate_per_sec >= CHANGES_PER_SEC * 0.95 && lost == 0,
    );
    outcome.target("counts exact at the end", exact == USERS);
    Ok(outcome)
}

/// One user: every `period` (from `offset`) the actor sends a change of a
/// recent notification unless one is in flight; the watcher times the
/// frame that tells it, and keeps what it knows for the end.
#[expect(
    clippy::too_many_arguments,
    reason = "one task per user, handed all it uses"
)]
async fn churn(
    mut actor: Socket,
    mut watcher: Socket,
    period: Duration,
    offset: Duration,
    known: Arc<Vec<Mutex<Known>>>,
    user: usize,
    tally: Arc<Tally>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: Option<InFlight> = None;
    let mut turn = 0u64;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    // Once stopped: no new change; the one in flight is waited for (and
    // the frames after it read) until the watcher is quiet for a moment.
    let mut quiet_from: Option<tokio::time::Instant> = None;
    loop {
        let quiet = async {
            match quiet_from {
                Some(from) => tokio::time::sleep_until(from + QUIET).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stopped, if quiet_from.is_none() => {
                quiet_from = Some(tokio::time::Instant::now());
            }
            () = quiet => {
                if in_flight.as_ref().is_none_or(|change| change.sent.elapsed() >= GIVE_UP) {
                    if in_flight.is_some() {
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                quiet_from = Some(tokio::time::Instant::now());
            }
            _ = ticks.tick(), if quiet_from.is_none() => {
                if let Some(change) = &in_flight {
                    if change.sent.elapsed() < GIVE_UP {
                        continue;
                    }
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    in_flight = None;
                }
                let next = {
                    let known = known[user].lock().unwrap_or_else(PoisonError::into_inner);
                    pick(&known.items, turn)
                };
                turn += 1;
                let Some((kind, id)) = next else { continue };
                let frame = json!({"type": kind, "ids": [id]}).to_string();
                if actor.send(Message::text(frame)).await.is_err() {
                    return;
                }
                in_flight = Some(InFlight { kind: told_by(kind), id, sent: Instant::now() });
            }
            message = watcher.next() => {
                let Some(Ok(Message::Text(text))) = message else {
                    if message.is_none() { return; }
                    continue;
                };
                if quiet_from.is_some() {
                    quiet_from = Some(tokio::time::Instant::now());
                }
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
                if let Some(change) = &in_flight
                    && frame.kind == change.kind
                    && frame.ids.contains(&change.id)
                {
                    let us = change.sent.elapsed().as_micros() as u64;
                    tally.latency.lock().unwrap_or_else(PoisonError::into_inner).saturating_record(us.max(1));
                    tally.changes.fetch_add(1, Ordering::Relaxed);
                    in_flight = None;
                }
                learn(&mut known[user].lock().unwrap_or_else(PoisonError::into_inner), frame);
            }
            // The actor hears the same frames; it only has to keep reading.
            message = actor.next() => {
                if message.is_none() { return; }
            }
        }
    }
}

/// The change to make next: alternately the read state and the archived
/// state of one of the recent notifications, to its other value (so every
/// change changes something and has a frame).
fn pick(items: &[(String, bool, bool)], turn: u64) -> Option<(&'static str, String)> {
    if items.is_empty() {
        return None;
    }
    let (id, read, archived) = &items[(turn as usize / 2) % items.len()];
    let kind = match (turn.is_multiple_of(2), *read, *archived) {
        (true, false, _) => "read",
        (true, true, _) => "unread",
        (false, _, false) => "archive",
        (false, _, true) => "unarchive",
    };
    Some((kind, id.clone()))
}

/// The frame type that tells a change made by the client frame `kind`.
fn told_by(kind: &str) -> &'static str {
    match kind {
        "read" => "read",
        "unread" => "unread",
        "archive" => "archived",
        _ => "unarchived",
    }
}

/// What a frame tells the watcher: a new notification, a change of one,
/// and the counts of the newest version.
fn learn(known: &mut Known, frame: Frame) {
    if let (Some(version), Some(counts)) = (frame.version, frame.counts.as_ref())
        && version > known.version
    {
        known.version = version;
        known.counts = counts.clone();
    }
    let set = |known: &mut Known, id: &str, apply: &dyn Fn(&mut (String, bool, bool))| {
        if let Some(item) = known.items.iter_mut().find(|item| item.0 == id) {
            apply(item);
        }
    };
    match frame.kind.as_str() {
        "notification" => {
            if let Some(id) = frame.id {
                known.items.push((id, false, false));
                if known.items.len() > 8 {
                    known.items.remove(0);
                }
            }
        }
        "read" | "unread" | "archived" | "unarchived" => {
            for id in &frame.ids {
                let kind = frame.kind.as_str();
                set(known, id, &|item| match kind {
                    "read" => item.1 = true,
                    "unread" => item.1 = false,
                    "archived" => item.2 = true,
                    _ => item.2 = false,
                });
            }
        }
        _ => {}
    }
}

/// Each user's counts, three ways: what the watcher holds, what the inbox
/// API answers, and a recount of the inbox API's list. Answers how many
/// users agree on all three, and the first few that do not.
async fn check_counts(ctx: &Ctx, known: &[Mutex<Known>]) -> anyhow::Result<(u64, Vec<Value>)> {
    let mut exact = 0;
    let mut mismatches = Vec::new();
    for u in 0..USERS {
        let name = churn_user(u);
        let token = client::token(&ctx.jwt_secret, &name)?;
        let answered: Value = serde_json::from_str(
            &client::get_text_as(&ctx.gateway, "/v1/me/unread-count", &token).await?,
        )?;
        let listed: Value = serde_json::from_str(
            &client::get_text_as(&ctx.gateway, "/v1/me/notifications?limit=100", &token).await?,
        )?;
        let recount = recount(&listed);
        let held = known[u as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .clone();
        if answered["counts"] == recount && held == recount && listed["next_before"].is_null() {
            exact += 1;
        } else if mismatches.len() < 5 {
            mismatches.push(json!({"user": name, "api": answered["counts"], "recount": recount, "device": held}));
        }
    }
    Ok((exact, mismatches))
}

/// Counts from a page of the inbox list (every listed one is neither
/// archived nor snoozed; the bench mutes nothing).
fn recount(listed: &Value) -> Value {
    let mut unread = 0;
    let mut unseen = 0;
    let mut by_category: HashMap<String, (i64, i64)> = HashMap::new();
    for item in listed["items"].as_array().into_iter().flatten() {
        if !item["read_at"].is_null() {
            continue;
        }
        let seen = !item["seen_at"].is_null();
        unread += 1;
        unseen += i64::from(!seen);
        if let Some(category) = item["category"].as_str() {
            let entry = by_category.entry(category.to_owned()).or_default();
            entry.0 += 1;
            entry.1 += i64::from(!seen);
        }
    }
    let by_category: serde_json::Map<String, Value> = by_category
        .into_iter()
        .map(|(c, (unread, unseen))| (c, json!({"unread": unread, "unseen": unseen})))
        .collect();
    json!({"unread": unread, "unseen": unseen, "by_category": by_category})
}
