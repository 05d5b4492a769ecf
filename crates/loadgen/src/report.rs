//! Results: one [`Outcome`] per scenario, written as JSON, a Markdown table
//! and an SVG chart of latency percentiles over time.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0);
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// The machine's CPU time counters (`/proc/stat`, all cores), in ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    busy: u64,
    steal: u64,
    total: u64,
}

impl CpuSample {
    /// `None` where `/proc/stat` cannot be read (not Linux).
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|t| t.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal [guest guest_nice,
        // which are already counted in user and nice].
        let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
        Some(Self {
            busy: [0, 1, 2, 5, 6].into_iter().map(field).sum(),
            steal: field(7),
            total: (0..8).map(field).sum(),
        })
    }

    /// How the machine's CPU time was spent since `earlier`.
    pub fn since(&self, earlier: &Self) -> CpuShare {
        // Counters only grow, but iowait may step back: saturate.
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        let pct =
            |now: u64, then: u64| (now.saturating_sub(then) as f64 / total * 1000.0).round() / 10.0;
        CpuShare {
            busy_pct: pct(self.busy, earlier.busy),
            steal_pct: pct(self.steal, earlier.steal),
        }
    }
}

/// The machine's CPU during a scenario. Steal is time the hypervisor gave
/// to other guests: figures taken under a high steal are not comparable.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuShare {
    pub busy_pct: f64,
    pub steal_pct: f64,
}

/// Microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// One second of a latency timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Point {
    pub fn of(second: f64, h: &Histogram<u64>) -> Self {
        let l = Latency::of(h);
        Self {
            second,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            p999_ms: l.p999_ms,
        }
    }
}

/// One of the benchmark targets (bench/README.md) and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub goal: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    /// The headline rate (accepted, delivered or held per second).
    pub rate_per_sec: f64,
    pub count: u64,
    /// Everything the scenario posted (or opened), headline or not: what
    /// the CPU figures per 1,000 are counted over. `None`: `count`.
    pub handled: Option<u64>,
    pub errors: u64,
    pub latency: Latency,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub seconds: f64,
    /// Scenario-specific figures (steps, RSS per connection...).
    pub details: Map<String, Value>,
    /// The machine's CPU while the scenario ran.
    pub cpu: Option<CpuShare>,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Point>,
}

impl Outcome {
    pub fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            rate_per_sec: 0.0,
            count: 0,
            handled: None,
            errors: 0,
            latency: Latency::default(),
            lost: None,
            duplicated: None,
            seconds: 0.0,
            details: Map::new(),
            cpu: None,
            targets: Vec::new(),
            timeline: Vec::new(),
        }
    }

    pub fn detail(&mut self, key: &str, value: impl Serialize) {
        self.details.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    pub fn target(&mut self, goal: impl Into<String>, met: bool) {
        self.targets.push(Target {
            goal: goal.into(),
            met,
        });
    }
}

pub fn write(dir: &Path, machine: &Machine, outcomes: &[Outcome]) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let report = json!({ "machine": machine, "date": when, "results": outcomes });
    std::fs::write(
        dir.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = markdown(machine, &when, outcomes);
    std::fs::write(dir.join("latest.md"), &table)?;
    chart(&dir.join("latest.svg"), outcomes)?;
    Ok(table)
}

fn markdown(machine: &Machine, when: &str, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "Machine: {} cores, {} GiB, Linux {}; {when}. Everything (services, PostgreSQL, Redis, load generator) on this one machine.\n\n\
         | scenario | rate/s | count | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | CPU busy % | CPU steal % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        machine.cores, machine.memory_gib, machine.kernel
    );
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for o in outcomes {
        let l = &o.latency;
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            o.scenario,
            o.rate_per_sec,
            o.count,
            o.errors,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            opt(o.lost),
            opt(o.duplicated),
            pct(o.cpu.map(|c| c.busy_pct)),
            pct(o.cpu.map(|c| c.steal_pct)),
        ));
    }
    out.push_str("\n| scenario | target | met |\n|---|---|---|\n");
    for o in outcomes {
        for t in &o.targets {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                o.scenario,
                t.goal,
                if t.met { "yes" } else { "**no**" }
            ));
        }
    }
    out.push('\n');
    for o in outcomes.iter().filter(|o| !o.details.is_empty()) {
        out.push_str(&format!(
            "- `{}`: {}\n",
            o.scenario,
            serde_json::to_string(&o.details).unwrap_or_default()
        ));
    }
    out
}

/// A line of the chart: its name, colour and value per point.
type Series = (&'static str, RGBColor, fn(&Point) -> f64);

/// One panel per scenario with a timeline: p50, p99 and p99.9 per second.
fn chart(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let with_timeline: Vec<&Outcome> = outcomes.iter().filter(|o| !o.timeline.is_empty()).collect();
    let panels = with_timeline.len().max(1);
    let root = SVGBackend::new(path, (900, 300 * panels as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    if with_timeline.is_empty() {
        return root.present().map_err(plot_error);
    }
    for (area, outcome) in root.split_evenly((panels, 1)).iter().zip(with_timeline) {
        let max_x = outcome
            .timeline
            .iter()
            .map(|p| p.second)
            .fold(1.0, f64::max);
        let max_y = outcome
            .timeline
            .iter()
            .map(|p| p.p999_ms)
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}: latency per second (ms)", outcome.scenario),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()
            .map_err(plot_error)?;
        let series: [Series; 3] = [
            ("p50", BLUE, |p| p.p50_ms),
            ("p99", RGBColor(230, 120, 0), |p| p.p99_ms),
            ("p99.9", RED, |p| p.p999_ms),
        ];
        for (name, color, value) in series {
            chart
                .draw_series(LineSeries::new(
                    outcome.timeline.iter().map(|p| (p.second, value(p))),
                    color,
                ))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}

fn plot_error(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("chart: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_splits_busy_idle_and_steal() {
        let before = CpuSample {
            busy: 990,
            steal: 10,
            total: 2_000,
        };
        // 1,000 ticks pass: 500 busy, 300 idle, 200 stolen.
        let after = CpuSample {
            busy: 1_490,
            steal: 210,
            total: 3_000,
        };
        let share = after.since(&before);
        assert_eq!(share.busy_pct, 50.0);
        assert_eq!(share.steal_pct, 20.0);
    }

    #[test]
    fn this_machine_has_cpu_counters() {
        let sample = CpuSample::now().expect("/proc/stat is readable on Linux");
        // A running machine has spent time since boot, some of it busy.
        assert!(sample.busy > 0, "{sample:?}");
        assert!(sample.total > sample.busy + sample.steal, "{sample:?}");
    }
}
