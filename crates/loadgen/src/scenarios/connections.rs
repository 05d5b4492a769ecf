//! `connections`: N idle authenticated WebSockets held with heartbeats on,
//! then one notification delivered to each; the gateway's RSS per
//! connection and the time to deliver to all.

use std::time::{Duration, Instant};

use super::{Ctx, Send, connect_users, open_files_limit, post_paced, rss_kib};
use crate::deliveries::Deliveries;
use crate::report::Outcome;

const WANTED: u64 = 50_000;
/// File descriptors kept for everything that is not a user's socket.
const SPARE_FDS: u64 = 500;

fn user(k: u64) -> String {
    format!("conn-{k}")
}

pub async fn held(ctx: &Ctx, hold: u64) -> anyhow::Result<Outcome> {
    let pid = ctx.gateway_pid.ok_or_else(|| {
        anyhow::anyhow!("connections needs --gateway-pid to read the gateway's RSS")
    })?;
    // One socket per connection on each side: both processes' limits cap N.
    let own = open_files_limit(None).unwrap_or(1024);
    let gateway = open_files_limit(Some(pid)).unwrap_or(1024);
    let n = WANTED
        .min(own.saturating_sub(SPARE_FDS))
        .min(gateway.saturating_sub(SPARE_FDS));
    let mut outcome = Outcome::new("connections");
    outcome.detail("open_files_limit_bench", own);
    outcome.detail("open_files_limit_gateway", gateway);
    if n < WANTED {
        eprintln!(
            "connections: the open-files limit ({}) caps this run at {n} connections",
            own.min(gateway)
        );
    }
    let deliveries = Deliveries::new(n as usize);
    let before = rss_kib(pid).unwrap_or(0);
    let mut readers = Vec::new();
    let mut stages = Vec::new();
    let started = Instant::now();
    for quarter in 1..=4u64 {
        let range = (n * (quarter - 1) / 4)..(n * quarter / 4);
        readers.extend(connect_users(ctx, &deliveries, range.clone(), user, true).await?);
        let rss = rss_kib(pid).unwrap_or(0);
        stages.push(serde_json::json!({
            "connections": range.end,
            "gateway_rss_kib": rss,
            "kib_per_connection": (rss.saturating_sub(before) as f64 / range.end.max(1) as f64 * 100.0).round() / 100.0,
        }));
    }
    let connect_s = started.elapsed().as_secs_f64();
    let after_connect = rss_kib(pid).unwrap_or(0);
    eprintln!("connections: holding {n} for {hold} s (server pings every 20 s)");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after_hold = rss_kib(pid).unwrap_or(0);
    let open = readers.iter().filter(|r| !r.is_finished()).count() as u64;

    let began = Instant::now();
    let send = Send {
        rate: 1e9,
        batch: 1_000,
        connections: 4,
        priority: "normal",
    };
    let (accepted, errors) =
        post_paced(ctx, &deliveries, 0..n, send, user, "connections deliver").await?;
    deliveries.settle(0..n, Duration::from_secs(120)).await;
    let delivered = deliveries.received_in(0..n);
    let to_all = began.elapsed().as_secs_f64();
    let (lost, duplicated) = deliveries.lost_and_duplicated(0..n);
    let (latency, _) = deliveries.latency(0, deliveries.now_us());
    readers.iter().for_each(|r| r.abort());

    let per_connection = after_hold.saturating_sub(before) as f64 / n.max(1) as f64;
    outcome.rate_per_sec = n as f64 / connect_s;
    outcome.count = n;
    outcome.errors = errors + (n - open);
    outcome.latency = latency;
    outcome.lost = Some(lost);
    outcome.duplicated = Some(duplicated);
    outcome.seconds = connect_s + hold as f64 + to_all;
    outcome.detail("stages", stages);
    outcome.detail("gateway_rss_kib_before", before);
    outcome.detail("gateway_rss_kib_connected", after_connect);
    outcome.detail("gateway_rss_kib_after_hold", after_hold);
    outcome.detail(
        "kib_per_connection",
        (per_connection * 100.0).round() / 100.0,
    );
    outcome.detail("still_open_after_hold", open);
    outcome.detail("accepted", accepted);
    outcome.detail("delivered", delivered);
    outcome.detail(
        "seconds_to_deliver_to_all",
        (to_all * 1000.0).round() / 1000.0,
    );
    outcome.target("50,000 connections held", n >= WANTED && open == n);
    outcome.target("<= 12 KiB RSS per connection", per_connection <= 12.0);
    outcome.target(
        "delivered to all within 2 s",
        delivered == n && to_all <= 2.0,
    );
    Ok(outcome)
}
