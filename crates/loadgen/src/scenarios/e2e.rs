//! End to end: POST -> stream -> worker -> PostgreSQL -> Pub/Sub -> gateway
//! -> WebSocket frame, timed on the bench's clock.

use std::time::{Duration, Instant};

use super::{Ctx, Send, connect_users, post_paced, worker_backlog};
use crate::deliveries::Deliveries;
use crate::report::Outcome;

fn latency_user(k: u64) -> String {
    format!("lat-{}", k % 1_000)
}

fn throughput_user(k: u64) -> String {
    format!("tp-{}", k % 10_000)
}

fn soak_user(k: u64) -> String {
    format!("soak-{}", k % 1_000)
}

/// 1,000 users connected; 1,000 notifications/s for 1.5 x `--seconds`
/// (30 s by default), single POSTs; every frame timed and counted.
pub async fn latency(ctx: &Ctx) -> anyhow::Result<Outcome> {
    const USERS: u64 = 1_000;
    const RATE: u64 = 1_000;
    let seconds = ctx.seconds * 3 / 2;
    let count = RATE * seconds;
    let deliveries = Deliveries::new(count as usize);
    let readers = connect_users(ctx, &deliveries, 0..USERS, latency_user, false).await?;
    let from = deliveries.now_us();
    let send = Send {
        rate: RATE as f64,
        batch: 1,
        connections: 32,
        priority: "normal",
    };
    let posted = post_paced(
        ctx,
        &deliveries,
        0..count,
        send,
        latency_user,
        "e2e-latency",
    )
    .await?;
    deliveries.settle(0..count, Duration::from_secs(10)).await;
    readers.iter().for_each(|r| r.abort());
    let mut outcome = deliveries.outcome("e2e-latency", 0..count, from, posted, seconds as f64);
    let (latency, lost, duplicated) = (outcome.latency, outcome.lost, outcome.duplicated);
    outcome.detail("users", USERS);
    outcome.target("p50 <= 5 ms", latency.p50_ms <= 5.0);
    outcome.target("p99 <= 20 ms", latency.p99_ms <= 20.0);
    outcome.target(
        "0 lost, 0 duplicated",
        lost == Some(0) && duplicated == Some(0),
    );
    Ok(outcome)
}

/// Rates tried in turn; the highest that passes is then held. The last one
/// is above what this machine sustained on its best day (25,000/s on
/// 2026-12-02), so the result shows where it falls behind rather than
/// where the list ends.
const STEPS: [u64; 10] = [
    2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000, 25_000, 30_000,
];

/// Holds tried at most, highest first.
const HOLDS: usize = 4;

/// 10,000 users connected. Steps the rate up (batches of 100, `step`
/// seconds each) while every notification posted in a step is delivered
/// within 1 s of its end and the worker's backlog then is under half a
/// second of traffic; then holds the highest passing rate for `sustain`
/// seconds and checks that the backlog did not grow (its least-squares
/// trend rises by at most 0.5% of the rate per second). A hold that fails
/// tells the rate the pipeline did keep up with (posted minus backlog
/// growth); the next hold tries 95% of that (rounded down to 500/s), at
/// most [`HOLDS`] in all.
/// After each hold the backlog drains before frames are counted, so `lost`
/// means never delivered, not late.
pub async fn throughput(ctx: &Ctx, step: u64, sustain: u64) -> anyhow::Result<Outcome> {
    const USERS: u64 = 10_000;
    let capacity =
        STEPS.iter().sum::<u64>() * step + HOLDS as u64 * STEPS[STEPS.len() - 1] * sustain;
    let deliveries = Deliveries::new(capacity as usize);
    let readers = connect_users(ctx, &deliveries, 0..USERS, throughput_user, false).await?;
    let mut outcome = Outcome::new("e2e-throughput");
    let mut next = 0u64;
    let mut passing = Vec::new();
    let mut steps = Vec::new();
    for rate in STEPS {
        let range = next..next + rate * step;
        next = range.end;
        let began = Instant::now();
        let (accepted, errors) = post_paced(
            ctx,
            &deliveries,
            range.clone(),
            batches_at(rate),
            throughput_user,
            "e2e-throughput step",
        )
        .await?;
        let posting = began.elapsed().as_secs_f64();
        deliveries
            .settle(range.clone(), Duration::from_secs(1))
            .await;
        let delivered = deliveries.received_in(range.clone());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let backlog = worker_backlog(ctx).await?;
        let kept_up = errors == 0
            && accepted == range.end - range.start
            && delivered == accepted
            && posting <= step as f64 * 1.1
            && backlog <= rate as f64 / 2.0;
        eprintln!(
            "  {rate}/s: posted in {posting:.1} s, {accepted} accepted, {delivered} delivered within 1 s, backlog {backlog}: {}",
            if kept_up { "kept up" } else { "fell behind" }
        );
        steps.push(serde_json::json!({"rate": rate, "accepted": accepted, "delivered_in_time": delivered, "backlog_after": backlog, "posting_s": posting, "kept_up": kept_up}));
        if !kept_up {
            break;
        }
        passing.push(rate);
    }
    outcome.detail("users", USERS);
    outcome.detail("steps", steps);

    let mut holds = Vec::new();
    let mut candidate = passing.last().copied();
    while let Some(rate) = candidate.take().filter(|_| holds.len() < HOLDS) {
        super::wait_drained(ctx).await?;
        let range = next..next + rate * sustain;
        next = range.end;
        let from = deliveries.now_us();
        let sampler = tokio::spawn(sample_backlog(ctx.clone(), sustain));
        let (accepted, errors) = post_paced(
            ctx,
            &deliveries,
            range.clone(),
            batches_at(rate),
            throughput_user,
            "e2e-throughput hold",
        )
        .await?;
        let samples = sampler.await?;
        let backlog: Vec<f64> = samples.iter().map(|(_, b)| *b).collect();
        super::wait_drained(ctx).await?;
        deliveries
            .settle(range.clone(), Duration::from_secs(5))
            .await;
        let (lost, duplicated) = deliveries.lost_and_duplicated(range.clone());
        // Every frame of the hold, the late ones included.
        let (latency, timeline) = deliveries.latency(from, deliveries.now_us());
        // Not growing: the backlog's trend over the hold (least squares
        // over the 5-s samples, which rounds make noisy) rises by at most
        // 0.5% of the rate per second.
        let growth = growth_per_sec(&samples);
        let flat = samples.len() >= 3 && growth <= rate as f64 * 0.005;
        let sustained = flat && lost == 0 && duplicated == 0 && errors == 0;
        eprintln!(
            "  held {rate}/s for {sustain} s: backlog every 5 s {backlog:?}: {}",
            if sustained {
                "sustained"
            } else {
                "not sustained"
            }
        );
        // What the pipeline kept up with: the rate posted, less the
        // backlog's growth per second.
        let kept_up_with = (rate as f64 - growth.max(0.0)).max(0.0);
        holds.push(serde_json::json!({"rate": rate, "backlog_every_5s": backlog, "backlog_growth_per_sec": growth.round(), "sustained": sustained, "kept_up_with_per_sec": kept_up_with.round(), "lost": lost, "duplicated": duplicated}));
        outcome.count = accepted;
        outcome.errors = errors;
        outcome.latency = latency;
        outcome.lost = Some(lost);
        outcome.duplicated = Some(duplicated);
        outcome.seconds = sustain as f64;
        outcome.timeline = timeline;
        if sustained {
            outcome.rate_per_sec = rate as f64;
            break;
        }
        // 95% of what it kept up with, in steps of 500/s down, and lower
        // than the failed rate. What it keeps up with while overloaded
        // (full rounds) overstates what it sustains: retried at 100%, holds
        // at 22,500, 21,500 and 21,000/s each crept by 200-600/s and the
        // four holds ran out (2026-12-01); at 90% a hold landed well below
        // (18,500 after keeping up with 20,955).
        let retry_rate =
            ((kept_up_with * 0.95 / 500.0).floor() as u64 * 500).min(rate.saturating_sub(500));
        candidate = Some(retry_rate).filter(|r| *r >= 500);
    }
    outcome.detail("holds", holds);
    outcome.handled = Some(next);
    readers.iter().for_each(|r| r.abort());
    let rate = outcome.rate_per_sec;
    outcome.target(
        ">= 20,000 notifications/s stored and delivered, sustained",
        rate >= 20_000.0,
    );
    Ok(outcome)
}

fn batches_at(rate: u64) -> Send {
    Send {
        rate: rate as f64,
        batch: 100,
        connections: 8,
        priority: "normal",
    }
}

/// The least-squares slope of `(seconds, backlog)` samples: how many
/// entries per second the backlog grew by (negative: it shrank).
fn growth_per_sec(samples: &[(f64, f64)]) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_b = samples.iter().map(|(_, b)| b).sum::<f64>() / n;
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), (t, b)| {
        (
            num + (t - mean_t) * (b - mean_b),
            den + (t - mean_t).powi(2),
        )
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// The worker's backlog every 5 s for `seconds`, as (second, entries);
/// a reading the worker's /metrics did not answer is left out.
async fn sample_backlog(ctx: Ctx, seconds: u64) -> Vec<(f64, f64)> {
    let mut samples = Vec::new();
    for i in 1..=(seconds / 5).max(1) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if let Ok(backlog) = worker_backlog(&ctx).await {
            samples.push(((i * 5) as f64, backlog));
        }
    }
    samples
}

/// 1,000 users, `rate` notifications/s for `seconds`; the RSS of every
/// service sampled every 10 s must stay flat.
pub async fn soak(ctx: &Ctx, rate: u64, seconds: u64) -> anyhow::Result<Outcome> {
    const USERS: u64 = 1_000;
    let count = rate * seconds;
    let deliveries = Deliveries::new(count as usize);
    let readers = connect_users(ctx, &deliveries, 0..USERS, soak_user, false).await?;
    let pids = ctx.pids.clone();
    let sampler = tokio::spawn(async move {
        let mut samples: Vec<Vec<u64>> = vec![Vec::new(); pids.len()];
        for _ in 0..seconds / 10 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            for (i, (_, pid)) in pids.iter().enumerate() {
                samples[i].push(super::rss_kib(*pid).unwrap_or(0));
            }
        }
        samples
    });
    let from = deliveries.now_us();
    let send = Send {
        rate: rate as f64,
        batch: 1,
        connections: 32,
        priority: "normal",
    };
    let posted = post_paced(ctx, &deliveries, 0..count, send, soak_user, "soak").await?;
    let samples = sampler.await?;
    deliveries.settle(0..count, Duration::from_secs(10)).await;
    readers.iter().for_each(|r| r.abort());
    let mut outcome = deliveries.outcome("soak", 0..count, from, posted, seconds as f64);
    let (lost, duplicated) = (outcome.lost, outcome.duplicated);
    let mut flat = true;
    for ((service, _), rss) in ctx.pids.iter().zip(&samples) {
        // Compare the second minute with the last one: the first holds warm-up.
        let minute = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len().max(1) as f64;
        let early = minute(rss.get(6..12).unwrap_or(rss));
        let late = minute(&rss[rss.len().saturating_sub(6)..]);
        let growth = if early > 0.0 {
            (late - early) / early * 100.0
        } else {
            0.0
        };
        flat &= growth < 10.0;
        outcome.detail(&format!("{service}_rss_kib_every_10s"), rss);
        outcome.detail(
            &format!("{service}_rss_growth_pct"),
            (growth * 10.0).round() / 10.0,
        );
    }
    outcome.target(
        "RSS of each service flat (< 10% growth, 2nd minute to last)",
        flat,
    );
    outcome.target(
        "0 lost, 0 duplicated",
        lost == Some(0) && duplicated == Some(0),
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::growth_per_sec;

    fn every_5s(backlog: &[f64]) -> Vec<(f64, f64)> {
        backlog
            .iter()
            .enumerate()
            .map(|(i, b)| ((i as f64 + 1.0) * 5.0, *b))
            .collect()
    }

    #[test]
    fn a_noisy_but_flat_backlog_does_not_grow_and_a_creeping_one_does() {
        // Two real holds (2026-12-01): 20,000/s, flat; 21,500/s, creeping.
        let flat = every_5s(&[
            428.0, 1828.0, 828.0, 2140.0, 5628.0, 2048.0, 3952.0, 7440.0, 5196.0, 300.0, 400.0,
            1596.0,
        ]);
        let creeping = every_5s(&[
            7582.0, 8742.0, 7954.0, 15514.0, 13958.0, 18802.0, 16578.0, 18606.0, 18074.0, 19178.0,
            20182.0, 20474.0,
        ]);
        assert!(
            growth_per_sec(&flat) <= 20_000.0 * 0.005,
            "{}",
            growth_per_sec(&flat)
        );
        assert!(
            growth_per_sec(&creeping) > 21_500.0 * 0.005,
            "{}",
            growth_per_sec(&creeping)
        );
        assert!((growth_per_sec(&every_5s(&[0.0, 500.0, 1000.0])) - 100.0).abs() < 1e-9);
        assert_eq!(growth_per_sec(&every_5s(&[7.0])), 0.0);
    }
}
