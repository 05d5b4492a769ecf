//! `ingest-single` and `ingest-batch`: as many requests as `connections`
//! keep-alive producers can get answered, for the scenario's duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::{Ctx, ticker};
use crate::client::{self, Producer};
use crate::report::{Latency, Outcome, histogram};

fn item(i: u64) -> String {
    format!(
        r#"{{"user_id":"bench-{}","title":"Bench","body":"A notification","data":{{"k":{i}}}}}"#,
        i % 10_000
    )
}

/// `per_request` 1 POSTs to `/v1/notifications`, more to `/batch`.
async fn closed_loop(
    ctx: &Ctx,
    scenario: &'static str,
    connections: usize,
    per_request: u64,
    seconds: u64,
) -> anyhow::Result<Outcome> {
    let authority = client::authority(&ctx.ingest)?;
    let total = Duration::from_secs(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(histogram()));
    let mut producers = Vec::new();
    for _ in 0..connections {
        producers.push(Producer::connect(&authority, &ctx.api_key).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut producer in producers {
        let (next, accepted, errors, latencies) = (
            next.clone(),
            accepted.clone(),
            errors.clone(),
            latencies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while started.elapsed() < total {
                let first = next.fetch_add(per_request, Ordering::Relaxed);
                let (path, body) = if per_request == 1 {
                    ("/v1/notifications", item(first))
                } else {
                    let items: Vec<String> = (first..first + per_request).map(item).collect();
                    (
                        "/v1/notifications/batch",
                        format!(r#"{{"notifications":[{}]}}"#, items.join(",")),
                    )
                };
                let sent = Instant::now();
                let answered = producer.post(path, Bytes::from(body)).await;
                let took = sent.elapsed().as_micros() as u64;
                let n = match answered {
                    Ok((StatusCode::ACCEPTED, _)) => 1,
                    Ok((StatusCode::OK, body)) => serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|b| b["accepted"].as_u64())
                        .unwrap_or(0),
                    _ => 0,
                };
                if n == 0 {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    accepted.fetch_add(n, Ordering::Relaxed);
                    let _ = local.record(took.max(1));
                }
            }
            let _ = latencies.lock().await.add(&local);
        }));
    }
    let ticker = ticker(scenario, started, total, accepted.clone());
    for task in tasks {
        task.await?;
    }
    ticker.abort();
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64();
    let mut outcome = Outcome::new(scenario);
    outcome.count = accepted.load(Ordering::Relaxed);
    outcome.rate_per_sec = outcome.count as f64 / elapsed;
    outcome.errors = errors.load(Ordering::Relaxed);
    outcome.latency = Latency::of(&*latencies.lock().await);
    outcome.seconds = elapsed;
    outcome.detail("connections", connections);
    outcome.detail("per_request", per_request);
    Ok(outcome)
}

/// 64 connections, one notification per request.
pub async fn single(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut outcome = closed_loop(ctx, "ingest-single", 64, 1, ctx.seconds).await?;
    let rate = outcome.rate_per_sec;
    outcome.target(">= 40,000 accepted/s", rate >= 40_000.0);
    Ok(outcome)
}

/// 8 connections, 100 notifications per request, for half of `--seconds`:
/// the worker then needs about a minute to drain what it took in.
pub async fn batch(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut outcome = closed_loop(ctx, "ingest-batch", 8, 100, ctx.seconds.div_ceil(2)).await?;
    let rate = outcome.rate_per_sec;
    outcome.target(">= 200,000 notifications/s", rate >= 200_000.0);
    Ok(outcome)
}
