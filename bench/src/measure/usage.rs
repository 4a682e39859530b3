//! What each measured process used during a measurement window: CPU time
//! (read from `/proc` when the window opens and when it closes) and
//! resident memory at its end; and, per report, each process's idle and
//! peak memory. This is what the per-process columns (`edge µs/call`,
//! `client RSS MiB`, …) are made of, so the cost of each component is
//! seen on its own rather than summed into one process's figure.

use std::time::Duration;

use serde::Serialize;

use crate::measure::probes::{self, Probes};
use crate::measure::procfs::Process;

/// One process's use over one measurement, or over several of the same
/// path merged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// The process's name in the report.
    pub name: String,
    /// CPU time (user + system) used inside the window(s).
    pub cpu: Duration,
    /// Resident set size at the end of the window, KiB (merged: the
    /// highest of the windows' ends).
    pub rss_kib: u64,
    /// What its probes counted inside the window(s): empty unless it ran
    /// with `--stage-timing` or is a `count-allocations` build.
    #[serde(skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
}

/// A measurement window open over some processes.
pub struct Window {
    start: Vec<(Process, Option<Duration>, Probes)>,
}

impl Window {
    /// Reads every process's CPU time now.
    pub fn open(processes: &[Process]) -> Self {
        Self {
            start: processes
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        p.cpu(),
                        p.admin.map(probes::scrape).unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// Reads every process's CPU time and RSS now: the use since
    /// [`Window::open`]. A process that vanished meanwhile reports zero
    /// (a dead component shows up as errors in the same row).
    pub fn close(self) -> Vec<ProcessUsage> {
        self.start
            .into_iter()
            .map(|(p, before, probes_before)| {
                let cpu = match (before, p.cpu()) {
                    (Some(b), Some(a)) => a.saturating_sub(b),
                    _ => Duration::ZERO,
                };
                let probes = match p.admin {
                    Some(admin) => probes_before.until(&probes::scrape(admin)),
                    None => Probes::default(),
                };
                ProcessUsage {
                    cpu,
                    rss_kib: p.rss_kib().unwrap_or(0),
                    name: p.name,
                    probes,
                }
            })
            .collect()
    }
}

/// Adds `other`'s CPU to `into`'s, process by process (by name), and keeps
/// the higher RSS; processes only `other` has are appended.
pub fn merge(into: &mut Vec<ProcessUsage>, other: &[ProcessUsage]) {
    for o in other {
        match into.iter_mut().find(|u| u.name == o.name) {
            Some(u) => {
                u.cpu += o.cpu;
                u.rss_kib = u.rss_kib.max(o.rss_kib);
                u.probes.add(&o.probes);
            }
            None => into.push(o.clone()),
        }
    }
}

/// CPU of every process together.
pub fn total_cpu(usage: &[ProcessUsage]) -> Duration {
    usage.iter().map(|u| u.cpu).sum()
}

/// One process's figures in a report row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessFigures {
    /// The process's name.
    pub name: String,
    /// Its CPU per successful call of the row, µs.
    pub cpu_us_per_call: f64,
    /// Its resident set size at the end of the row's measurement, KiB.
    pub rss_kib: u64,
    /// Mean µs per successful call of the row in each stage its probes
    /// timed (`--stage-timing`), in a call's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages_us_per_call: Vec<(String, f64)>,
    /// Heap allocations (and reallocations) per successful call, with
    /// their bytes, in a `count-allocations` build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_per_call: Option<HeapPerCall>,
}

/// One process's heap use per call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeapPerCall {
    /// `alloc` + `realloc` calls per call.
    pub allocations: f64,
    /// Bytes allocated per call.
    pub bytes: f64,
}

impl ProcessFigures {
    /// `usage` over `calls` successful calls.
    pub fn of(usage: &ProcessUsage, calls: u64) -> Self {
        Self {
            name: usage.name.clone(),
            cpu_us_per_call: usage.cpu.as_secs_f64() * 1e6 / calls.max(1) as f64,
            rss_kib: usage.rss_kib,
            stages_us_per_call: probes::in_call_order(&usage.probes)
                .into_iter()
                .map(|(stage, t)| (stage, t.seconds * 1e6 / calls.max(1) as f64))
                .collect(),
            heap_per_call: usage.probes.heap.map(|h| HeapPerCall {
                allocations: (h.allocations + h.reallocations) as f64 / calls.max(1) as f64,
                bytes: h.bytes as f64 / calls.max(1) as f64,
            }),
        }
    }
}

/// The processes named `edge` and `client` together, µs per call: the
/// figure the tunnel's CPU target is stated in (edge + client ≤ 20 µs per
/// call). `None` unless both were measured.
pub fn edge_and_client(figures: &[ProcessFigures]) -> Option<f64> {
    let of = |name: &str| {
        figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.cpu_us_per_call)
    };
    Some(of("edge")? + of("client")?)
}

/// One measured process over the whole run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessInfo {
    /// Its name in the rows.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Resident set size after start-up, before any call, KiB (the idle
    /// target is stated for this).
    pub idle_rss_kib: u64,
    /// Peak resident set size over the whole run (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

/// Each process's idle RSS, read now (before any call).
pub fn idle(processes: &[Process]) -> Vec<ProcessInfo> {
    processes
        .iter()
        .map(|p| ProcessInfo {
            name: p.name.clone(),
            pid: p.pid,
            idle_rss_kib: p.rss_kib().unwrap_or(0),
            peak_rss_kib: 0,
        })
        .collect()
}

/// `infos` with each process's peak RSS read now (at the end of the run,
/// before the processes stop).
pub fn with_peaks(mut infos: Vec<ProcessInfo>, processes: &[Process]) -> Vec<ProcessInfo> {
    for info in &mut infos {
        if let Some(p) = processes.iter().find(|p| p.pid == info.pid) {
            info.peak_rss_kib = p.peak_rss_kib().unwrap_or(0);
        }
    }
    infos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(name: &str, cpu_ms: u64, rss: u64) -> ProcessUsage {
        ProcessUsage {
            name: name.into(),
            cpu: Duration::from_millis(cpu_ms),
            rss_kib: rss,
            probes: Probes::default(),
        }
    }

    #[test]
    fn rounds_merge_by_process() {
        let mut total = vec![usage("edge", 10, 100)];
        merge(&mut total, &[usage("edge", 5, 80), usage("client", 3, 50)]);
        assert_eq!(total, [usage("edge", 15, 100), usage("client", 3, 50)]);
        assert_eq!(total_cpu(&total), Duration::from_millis(18));
    }

    #[test]
    fn edge_and_client_need_both() {
        let f = |u: &ProcessUsage| ProcessFigures::of(u, 1000);
        let both = [f(&usage("edge", 10, 0)), f(&usage("client", 5, 0))];
        let sum = edge_and_client(&both).unwrap_or(0.0);
        assert!((sum - 15.0).abs() < 1e-9, "{sum}");
        assert_eq!(edge_and_client(&both[..1]), None);
    }

    #[test]
    fn a_window_over_this_process_sees_its_cpu() {
        let me = [Process::current("gen")];
        let window = Window::open(&me);
        // Burn a little CPU so at least one tick passes.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let used = window.close();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].name, "gen");
        assert!(used[0].rss_kib > 0);
        let info = with_peaks(idle(&me), &me);
        assert!(info[0].peak_rss_kib >= info[0].idle_rss_kib);
    }
}
