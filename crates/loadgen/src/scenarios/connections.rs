//! `connections`: N idle authenticated WebSockets held with heartbeats on,
//! then one notification delivered to each; the gateway's RSS per
//! connection and the time to deliver to all.

use std::ops::Range;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::{Ctx, Send, open_files_limit, post_paced, rss_kib};
use crate::deliveries::Deliveries;
use crate::report::Outcome;

const WANTED: u64 = 50_000;
/// File descriptors kept for everything that is not a user's socket.
const SPARE_FDS: u64 = 500;

pub fn user(k: u64) -> String {
    format!("conn-{k}")
}

/// A `herald-bench --hold-child` process holding the sockets of one gateway
/// (see [`crate::holder`]).
struct Holder {
    child: Child,
    commands: ChildStdin,
    /// Its answers (`connected …`, `open …`); frames go to the deliveries.
    answers: mpsc::UnboundedReceiver<String>,
    /// Its users: `start..end` of the run's numbering.
    users: Range<u64>,
}

impl Holder {
    fn spawn(
        ctx: &Ctx,
        gateway: &str,
        users: Range<u64>,
        deliveries: &Arc<Deliveries>,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--hold-child", "--gateway", gateway])
            .env("HERALD_BENCH_API_KEY", &ctx.api_key)
            .env("HERALD__AUTH__JWT_SECRET", &ctx.jwt_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a holder process")?;
        let commands = child.stdin.take().context("holder stdin")?;
        let output = child.stdout.take().context("holder stdout")?;
        let (answer, answers) = mpsc::unbounded_channel();
        let deliveries = deliveries.clone();
        let epoch = deliveries.epoch_unix_us();
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix("f ").map(parse_frame) {
                    Some(Some((k, t, at))) => deliveries.arrived_at(k, t, at.saturating_sub(epoch)),
                    Some(None) => eprintln!("holder: bad line {line:?}"),
                    None => {
                        let _ = answer.send(line);
                    }
                }
            }
        });
        Ok(Self {
            child,
            commands,
            answers,
            users,
        })
    }

    async fn send(&mut self, command: String) -> anyhow::Result<()> {
        self.commands.write_all(command.as_bytes()).await?;
        Ok(self.commands.flush().await?)
    }

    /// The next answer starting with `word`, as a number; a holder silent
    /// for 5 minutes fails the run.
    async fn answer(&mut self, word: &str) -> anyhow::Result<u64> {
        let line = tokio::time::timeout(Duration::from_secs(300), self.answers.recv())
            .await
            .context("a holder process did not answer within 5 minutes")?
            .context("a holder process ended early")?;
        line.strip_prefix(word)
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("holder answered {line:?}, expected {word}"))
    }

    /// Its users of step `quarter` (1-4): a quarter of its share each.
    fn quarter(&self, quarter: u64) -> Range<u64> {
        let Range { start, end } = self.users;
        let share = end - start;
        start + share * (quarter - 1) / 4..start + share * quarter / 4
    }

    /// Closes its input (it closes its sockets and exits) and waits for it.
    async fn stop(mut self) {
        drop(self.commands);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn parse_frame(rest: &str) -> Option<(u64, u64, u64)> {
    let mut numbers = rest.split_whitespace().map(str::parse::<u64>);
    Some((
        numbers.next()?.ok()?,
        numbers.next()?.ok()?,
        numbers.next()?.ok()?,
    ))
}

/// Resident memory of all the gateways, KiB.
fn gateways_rss(gateways: &[(String, u32)]) -> u64 {
    gateways
        .iter()
        .map(|(_, pid)| rss_kib(*pid).unwrap_or(0))
        .sum()
}

pub async fn held(ctx: &Ctx, hold: u64) -> anyhow::Result<Outcome> {
    let pid = ctx.gateway_pid.ok_or_else(|| {
        anyhow::anyhow!("connections needs --gateway-pid to read the gateway's RSS")
    })?;
    let gateways: Vec<(String, u32)> = std::iter::once((ctx.gateway.clone(), pid))
        .chain(ctx.extra_gateways.iter().cloned())
        .collect();
    // One socket per connection on each side: a holder (which inherits this
    // process's limit) and its gateway's limits cap what one pair holds.
    let own = open_files_limit(None).unwrap_or(1024);
    let gateway_limit = gateways
        .iter()
        .map(|(_, pid)| open_files_limit(Some(*pid)).unwrap_or(1024))
        .min()
        .unwrap_or(1024);
    let per_gateway = own.min(gateway_limit).saturating_sub(SPARE_FDS);
    let n = WANTED.min(per_gateway * gateways.len() as u64);
    let mut outcome = Outcome::new("connections");
    outcome.detail("open_files_limit_bench", own);
    outcome.detail("open_files_limit_gateway", gateway_limit);
    outcome.detail("gateways", gateways.len());
    if n < WANTED {
        eprintln!(
            "connections: the open-files limit ({}) and {} gateway(s) cap this run at {n} connections",
            own.min(gateway_limit),
            gateways.len()
        );
    }
    let deliveries = Deliveries::new(n as usize);
    let before = gateways_rss(&gateways);
    let count = gateways.len() as u64;
    let mut holders = gateways
        .iter()
        .enumerate()
        .map(|(i, (url, _))| {
            let i = i as u64;
            Holder::spawn(ctx, url, n * i / count..n * (i + 1) / count, &deliveries)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut stages = Vec::new();
    let started = Instant::now();
    for quarter in 1..=4u64 {
        for holder in &mut holders {
            let users = holder.quarter(quarter);
            holder
                .send(format!("connect {} {}\n", users.start, users.end))
                .await?;
        }
        let mut connected = 0;
        for holder in &mut holders {
            connected += holder.answer("connected").await?;
        }
        let rss = gateways_rss(&gateways);
        stages.push(serde_json::json!({
            "connections": connected,
            "gateway_rss_kib": rss,
            "kib_per_connection": (rss.saturating_sub(before) as f64 / connected.max(1) as f64 * 100.0).round() / 100.0,
        }));
    }
    let connect_s = started.elapsed().as_secs_f64();
    let after_connect = gateways_rss(&gateways);
    eprintln!(
        "connections: holding {n} on {} gateway(s) for {hold} s (server pings every 20 s)",
        gateways.len()
    );
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after_hold = gateways_rss(&gateways);
    let mut open = 0;
    for holder in &mut holders {
        holder.send("count\n".to_owned()).await?;
        open += holder.answer("open").await?;
    }

    let began = Instant::now();
    let began_us = deliveries.now_us();
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
    let counted = began.elapsed().as_secs_f64();
    // From the first POST to the last frame's arrival at its client, as the
    // holders stamped it: not when this process, polling every 50 ms and
    // reading the holders' reports, counted it.
    let to_all = deliveries.last_arrival_us().saturating_sub(began_us) as f64 / 1e6;
    let (lost, duplicated) = deliveries.lost_and_duplicated(0..n);
    let (latency, _) = deliveries.latency(0, deliveries.now_us());
    for holder in holders {
        holder.stop().await;
    }

    let per_connection = after_hold.saturating_sub(before) as f64 / n.max(1) as f64;
    outcome.rate_per_sec = n as f64 / connect_s;
    outcome.count = n;
    outcome.errors = errors + (n - open);
    outcome.latency = latency;
    outcome.lost = Some(lost);
    outcome.duplicated = Some(duplicated);
    outcome.seconds = connect_s + hold as f64 + counted;
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
    outcome.detail(
        "seconds_until_the_bench_counted_all",
        (counted * 1000.0).round() / 1000.0,
    );
    outcome.target("50,000 connections held", n >= WANTED && open == n);
    outcome.target("<= 12 KiB RSS per connection", per_connection <= 12.0);
    outcome.target(
        "delivered to all within 2 s",
        delivered == n && to_all <= 2.0,
    );
    Ok(outcome)
}
