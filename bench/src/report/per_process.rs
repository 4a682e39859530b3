//! The per-process part of the summary table: for each row, every measured
//! process's CPU per call and RSS (`gen µs/c`, `edge µs/c`, …, `edge+client
//! µs/c`, `edge MiB`, …), then each process's idle and peak RSS. These are
//! the figures the targets are stated in (edge + client ≤ 20 µs CPU per
//! call; ≤ 10 MiB idle and ≤ 32 MiB under load per process).

use std::fmt::Write as _;

use crate::measure::usage::ProcessInfo;
use crate::report::model::Report;

const MIB: f64 = 1024.0;

/// The block, or nothing when no row has per-process figures.
pub fn table(report: &Report) -> String {
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
