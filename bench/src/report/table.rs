//! The summary table of a [`Report`], for people: one line per row with
//! the same figures and ratios as the JSON, then the per-process part:
//! for each row, every measured process's CPU per call and RSS (`gen
//! µs/c`, `edge µs/c`, …, `edge+client µs/c`, `edge MiB`, …), then each
//! process's idle and peak RSS. These are the figures the targets are
//! stated in (edge + client ≤ 20 µs CPU per call; ≤ 10 MiB idle and ≤ 32
//! MiB under load per process).

use std::fmt::Write as _;

use crate::measure::usage::ProcessInfo;
use crate::report::model::Report;

const MIB: f64 = 1024.0;

impl Report {
    /// The summary table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let base = self.baseline.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{} on the {} deployment; settings {}",
            self.scenario, self.topology, self.settings
        );
        let _ = write!(
            out,
            "{:<8} {:>9} {:>6} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8} {:>8}",
            if self.scenario == "audit" { "audit" } else { "path" },
            "calls", "errors", "missed", "calls/s", "p50 µs", "p90 µs", "p99 µs",
            "p99.9 µs", "max µs", "CPU µs/c", "RSS MiB", "×tput", "×p50", "×CPU"
        );
        let _ = if self.ceiling.is_some() {
            writeln!(out, " {:>8} {:>8}", "÷ceil", "×ceilCPU")
        } else {
            writeln!(out)
        };
        for r in &self.rows {
            let l = &r.latency_us;
            let (t, p, c) = r
                .vs_baseline
                .as_ref()
                .map_or((1.0, 1.0, 1.0), |v| (v.throughput, v.p50, v.cpu_per_call));
            let _ = write!(
                out,
                "{:<8} {:>9} {:>6} {:>6} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>7.1} {:>8.3} {:>8.3} {:>8.3}",
                r.label, r.calls, r.errors, r.missed, r.calls_per_sec, l.p50, l.p90, l.p99,
                l.p999, l.max, r.cpu_us_per_call, r.rss_kib as f64 / 1024.0, t, p, c
            );
            let _ = match &r.vs_ceiling {
                Some(v) => writeln!(out, " {:>8.3} {:>8.3}", v.throughput, v.cpu_per_call),
                None => writeln!(out),
            };
        }
        for r in &self.rows {
            if let Some(lag) = &r.send_lag_us {
                let _ = writeln!(
                    out,
                    "{}: calls were sent late by p50 {} µs, p99 {} µs, max {} µs \
                     (counted in the latency above)",
                    r.label, lag.p50, lag.p99, lag.max
                );
            }
        }
        out.push_str(&per_process(self));
        out.push_str(&stage_table(self));
        if let Some(ceiling) = &self.ceiling {
            let _ = writeln!(
                out,
                "÷ceil is calls/s ÷ {ceiling}'s and ×ceilCPU CPU per call ÷ {ceiling}'s \
                 ({ceiling}: raw QUIC streams with Tether's TLS and transport)"
            );
        }
        let _ = writeln!(
            out,
            "ratios (×) are to {base}; CPU µs/c is every measured process's CPU per call, \
             RSS MiB the bench process's; peak RSS of the bench process {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        );
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// The latency breakdown: each process's mean µs per call in each stage
/// its probes timed, and its allocations per call; empty when no process
/// ran with probes (docs/performance.md, "Latency breakdown").
pub fn stage_table(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.rows {
        for p in &r.processes {
            if p.stages_us_per_call.is_empty() && p.heap_per_call.is_none() {
                continue;
            }
            let mut line = format!("{} {}:", r.label, p.name);
            if !p.stages_us_per_call.is_empty() {
                let total: f64 = p.stages_us_per_call.iter().map(|(_, us)| us).sum();
                for (stage, us) in &p.stages_us_per_call {
                    let _ = write!(line, " {stage} {us:.1}");
                }
                let _ = write!(
                    line,
                    " (sum {total:.1} µs/call, mean latency {:.1})",
                    r.latency_us.mean
                );
            }
            if let Some(h) = &p.heap_per_call {
                let _ = write!(
                    line,
                    " heap {:.1} allocs {:.0} B per call",
                    h.allocations, h.bytes
                );
            }
            let _ = writeln!(out, "{line}");
        }
    }
    if !out.is_empty() {
        out.insert_str(
            0,
            "stages, mean µs per call at each end (TETHER_STAGE_TIMING=1; open.* at the end that opens the \
             tunnel stream, accept.* at the one that reaches the service):\n",
        );
    }
    out
}

/// The per-process block, or nothing when no row has per-process figures.
pub fn per_process(report: &Report) -> String {
    let mut out = String::new();
    let Some(first) = report.rows.iter().find(|r| !r.processes.is_empty()) else {
        return out;
    };
    let names: Vec<&str> = first.processes.iter().map(|p| p.name.as_str()).collect();
    let both = report
        .rows
        .iter()
        .any(|r| r.edge_client_us_per_call.is_some());
    let _ = writeln!(
        out,
        "\nper process: CPU µs per call, and RSS MiB at the end of each measurement"
    );
    let label = if report.scenario == "audit" {
        "audit"
    } else {
        "path"
    };
    let mut header = format!("{label:<8}");
    for n in &names {
        let _ = write!(header, " {:>w$}", format!("{n} µs/c"), w = width(n));
    }
    if both {
        let _ = write!(header, " {:>16}", "edge+client µs/c");
    }
    for n in &names {
        let _ = write!(header, " {:>w$}", format!("{n} MiB"), w = width(n));
    }
    let _ = writeln!(out, "{header}");
    for r in &report.rows {
        let _ = write!(out, "{:<8}", r.label);
        let fig = |n: &str| r.processes.iter().find(|p| p.name == n);
        for n in &names {
            match fig(n) {
                Some(p) => write_num(&mut out, p.cpu_us_per_call, width(n)),
                None => write_dash(&mut out, width(n)),
            }
        }
        if both {
            match r.edge_client_us_per_call {
                Some(v) => write_num(&mut out, v, 16),
                None => write_dash(&mut out, 16),
            }
        }
        for n in &names {
            match fig(n) {
                Some(p) => write_num(&mut out, p.rss_kib as f64 / MIB, width(n)),
                None => write_dash(&mut out, width(n)),
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "idle RSS MiB (after start-up, before any call): {}",
        list(&report.processes, |p| p.idle_rss_kib, true)
    );
    let _ = writeln!(
        out,
        "peak RSS MiB (VmHWM, whole run): {}",
        list(&report.processes, |p| p.peak_rss_kib, false)
    );
    out
}

/// A column's width: its header (`<name> µs/c`) and at least 9.
fn width(name: &str) -> usize {
    (name.chars().count() + 5).max(9)
}

fn write_num(out: &mut String, v: f64, w: usize) {
    let _ = write!(out, " {v:>w$.1}");
}

fn write_dash(out: &mut String, w: usize) {
    let _ = write!(out, " {:>w$}", "-");
}

fn list(processes: &[ProcessInfo], kib: impl Fn(&ProcessInfo) -> u64, pid: bool) -> String {
    processes
        .iter()
        .map(|p| {
            let mib = kib(p) as f64 / MIB;
            if pid {
                format!("{} {mib:.1} (pid {})", p.name, p.pid)
            } else {
                format!("{} {mib:.1}", p.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
