//! What arrived over the WebSockets: each notification carries its number
//! `k` and the bench-clock time it was posted `t` (µs) in `data`, so a frame
//! is matched and timed without shared maps. Counts per `k` show losses and
//! duplicates; one histogram per second of arrival draws the chart.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Socket;
use crate::report::{Latency, Point};

#[derive(Deserialize)]
struct Frame {
    data: Option<Stamp>,
}

#[derive(Deserialize)]
struct Stamp {
    k: u64,
    t: u64,
}

/// Notifications numbered `0..capacity`, posted and received.
pub struct Deliveries {
    clock: Instant,
    /// `clock`'s start in Unix microseconds, for holder processes that
    /// report arrivals on the wall clock.
    epoch_unix_us: u64,
    accepted: Vec<AtomicBool>,
    received: Vec<AtomicU8>,
    arrivals: AtomicU64,
    /// When the latest first copy of a notification arrived, bench clock.
    last_arrival_us: AtomicU64,
    per_second: Mutex<Vec<Histogram<u64>>>,
}

impl Deliveries {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            clock: Instant::now(),
            epoch_unix_us: unix_us(),
            accepted: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            received: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            arrivals: AtomicU64::new(0),
            last_arrival_us: AtomicU64::new(0),
            per_second: Mutex::new(Vec::new()),
        })
    }

    /// Microseconds on the bench's clock, to put in `data.t`.
    pub fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    /// The notification body for number `k`, stamped now, in one of four
    /// categories (so every round moves counts per category, as a product
    /// with categories does).
    pub fn notification(&self, k: u64, user: &str, priority: &str) -> String {
        format!(
            r#"{{"user_id":"{user}","title":"Bench","body":"A notification","priority":"{priority}","category":"c{}","data":{{"k":{k},"t":{}}}}}"#,
            k % 4,
            self.now_us()
        )
    }

    /// The bench clock's start in Unix microseconds.
    pub fn epoch_unix_us(&self) -> u64 {
        self.epoch_unix_us
    }

    pub fn accepted(&self, k: u64) {
        if let Some(slot) = self.accepted.get(k as usize) {
            slot.store(true, Ordering::Relaxed);
        }
    }

    fn arrived(&self, k: u64, sent_us: u64) {
        self.arrived_at(k, sent_us, self.now_us());
    }

    /// Records number `k`, sent at `sent_us`, as arrived at `at_us` (both
    /// on the bench clock).
    pub fn arrived_at(&self, k: u64, sent_us: u64, at_us: u64) {
        let Some(slot) = self.received.get(k as usize) else {
            return;
        };
        let first = slot.fetch_add(1, Ordering::Relaxed) == 0;
        self.arrivals.fetch_add(1, Ordering::Relaxed);
        if !first {
            return;
        }
        self.last_arrival_us.fetch_max(at_us, Ordering::Relaxed);
        let second = (at_us / 1_000_000) as usize;
        let mut per_second = self
            .per_second
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while per_second.len() <= second {
            per_second.push(crate::report::histogram());
        }
        let _ = per_second[second].record(at_us.saturating_sub(sent_us).max(1));
    }

    /// When the last notification (first copy) arrived at its client, on
    /// the bench clock; 0 before any did.
    pub fn last_arrival_us(&self) -> u64 {
        self.last_arrival_us.load(Ordering::Relaxed)
    }

    /// Reads a user's socket until it closes, recording stamped frames.
    /// See [`read_stamps`].
    pub fn read(self: &Arc<Self>, socket: Socket) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(read_stamps(socket, move |k, t| this.arrived(k, t)))
    }

    /// Distinct notifications received in `range`.
    pub fn received_in(&self, range: std::ops::Range<u64>) -> u64 {
        range
            .filter(|k| {
                self.received
                    .get(*k as usize)
                    .is_some_and(|c| c.load(Ordering::Relaxed) > 0)
            })
            .count() as u64
    }

    /// Accepted in `range`.
    pub fn accepted_in(&self, range: std::ops::Range<u64>) -> u64 {
        range
            .filter(|k| {
                self.accepted
                    .get(*k as usize)
                    .is_some_and(|a| a.load(Ordering::Relaxed))
            })
            .count() as u64
    }

    /// Accepted but never received, and extra copies received, in `range`.
    pub fn lost_and_duplicated(&self, range: std::ops::Range<u64>) -> (u64, u64) {
        let (mut lost, mut duplicated) = (0, 0);
        for k in range {
            let k = k as usize;
            let (Some(accepted), Some(received)) = (self.accepted.get(k), self.received.get(k))
            else {
                break;
            };
            let received = u64::from(received.load(Ordering::Relaxed));
            if accepted.load(Ordering::Relaxed) && received == 0 {
                lost += 1;
            }
            duplicated += received.saturating_sub(1);
        }
        (lost, duplicated)
    }

    /// Waits (up to `grace`) until everything accepted in `range` arrived.
    pub async fn settle(&self, range: std::ops::Range<u64>, grace: std::time::Duration) {
        let deadline = Instant::now() + grace;
        let expected = self.accepted_in(range.clone());
        while Instant::now() < deadline && self.received_in(range.clone()) < expected {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The outcome of notifications `range`, posted from `from_us` on the
    /// bench clock over `seconds`: rate, counts, latency and its timeline,
    /// lost and duplicated frames.
    pub fn outcome(
        &self,
        scenario: &'static str,
        range: std::ops::Range<u64>,
        from_us: u64,
        (accepted, errors): (u64, u64),
        seconds: f64,
    ) -> crate::report::Outcome {
        let (lost, duplicated) = self.lost_and_duplicated(range);
        let (latency, timeline) = self.latency(from_us, self.now_us());
        let mut outcome = crate::report::Outcome::new(scenario);
        outcome.rate_per_sec = accepted as f64 / seconds.max(f64::EPSILON);
        outcome.count = accepted;
        outcome.errors = errors;
        outcome.latency = latency;
        outcome.lost = Some(lost);
        outcome.duplicated = Some(duplicated);
        outcome.seconds = seconds;
        outcome.timeline = timeline;
        outcome
    }

    /// Latency of first arrivals during seconds `from..to` of the bench clock
    /// (whole seconds), and the timeline of those seconds.
    pub fn latency(&self, from_us: u64, to_us: u64) -> (Latency, Vec<Point>) {
        let per_second = self
            .per_second
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (first, last) = ((from_us / 1_000_000) as usize, (to_us / 1_000_000) as usize);
        let mut total = crate::report::histogram();
        let mut timeline = Vec::new();
        for (second, h) in per_second.iter().enumerate().take(last + 1).skip(first) {
            let _ = total.add(h);
            if !h.is_empty() {
                timeline.push(Point::of((second - first) as f64, h));
            }
        }
        (Latency::of(&total), timeline)
    }
}

/// Reads a socket until it closes, calling `stamped(k, t)` for each frame
/// that carries a bench stamp.
pub async fn read_stamps(mut socket: Socket, stamped: impl Fn(u64, u64)) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if let Ok(Frame {
            data: Some(Stamp { k, t }),
        }) = serde_json::from_str::<Frame>(&text)
        {
            stamped(k, t);
        }
    }
}

/// Now in Unix microseconds.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
