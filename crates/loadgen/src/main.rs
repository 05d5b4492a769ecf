//! herald-bench: the benchmark scenarios against running Herald services,
//! driven from a separate process over real HTTP and WebSockets. Every
//! scenario is bounded in time and count and stops by itself; a progress
//! line shows where it is. Results go to `<out>/latest.json`, `latest.md`
//! and `latest.svg`. See bench/README.md.

mod client;
mod deliveries;
mod holder;
mod report;
mod scenarios;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use scenarios::{CpuProbe, Ctx, churn, connections, e2e, ingest, priority};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Connections,
    E2eLatency,
    IngestSingle,
    IngestBatch,
    E2eThroughput,
    PriorityIsolation,
    StateChurn,
    Soak,
}

/// What `make bench` runs, in this order (soak only with `--soak`): the
/// connection count first, on a gateway that has not grown yet.
const DEFAULT: [Scenario; 7] = [
    Scenario::Connections,
    Scenario::E2eLatency,
    Scenario::IngestSingle,
    Scenario::IngestBatch,
    Scenario::E2eThroughput,
    Scenario::PriorityIsolation,
    Scenario::StateChurn,
];

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
    /// stream-worker base URL: its /metrics tells the backlog.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    worker: String,
    #[arg(long, env = "HERALD_BENCH_API_KEY")]
    api_key: String,
    /// The gateway's JWT secret, to sign users' tokens.
    #[arg(long, env = "HERALD__AUTH__JWT_SECRET")]
    jwt_secret: String,
    /// Scenarios to run (default: all but soak).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Also run the soak (10 minutes by default).
    #[arg(long)]
    soak: bool,
    /// Seconds of ingest-single, ingest-batch, priority-isolation and state-churn
    /// (e2e-latency runs 1.5 times as long).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds per rate step of e2e-throughput, and of holding the best one.
    #[arg(long, default_value_t = 10)]
    step_seconds: u64,
    #[arg(long, default_value_t = 60)]
    sustain_seconds: u64,
    /// Seconds the idle connections are held.
    #[arg(long, default_value_t = 30)]
    hold_seconds: u64,
    /// Soak length and rate (default: half the sustained e2e-throughput
    /// rate of this run, else 1,000/s).
    #[arg(long, default_value_t = 600)]
    soak_seconds: u64,
    #[arg(long)]
    soak_rate: Option<u64>,
    /// Process ids, to report resident memory: the gateway's for
    /// `connections`, all three (name=pid) for `soak`.
    #[arg(long)]
    gateway_pid: Option<u32>,
    #[arg(long = "pid", value_parser = parse_pid)]
    pids: Vec<(String, u32)>,
    /// Another gateway for `connections`, as URL=pid (repeatable): one
    /// process can hold only as many sockets as its open-files limit.
    #[arg(long = "extra-gateway", value_parser = parse_pid)]
    extra_gateways: Vec<(String, u32)>,
    /// Run as a holder process of `connections` (internal; see holder.rs).
    #[arg(long, hide = true)]
    hold_child: bool,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

/// `NAME=PID` (`--pid`) or `URL=PID` (`--extra-gateway`: split at the last `=`).
fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.rsplit_once('=').ok_or("expected NAME=PID")?;
    Ok((name.to_owned(), pid.parse().map_err(|_| "pid is a number")?))
}

/// Whose CPU is reported: the services named with `--pid`, PostgreSQL,
/// Redis and the load generator itself.
fn processes(ctx: &Ctx) -> Vec<(String, CpuProbe)> {
    ctx.pids
        .iter()
        .map(|(name, pid)| (name.clone(), CpuProbe::Pid(*pid)))
        .chain([
            ("postgres".to_owned(), CpuProbe::Command("postgres")),
            ("redis-server".to_owned(), CpuProbe::Command("redis-server")),
            ("herald-bench".to_owned(), CpuProbe::Me),
        ])
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.hold_child {
        return holder::run(&args.gateway, &args.jwt_secret).await;
    }
    let mut scenarios = if args.scenario.is_empty() {
        DEFAULT.to_vec()
    } else {
        args.scenario.clone()
    };
    if args.soak && !scenarios.contains(&Scenario::Soak) {
        scenarios.push(Scenario::Soak);
    }
    let ctx = Ctx {
        ingest: args.ingest.clone(),
        gateway: args.gateway.clone(),
        worker: args.worker.clone(),
        api_key: args.api_key.clone(),
        jwt_secret: args.jwt_secret.clone(),
        seconds: args.seconds,
        gateway_pid: args.gateway_pid,
        extra_gateways: args.extra_gateways.clone(),
        pids: args.pids.clone(),
    };
    let machine = report::machine();
    eprintln!(
        "machine: {} cores, {} GiB, Linux {}",
        machine.cores, machine.memory_gib, machine.kernel
    );
    let mut outcomes = Vec::new();
    let mut sustained = None;
    for scenario in scenarios {
        scenarios::wait_drained(&ctx).await?;
        eprintln!();
        let cpu_before = report::CpuSample::now();
        let processes = processes(&ctx);
        let process_cpu_before: Vec<Option<f64>> =
            processes.iter().map(|(_, probe)| probe.seconds()).collect();
        let mut outcome = match scenario {
            Scenario::Connections => connections::held(&ctx, args.hold_seconds).await?,
            Scenario::E2eLatency => e2e::latency(&ctx).await?,
            Scenario::IngestSingle => ingest::single(&ctx).await?,
            Scenario::IngestBatch => ingest::batch(&ctx).await?,
            Scenario::E2eThroughput => {
                let outcome =
                    e2e::throughput(&ctx, args.step_seconds, args.sustain_seconds).await?;
                sustained = Some(outcome.rate_per_sec as u64);
                outcome
            }
            Scenario::PriorityIsolation => priority::isolation(&ctx).await?,
            Scenario::StateChurn => churn::state_churn(&ctx).await?,
            Scenario::Soak => {
                let rate = args
                    .soak_rate
                    .or(sustained.filter(|r| *r > 0).map(|r| r / 2))
                    .unwrap_or(1_000);
                e2e::soak(&ctx, rate, args.soak_seconds).await?
            }
        };
        outcome.cpu = cpu_before
            .zip(report::CpuSample::now())
            .map(|(before, after)| after.since(&before));
        // CPU each process spent per 1,000 notifications (connections for
        // `connections`): unlike rates and latencies, hardly moved by what
        // else the machine runs.
        let handled = outcome.handled.unwrap_or(outcome.count).max(1) as f64;
        let per_thousand: serde_json::Map<String, serde_json::Value> = processes
            .iter()
            .zip(process_cpu_before)
            .filter_map(|((name, probe), before)| {
                // A process that exited takes its time with it: never below 0.
                let used = (probe.seconds()? - before?).max(0.0);
                let ms = used * 1000.0 / handled * 1000.0;
                Some((name.clone(), ((ms * 10.0).round() / 10.0).into()))
            })
            .collect();
        outcome.detail("cpu_ms_per_1000", per_thousand);
        eprintln!(
            "{}: {:.0}/s, latency {:?}, cpu {:?}, targets {:?}",
            outcome.scenario, outcome.rate_per_sec, outcome.latency, outcome.cpu, outcome.targets
        );
        outcomes.push(outcome);
        // Keep what is done, should a later scenario fail.
        report::write(&args.out, &machine, &outcomes)?;
    }
    println!("{}", report::write(&args.out, &machine, &outcomes)?);
    Ok(())
}
