//! Turns measurements into figures: the JSON document machines read and,
//! drawn from the same [`Report`] by [`table`](crate::report::table), the
//! summary table people read, so the two never disagree.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::measurement::{self, Measurement};
use crate::measure::timeline::Timeline;
use crate::measure::usage::{self, ProcessFigures, ProcessInfo};

/// Latency percentiles of successful calls, µs.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest call.
    pub max: u64,
    /// Mean, for comparison with tools that only give averages.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `hist` (all zero when it is empty).
    pub fn of(hist: &Histogram<u64>) -> Self {
        Self {
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        }
    }
}

/// A row's figures divided by the baseline row's.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// Calls per second ÷ baseline's.
    pub throughput: f64,
    /// Median latency ÷ baseline's.
    pub p50: f64,
    /// p99 latency ÷ baseline's.
    pub p99: f64,
    /// CPU per call ÷ baseline's.
    pub cpu_per_call: f64,
}

impl Ratios {
    /// `row`'s figures ÷ `base`'s (0 where `base`'s is 0).
    pub fn of(row: &Row, base: &Row) -> Self {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            throughput: div(row.calls_per_sec, base.calls_per_sec),
            p50: div(row.latency_us.p50 as f64, base.latency_us.p50 as f64),
            p99: div(row.latency_us.p99 as f64, base.latency_us.p99 as f64),
            cpu_per_call: div(row.cpu_us_per_call, base.cpu_us_per_call),
        }
    }
}

/// One row: a path (or an audit mode), all rounds merged.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The path or mode.
    pub label: String,
    /// Calls that succeeded.
    pub calls: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Open loop: calls due but not started (in-flight cap reached).
    pub missed: u64,
    /// Open loop: calls scheduled (started or missed).
    pub scheduled: u64,
    /// Seconds measured, all rounds.
    pub seconds: f64,
    /// Successful calls per second.
    pub calls_per_sec: f64,
    /// Latency, µs.
    pub latency_us: Latency,
    /// Open loop only: how late calls were sent after falling due, µs
    /// (already included in `latency_us`).
    pub send_lag_us: Option<Latency>,
    /// CPU of every measured process together (load generator, edge,
    /// client, upstream; in process, the one process) per successful
    /// call, µs.
    pub cpu_us_per_call: f64,
    /// Resident set size of the bench process at the end of this row's
    /// last measurement, KiB.
    pub rss_kib: u64,
    /// Each measured process's CPU per call and RSS, load generator first.
    pub processes: Vec<ProcessFigures>,
    /// The edge's and the client's CPU per call together, µs, when both
    /// ran as processes of their own (the tunnel's CPU target is stated
    /// for this sum).
    pub edge_client_us_per_call: Option<f64>,
    /// This row ÷ the baseline row (the first; `direct` when measured).
    pub vs_baseline: Option<Ratios>,
    /// This row ÷ the ceiling row (raw QUIC streams), when one was
    /// measured: how much of the physical limit the path reaches.
    pub vs_ceiling: Option<Ratios>,
    /// Successful calls per sampling interval, rounds back to back: the
    /// throughput-over-time chart, and for machines to redraw it.
    pub timeline: Timeline,
    /// `(quantile, µs)` points across the whole latency distribution, for
    /// the percentile chart ([`measurement::spectrum`]). Not in the JSON:
    /// the percentiles above carry its figures, and it would double the
    /// document's length.
    #[serde(skip)]
    pub spectrum: Vec<(f64, u64)>,
}

impl Row {
    /// The row for `m`, labelled `label`.
    pub fn new(label: impl Into<String>, m: &Measurement) -> Self {
        let secs = m.elapsed.as_secs_f64();
        Self {
            label: label.into(),
            calls: m.calls,
            errors: m.errors,
            missed: m.missed,
            scheduled: m.scheduled,
            seconds: secs,
            calls_per_sec: if secs > 0.0 {
                m.calls as f64 / secs
            } else {
                0.0
            },
            latency_us: Latency::of(&m.hist),
            send_lag_us: (!m.send_lag.is_empty()).then(|| Latency::of(&m.send_lag)),
            cpu_us_per_call: m.cpu.as_secs_f64() * 1e6 / m.calls.max(1) as f64,
            rss_kib: m.rss_kib,
            processes: per_process(m),
            edge_client_us_per_call: usage::edge_and_client(&per_process(m)),
            vs_baseline: None,
            vs_ceiling: None,
            timeline: m.timeline.clone(),
            spectrum: measurement::spectrum(&m.hist),
        }
    }
}

fn per_process(m: &Measurement) -> Vec<ProcessFigures> {
    m.processes
        .iter()
        .map(|u| ProcessFigures::of(u, m.calls))
        .collect()
}

/// A whole run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `unary`, `rate` or `audit`.
    pub scenario: String,
    /// Where the components ran: `processes` (each its own process),
    /// `in-process` or `target` (an edge bench did not start).
    pub topology: String,
    /// The measured processes: pid, idle RSS (after start-up, before any
    /// call) and peak RSS over the run.
    pub processes: Vec<ProcessInfo>,
    /// The scenario's settings as given.
    pub settings: serde_json::Value,
    /// The label ratios are taken against.
    pub baseline: Option<String>,
    /// The label of the ceiling row, when one was measured.
    pub ceiling: Option<String>,
    /// One row per path (or mode), baseline first.
    pub rows: Vec<Row>,
    /// Peak resident set size of the bench process (`VmHWM`), KiB: the
    /// load generator's, or everything's in process (see `processes` for
    /// the others).
    pub peak_rss_kib: u64,
    /// Targets the run could not reach (missed calls, errors), in words.
    pub warnings: Vec<String>,
}

impl Report {
    /// A report of `rows`, with ratios to the first row.
    pub fn new(scenario: &str, settings: serde_json::Value, mut rows: Vec<Row>) -> Self {
        let baseline = rows.first().cloned();
        if let Some(base) = &baseline {
            for row in &mut rows {
                row.vs_baseline = Some(Ratios::of(row, base));
            }
        }
        let mut warnings = Vec::new();
        for row in &rows {
            if row.errors > 0 {
                warnings.push(format!("{}: {} calls failed", row.label, row.errors));
            }
            if row.missed > 0 {
                warnings.push(format!(
                    "{}: {} of {} scheduled calls missed (in-flight cap reached): \
                     the target rate was not sustained",
                    row.label, row.missed, row.scheduled
                ));
            }
            if row.calls == 0 {
                warnings.push(format!("{}: no call completed", row.label));
            }
        }
        Self {
            scenario: scenario.to_string(),
            topology: "in-process".to_string(),
            processes: Vec::new(),
            settings,
            baseline: baseline.map(|b| b.label),
            ceiling: None,
            rows,
            peak_rss_kib: measurement::peak_rss_kib(),
            warnings,
        }
    }

    /// Names the deployment the run measured and its processes.
    pub fn with_deployment(mut self, topology: &str, processes: Vec<ProcessInfo>) -> Self {
        self.topology = topology.to_string();
        self.processes = processes;
        self
    }

    /// Adds every row's ratios to the row labelled `label` (the ceiling),
    /// when there is one.
    pub fn with_ceiling(mut self, label: &str) -> Self {
        if let Some(ceiling) = self.rows.iter().find(|r| r.label == label).cloned() {
            for row in &mut self.rows {
                row.vs_ceiling = Some(Ratios::of(row, &ceiling));
            }
            self.ceiling = Some(ceiling.label);
        }
        self
    }

    /// True when every call of every row succeeded and none was missed.
    pub fn clean(&self) -> bool {
        self.warnings.is_empty()
    }

    /// The JSON document, for machines.
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}
