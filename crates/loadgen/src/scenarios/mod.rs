//! The benchmark scenarios (bench/README.md). Each is bounded in time and count, prints a
//! progress line, and answers an [`Outcome`](crate::report::Outcome).

pub mod churn;
pub mod connections;
pub mod e2e;
pub mod ingest;
pub mod priority;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::client::{self, Producer};
use crate::deliveries::Deliveries;

/// Where the services are and what the bench may use.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub ingest: String,
    pub gateway: String,
    pub worker: String,
    pub api_key: String,
    pub jwt_secret: String,
    pub seconds: u64,
    pub gateway_pid: Option<u32>,
    /// More gateways (URL and pid) for `connections`, past one process's
    /// open-files limit.
    pub extra_gateways: Vec<(String, u32)>,
    pub pids: Vec<(String, u32)>,
}

pub fn progress(scenario: &str, started: Instant, total: Duration, what: impl std::fmt::Display) {
    eprint!(
        "\r{scenario}: {:>5.1}/{:.0} s, {what}          ",
        started.elapsed().as_secs_f64(),
        total.as_secs_f64()
    );
}

/// Prints the progress line every second until aborted.
pub fn ticker(
    label: &'static str,
    started: Instant,
    total: Duration,
    accepted: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let done = format!("{} accepted", accepted.load(Ordering::Relaxed));
            progress(label, started, total, done);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whose CPU time to read.
#[derive(Debug, Clone)]
pub enum CpuProbe {
    /// One process (a service started by `make bench`).
    Pid(u32),
    /// The load generator itself.
    Me,
    /// Every process running this command (PostgreSQL's backends,
    /// redis-server); a backend that exits is still counted, in its
    /// parent's children time.
    Command(&'static str),
}

impl CpuProbe {
    /// CPU time used so far (user + system, its waited-for children's
    /// included), in seconds.
    pub fn seconds(&self) -> Option<f64> {
        match self {
            Self::Pid(pid) => stat_cpu(&format!("/proc/{pid}/stat")).map(|(_, s)| s),
            Self::Me => stat_cpu("/proc/self/stat").map(|(_, s)| s),
            Self::Command(command) => Some(
                std::fs::read_dir("/proc")
                    .ok()?
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .filter_map(|e| stat_cpu(&format!("{}/stat", e.path().display())))
                    .filter(|(name, _)| name == command)
                    .map(|(_, s)| s)
                    .sum(),
            ),
        }
    }
}

/// A process's command name and CPU time (user + system, its waited-for
/// children's included; seconds) from its `/proc/<pid>/stat`.
fn stat_cpu(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // "pid (comm) state ...": comm may hold spaces; utime and stime are
    // fields 14 and 15, counting pid as 1; cutime and cstime (16, 17) are
    // children that exited and were waited for (PostgreSQL's postmaster
    // collects its backends' time there when they exit).
    let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_owned();
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    let used: u64 = [14, 15, 16, 17]
        .into_iter()
        .map(ticks)
        .sum::<Option<u64>>()?;
    // Clock ticks are USER_HZ: 100 per second on every Linux ABI.
    Some((name, used as f64 / 100.0))
}

/// The open-files limit of a process (soft).
pub fn open_files_limit(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or("/proc/self/limits".to_owned(), |p| {
        format!("/proc/{p}/limits")
    });
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Entries the worker still has to store: pending plus not yet delivered,
/// over all lanes, from its `/metrics`.
pub async fn worker_backlog(ctx: &Ctx) -> anyhow::Result<f64> {
    let text = client::get_text(&ctx.worker, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("herald_stream_pending_entries{")
                || l.starts_with("herald_stream_lag_entries{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Waits until the worker has nothing left, so one scenario's backlog does
/// not count against the next. The gauges refresh about every second, so
/// it takes two empty readings 1.2 s apart.
pub async fn wait_drained(ctx: &Ctx) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        let backlog = worker_backlog(ctx).await?;
        if backlog == 0.0 {
            match empty_since {
                Some(at) if at.elapsed() >= Duration::from_millis(1_200) => return Ok(()),
                Some(_) => {}
                None => empty_since = Some(Instant::now()),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        empty_since = None;
        eprint!(
            "\rwaiting for the worker to drain: {backlog} entries, {:.0} s      ",
            started.elapsed().as_secs_f64()
        );
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the worker did not drain in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How notifications are sent by [`post_paced`].
#[derive(Clone, Copy)]
pub struct Send {
    /// Notifications per second.
    pub rate: f64,
    /// Items per request: 1 posts to `/v1/notifications`, more to `/batch`.
    pub batch: u64,
    pub connections: usize,
    pub priority: &'static str,
}

/// Posts notifications numbered `range` at `send.rate`, each to the user
/// `user(k)`, marking accepted ones in `deliveries`. Request `r` is sent at
/// `r * batch / rate` seconds after the start (or as soon as a producer is
/// free, if behind). Answers (accepted, failed requests).
pub async fn post_paced(
    ctx: &Ctx,
    deliveries: &Arc<Deliveries>,
    range: Range<u64>,
    send: Send,
    user: fn(u64) -> String,
    label: &'static str,
) -> anyhow::Result<(u64, u64)> {
    let authority = client::authority(&ctx.ingest)?;
    let requests = (range.end - range.start).div_ceil(send.batch);
    let started = tokio::time::Instant::now();
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..send.connections {
        let mut producer = Producer::connect(&authority, &ctx.api_key).await?;
        let (deliveries, accepted, errors, next) = (
            deliveries.clone(),
            accepted.clone(),
            errors.clone(),
            next.clone(),
        );
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return;
                }
                let at = Duration::from_secs_f64((r * send.batch) as f64 / send.rate);
                tokio::time::sleep_until(started + at).await;
                let first = range.start + r * send.batch;
                let ks: Vec<u64> = (first..(first + send.batch).min(range.end)).collect();
                let ok = post(&mut producer, &deliveries, &ks, send.priority, user).await;
                match ok {
                    Some(n) => accepted.fetch_add(n, Ordering::Relaxed),
                    None => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let total = Duration::from_secs_f64((range.end - range.start) as f64 / send.rate);
    let ticker = ticker(label, Instant::now(), total, accepted.clone());
    for task in tasks {
        task.await?;
    }
    ticker.abort();
    eprintln!();
    Ok((
        accepted.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    ))
}

/// One request for notifications `ks`; the number accepted, `None` if the
/// request failed.
async fn post(
    producer: &mut Producer,
    deliveries: &Deliveries,
    ks: &[u64],
    priority: &str,
    user: fn(u64) -> String,
) -> Option<u64> {
    if let [k] = ks {
        let body = deliveries.notification(*k, &user(*k), priority);
        let (status, _) = producer
            .post("/v1/notifications", Bytes::from(body))
            .await
            .ok()?;
        if status != StatusCode::ACCEPTED {
            return None;
        }
        deliveries.accepted(*k);
        return Some(1);
    }
    let items: Vec<String> = ks
        .iter()
        .map(|k| deliveries.notification(*k, &user(*k), priority))
        .collect();
    let body = format!(r#"{{"notifications":[{}]}}"#, items.join(","));
    let (status, answer) = producer
        .post("/v1/notifications/batch", Bytes::from(body))
        .await
        .ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let answer: Value = serde_json::from_slice(&answer).ok()?;
    let results = answer["results"].as_array()?;
    let mut accepted = 0;
    for (k, result) in ks.iter().zip(results) {
        if result["status"] == "accepted" {
            deliveries.accepted(*k);
            accepted += 1;
        }
    }
    Some(accepted)
}

/// Connects users `users` (named by `name`) to the gateway and starts
/// reading their frames into `deliveries` (see [`open_users`]).
pub async fn connect_users(
    ctx: &Ctx,
    deliveries: &Arc<Deliveries>,
    users: Range<u64>,
    name: fn(u64) -> String,
    spread: bool,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    open_users(
        &ctx.gateway,
        &ctx.jwt_secret,
        users,
        name,
        spread,
        |socket| deliveries.read(socket),
    )
    .await
}

/// Connects `users` to `gateway` (64 handshakes at a time; `spread`: from
/// 127.0.0.2-5 in turn, past one source address's ephemeral ports) and
/// hands each socket to `read`, which returns its reading task.
pub async fn open_users(
    gateway: &str,
    secret: &str,
    users: Range<u64>,
    name: fn(u64) -> String,
    spread: bool,
    mut read: impl FnMut(client::Socket) -> tokio::task::JoinHandle<()>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let started = Instant::now();
    let total = users.end - users.start;
    let mut readers = Vec::with_capacity(total as usize);
    let mut pending = futures_util::stream::iter(users.clone().map(|u| {
        let source = spread.then(|| std::net::IpAddr::from([127, 0, 0, 2 + (u % 4) as u8]));
        async move {
            // A handshake the gateway never answers (its listen queue full,
            // say) must fail the run, not hang it.
            tokio::time::timeout(
                Duration::from_secs(30),
                client::connect_user(gateway, secret, &name(u), source),
            )
            .await
            .map_err(|_| anyhow::anyhow!("connecting user {u}: no answer within 30 s"))?
        }
    }))
    .buffer_unordered(64);
    use futures_util::StreamExt;
    while let Some(socket) = pending.next().await {
        readers.push(read(socket?));
        if readers.len() % 2_000 == 0 {
            eprint!(
                "\rconnecting users: {}/{total}, {:.1} s      ",
                readers.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "\rconnected {total} users in {:.1} s                ",
        started.elapsed().as_secs_f64()
    );
    Ok(readers)
}
