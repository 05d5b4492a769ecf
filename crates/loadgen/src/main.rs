//! herald-bench: load scenarios against running Herald services, driven
//! from a separate process over real HTTP and WebSockets. Every scenario is
//! bounded in time and count and stops by itself; a progress line shows
//! where it is. Results go to `<out>/latest.json` and `<out>/latest.md`.
//!
//! Implemented so far: `ingest-single`, `ingest-batch`, `e2e-latency`
//! (see bench/README.md for what is not yet).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    IngestSingle,
    IngestBatch,
    E2eLatency,
}

#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    about = "Load scenarios against running Herald services"
)]
struct Args {
    /// ingest-api base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    ingest: String,
    /// ws-gateway base URL (http://; the WebSocket URL is derived).
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    gateway: String,
    /// stream-worker base URL: its /metrics tells when the streams are drained.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    worker: String,
    #[arg(long, env = "HERALD_BENCH_API_KEY")]
    api_key: String,
    /// The gateway's JWT secret, to sign users' tokens.
    #[arg(long, env = "HERALD__AUTH__JWT_SECRET")]
    jwt_secret: String,
    /// Scenarios to run (default: all implemented).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Seconds per timed scenario.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    memory_gib: f64,
}

fn machine() -> Machine {
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    }
}

#[derive(Debug, Serialize)]
struct Outcome {
    scenario: &'static str,
    /// Headline rate (accepted or delivered per second).
    rate_per_sec: f64,
    count: u64,
    errors: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    lost: Option<u64>,
    duplicated: Option<u64>,
    seconds: f64,
}

fn latency_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn percentiles(h: &Histogram<u64>) -> (f64, f64, f64, f64, f64) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
    )
}

fn progress(scenario: &str, started: Instant, total: Duration, count: u64) {
    eprint!(
        "\r{scenario}: {:>5.1}/{:.0} s, {count} done      ",
        started.elapsed().as_secs_f64(),
        total.as_secs_f64()
    );
}

fn notification(i: u64, users: u64) -> Value {
    json!({"user_id": format!("bench-{}", i % users), "title": "Bench", "body": "A notification", "data": {"k": i}})
}

/// POST one notification per request from `connections` concurrent clients.
async fn ingest_single(args: &Args, connections: usize) -> anyhow::Result<Outcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("{}/v1/notifications", args.ingest);
    let total = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(latency_histogram()));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, next, errors, histogram, key) = (
            client.clone(),
            url.clone(),
            next.clone(),
            errors.clone(),
            histogram.clone(),
            args.api_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = latency_histogram();
            while started.elapsed() < total {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let ok = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .json(&notification(i, 10_000))
                    .send()
                    .await
                    .map(|r| r.status() == reqwest::StatusCode::ACCEPTED)
                    .unwrap_or(false);
                if ok {
                    let _ = local.record(sent.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = histogram.lock().await.add(&local);
        }));
    }
    let ticker = tokio::spawn({
        let next = next.clone();
        async move {
            while started.elapsed() < total {
                progress(
                    "ingest-single",
                    started,
                    total,
                    next.load(Ordering::Relaxed),
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    for task in tasks {
        task.await?;
    }
    ticker.abort();
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64();
    let h = histogram.lock().await;
    let (p50, p90, p99, p999, max) = percentiles(&h);
    Ok(Outcome {
        scenario: "ingest-single",
        rate_per_sec: h.len() as f64 / elapsed,
        count: h.len(),
        errors: errors.load(Ordering::Relaxed),
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        lost: None,
        duplicated: None,
        seconds: elapsed,
    })
}

/// POST batches of `per_request` notifications from `connections` clients.
async fn ingest_batch(
    args: &Args,
    connections: usize,
    per_request: u64,
) -> anyhow::Result<Outcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("{}/v1/notifications/batch", args.ingest);
    let total = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(latency_histogram()));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, next, accepted, errors, histogram, key) = (
            client.clone(),
            url.clone(),
            next.clone(),
            accepted.clone(),
            errors.clone(),
            histogram.clone(),
            args.api_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = latency_histogram();
            while started.elapsed() < total {
                let first = next.fetch_add(per_request, Ordering::Relaxed);
                let items: Vec<Value> = (first..first + per_request)
                    .map(|i| notification(i, 10_000))
                    .collect();
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .json(&json!({ "notifications": items }))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().await.unwrap_or_default();
                        accepted
                            .fetch_add(body["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        let _ = local.record(sent.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = histogram.lock().await.add(&local);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = histogram.lock().await;
    let (p50, p90, p99, p999, max) = percentiles(&h);
    let count = accepted.load(Ordering::Relaxed);
    eprintln!("ingest-batch: {count} accepted in {elapsed:.1} s");
    Ok(Outcome {
        scenario: "ingest-batch",
        rate_per_sec: count as f64 / elapsed,
        count,
        errors: errors.load(Ordering::Relaxed),
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        lost: None,
        duplicated: None,
        seconds: elapsed,
    })
}

/// Waits until the worker reports nothing pending and nothing undelivered
/// in any lane, so one scenario's backlog does not count against the next.
async fn wait_drained(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let text = reqwest::get(format!("{}/metrics", args.worker))
            .await?
            .text()
            .await?;
        let backlog: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("herald_stream_pending_entries{")
                    || l.starts_with("herald_stream_lag_entries{")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if backlog == 0.0 {
            return Ok(());
        }
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

fn token(secret: &str, user: &str) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// `users` WebSocket clients; `rate` notifications per second for the
/// scenario's duration, spread over them; latency from just before the POST
/// to the frame's arrival, matched by `data.k`.
async fn e2e_latency(args: &Args, users: u64, rate: u64) -> anyhow::Result<Outcome> {
    let ws_base = args.gateway.replacen("http", "ws", 1);
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let received: Arc<Mutex<HashMap<u64, u32>>> = Arc::new(Mutex::new(HashMap::new()));
    let histogram = Arc::new(Mutex::new(latency_histogram()));
    let mut readers = Vec::new();
    for u in 0..users {
        let mut request = format!("{ws_base}/v1/ws").into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token(&args.jwt_secret, &format!("bench-{u}"))?).parse()?,
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
        let (sent_at, received, histogram) = (sent_at.clone(), received.clone(), histogram.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let Some(k) = frame["data"]["k"].as_u64() else {
                    continue;
                };
                let arrived = Instant::now();
                *received.lock().await.entry(k).or_default() += 1;
                if let Some(at) = sent_at.lock().await.get(&k) {
                    let _ = histogram
                        .lock()
                        .await
                        .record(arrived.duration_since(*at).as_micros() as u64);
                }
            }
        }));
    }
    let client = reqwest::Client::new();
    let url = format!("{}/v1/notifications", args.ingest);
    let total = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut i = 0u64;
    let mut posts = Vec::new();
    while started.elapsed() < total {
        interval.tick().await;
        sent_at.lock().await.insert(i, Instant::now());
        let (client, url, key, accepted, errors) = (
            client.clone(),
            url.clone(),
            args.api_key.clone(),
            accepted.clone(),
            errors.clone(),
        );
        let body = notification(i, users);
        posts.push(tokio::spawn(async move {
            match client
                .post(&url)
                .header("x-api-key", &key)
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                    accepted.fetch_add(1, Ordering::Relaxed)
                }
                _ => errors.fetch_add(1, Ordering::Relaxed),
            };
        }));
        i += 1;
        if i.is_multiple_of(rate.max(1)) {
            progress("e2e-latency", started, total, i);
        }
    }
    for post in posts {
        post.await?;
    }
    eprintln!();
    // Let the last frames arrive.
    let expected = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (received.lock().await.len() as u64) < expected {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let received = received.lock().await;
    let lost = expected.saturating_sub(received.len() as u64);
    let duplicated: u64 = received
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    let h = histogram.lock().await;
    let (p50, p90, p99, p999, max) = percentiles(&h);
    Ok(Outcome {
        scenario: "e2e-latency",
        rate_per_sec: expected as f64 / total.as_secs_f64(),
        count: expected,
        errors: errors.load(Ordering::Relaxed),
        p50_ms: p50,
        p90_ms: p90,
        p99_ms: p99,
        p999_ms: p999,
        max_ms: max,
        lost: Some(lost),
        duplicated: Some(duplicated),
        seconds: total.as_secs_f64(),
    })
}

fn markdown(machine: &Machine, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "Machine: {} cores, {} GiB; {}\n\n| scenario | rate/s | count | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        machine.cores,
        machine.memory_gib,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    for o in outcomes {
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            o.scenario,
            o.rate_per_sec,
            o.count,
            o.errors,
            o.p50_ms,
            o.p90_ms,
            o.p99_ms,
            o.p999_ms,
            o.max_ms,
            opt(o.lost),
            opt(o.duplicated)
        ));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios = if args.scenario.is_empty() {
        vec![
            Scenario::IngestSingle,
            Scenario::IngestBatch,
            Scenario::E2eLatency,
        ]
    } else {
        args.scenario.clone()
    };
    let machine = machine();
    eprintln!(
        "machine: {} cores, {} GiB",
        machine.cores, machine.memory_gib
    );
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        wait_drained(&args).await?;
        eprintln!();
        let outcome = match scenario {
            Scenario::IngestSingle => ingest_single(&args, 64).await?,
            Scenario::IngestBatch => ingest_batch(&args, 8, 100).await?,
            Scenario::E2eLatency => e2e_latency(&args, 1_000, 1_000).await?,
        };
        eprintln!("{}", serde_json::to_string(&outcome)?);
        outcomes.push(outcome);
    }
    std::fs::create_dir_all(&args.out)?;
    let report = json!({ "machine": machine, "results": outcomes });
    std::fs::write(
        args.out.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = markdown(&machine, &outcomes);
    std::fs::write(args.out.join("latest.md"), &table)?;
    println!("{table}");
    Ok(())
}
