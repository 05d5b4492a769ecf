//! `priority-isolation`: a backlog of 100,000 `low` notifications, then
//! `high` ones at 100/s; the `high` latency while the backlog drains.

use std::time::{Duration, Instant};

use super::{Ctx, Send, connect_users, post_paced, worker_backlog};
use crate::deliveries::Deliveries;
use crate::report::Outcome;

const BACKLOG: u64 = 100_000;
const HIGH_RATE: u64 = 100;

fn low_user(k: u64) -> String {
    format!("low-{}", k % 10_000)
}

fn high_user(k: u64) -> String {
    format!("high-{}", k % 100)
}

pub async fn isolation(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let high = HIGH_RATE * ctx.seconds;
    let deliveries = Deliveries::new((BACKLOG + high) as usize);
    // Only the high users listen; the low ones are stored and published to nobody.
    let readers = connect_users(ctx, &deliveries, BACKLOG..BACKLOG + 100, high_user, false).await?;
    let flood = Send {
        rate: 1e9,
        batch: 1_000,
        connections: 4,
        priority: "low",
    };
    let (low_accepted, low_errors) = post_paced(
        ctx,
        &deliveries,
        0..BACKLOG,
        flood,
        low_user,
        "priority-isolation low backlog",
    )
    .await?;
    // The worker's gauges lag by up to a second.
    let mut backlog_at_start = 0.0;
    for _ in 0..20 {
        backlog_at_start = worker_backlog(ctx).await?;
        if backlog_at_start > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let began = Instant::now();
    let from = deliveries.now_us();
    let send = Send {
        rate: HIGH_RATE as f64,
        batch: 1,
        connections: 4,
        priority: "high",
    };
    let watcher = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if worker_backlog(&ctx).await.unwrap_or(1.0) == 0.0 {
                    return Some(began.elapsed().as_secs_f64());
                }
            }
        }
    });
    let range = BACKLOG..BACKLOG + high;
    let (accepted, errors) = post_paced(
        ctx,
        &deliveries,
        range.clone(),
        send,
        high_user,
        "priority-isolation high",
    )
    .await?;
    let backlog_at_end = worker_backlog(ctx).await?;
    deliveries
        .settle(range.clone(), Duration::from_secs(10))
        .await;
    let drained_after = if watcher.is_finished() {
        watcher.await.ok().flatten()
    } else {
        watcher.abort();
        None
    };
    readers.iter().for_each(|r| r.abort());
    let posted = (accepted, errors + low_errors);
    let mut outcome = deliveries.outcome(
        "priority-isolation",
        range,
        from,
        posted,
        ctx.seconds as f64,
    );
    let latency = outcome.latency;
    outcome.handled = Some(low_accepted + accepted);
    outcome.detail("low_accepted", low_accepted);
    outcome.detail("backlog_when_high_started", backlog_at_start);
    outcome.detail("backlog_when_high_ended", backlog_at_end);
    outcome.detail("low_backlog_drained_after_s", drained_after);
    outcome.target(
        "high p99 <= 50 ms while the low backlog drains",
        latency.p99_ms <= 50.0 && backlog_at_start > 0.0,
    );
    Ok(outcome)
}
