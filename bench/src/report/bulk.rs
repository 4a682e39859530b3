//! The `bulk` scenario's figures: one row per direction and path, with
//! throughput (MiB/s, Gbit/s), time to first byte, CPU per MiB moved and
//! RSS, each process's share, and ratios to the baseline (`direct`) and to
//! the `ceiling` of the same direction; as a table for people and a JSON
//! document for machines, both from the same [`BulkReport`].
//!
//! CPU is per MiB (2^20 bytes) moved, in µs: the unit the throughput is
//! in, so `CPU µs/MiB × MiB/s ÷ 10^6` is the cores the row kept busy.

use std::fmt::Write as _;

use serde::Serialize;

use crate::byte_size::MIB;
use crate::load::bulk::transfer::Direction;
use crate::measure::measurement;
use crate::measure::transfers::BulkMeasurement;
use crate::measure::usage::{ProcessInfo, ProcessUsage};
use crate::paths::Path;
use crate::report::model::Latency;

/// A row's figures divided by another row's of the same direction.
#[derive(Clone, Debug, Serialize)]
pub struct BulkRatios {
    /// MiB/s ÷ the other's.
    pub throughput: f64,
    /// Median time to first byte ÷ the other's.
    pub ttfb_p50: f64,
    /// CPU per MiB ÷ the other's.
    pub cpu_per_mib: f64,
}

impl BulkRatios {
    /// `row`'s figures ÷ `base`'s (0 where `base`'s is 0).
    pub fn of(row: &BulkRow, base: &BulkRow) -> Self {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            throughput: div(row.mib_per_sec, base.mib_per_sec),
            ttfb_p50: div(row.ttfb_us.p50 as f64, base.ttfb_us.p50 as f64),
            cpu_per_mib: div(row.cpu_us_per_mib, base.cpu_us_per_mib),
        }
    }
}

/// One measured process's share of a row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BulkProcess {
    /// The process's name (`gen`, `edge`, `client`, `upstream`; `bench`
    /// in process).
    pub name: String,
    /// Its CPU per MiB moved, µs.
    pub cpu_us_per_mib: f64,
    /// Its resident set size at the end of the row's last measurement, KiB.
    pub rss_kib: u64,
}

/// One direction along one path, all rounds merged.
#[derive(Clone, Debug, Serialize)]
pub struct BulkRow {
    /// The path.
    pub path: Path,
    /// Which way the bytes went.
    pub direction: Direction,
    /// Transfers completed (streams × rounds).
    pub transfers: u64,
    /// Payload bytes moved and verified, all rounds.
    pub bytes: u64,
    /// Seconds measured, all rounds.
    pub seconds: f64,
    /// Payload MiB per second.
    pub mib_per_sec: f64,
    /// Payload gigabits (10^9 bits) per second, for comparison with link
    /// speeds.
    pub gbit_per_sec: f64,
    /// Time to first byte of each transfer, µs (see
    /// [`Transfer::ttfb`](crate::load::bulk::transfer::Transfer::ttfb)).
    pub ttfb_us: Latency,
    /// CPU of every measured process together per MiB moved, µs.
    pub cpu_us_per_mib: f64,
    /// CPU seconds of every measured process per second of the row: the
    /// cores it kept busy.
    pub cpu_cores: f64,
    /// Resident set size of the bench process at the end of the row's
    /// last measurement, KiB.
    pub rss_kib: u64,
    /// Each measured process's CPU per MiB and RSS, load generator first.
    pub processes: Vec<BulkProcess>,
    /// The edge's and the client's CPU per MiB together, µs, when both ran
    /// as processes of their own.
    pub edge_client_us_per_mib: Option<f64>,
    /// This row ÷ the baseline row of its direction (the first path;
    /// `direct` when measured).
    pub vs_baseline: Option<BulkRatios>,
    /// This row ÷ the `ceiling` row of its direction, when measured: how
    /// much of what raw QUIC streams carry the path reaches.
    pub vs_ceiling: Option<BulkRatios>,
}

impl BulkRow {
    /// The row for `m`.
    pub fn new(path: Path, direction: Direction, m: &BulkMeasurement) -> Self {
        let secs = m.elapsed.as_secs_f64();
        let mib = m.bytes as f64 / MIB as f64;
        let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
        let per_mib = |u: &ProcessUsage| {
            if mib > 0.0 {
                u.cpu.as_secs_f64() * 1e6 / mib
            } else {
                0.0
            }
        };
        let processes: Vec<BulkProcess> = m
            .processes
            .iter()
            .map(|u| BulkProcess {
                name: u.name.clone(),
                cpu_us_per_mib: per_mib(u),
                rss_kib: u.rss_kib,
            })
            .collect();
        let of = |name: &str| {
            processes
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.cpu_us_per_mib)
        };
        let edge_client = of("edge").zip(of("client")).map(|(e, c)| e + c);
        Self {
            path,
            direction,
            transfers: m.transfers,
            bytes: m.bytes,
            seconds: secs,
            mib_per_sec: per_sec(mib),
            gbit_per_sec: per_sec(m.bytes as f64 * 8.0 / 1e9),
            ttfb_us: Latency::of(&m.ttfb),
            cpu_us_per_mib: if mib > 0.0 {
                m.cpu.as_secs_f64() * 1e6 / mib
            } else {
                0.0
            },
            cpu_cores: per_sec(m.cpu.as_secs_f64()),
            rss_kib: m.rss_kib,
            processes,
            edge_client_us_per_mib: edge_client,
            vs_baseline: None,
            vs_ceiling: None,
        }
    }
}

/// A whole `bulk` run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct BulkReport {
    /// Always `bulk`.
    pub scenario: String,
    /// Where the components ran: `processes`, `in-process` or `target`.
    pub topology: String,
    /// The measured processes: pid, idle RSS (after start-up, before any
    /// transfer) and peak RSS over the run.
    pub processes: Vec<ProcessInfo>,
    /// The scenario's settings as given.
    pub settings: serde_json::Value,
    /// The path ratios are taken against (per direction).
    pub baseline: Option<Path>,
    /// One row per direction and path: directions in order, the baseline
    /// path first within each.
    pub rows: Vec<BulkRow>,
    /// Peak resident set size of the bench process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl BulkReport {
    /// A report of `rows`, with each row's ratios to the first row of its
    /// direction and to the `ceiling` row of its direction.
    pub fn new(settings: serde_json::Value, mut rows: Vec<BulkRow>) -> Self {
        let baseline = rows.first().map(|r| r.path);
        let snapshot = rows.clone();
        let find = |d: Direction, p: Option<Path>| {
            snapshot
                .iter()
                .find(|r| r.direction == d && Some(r.path) == p)
        };
        for row in &mut rows {
            row.vs_baseline = find(row.direction, baseline).map(|b| BulkRatios::of(row, b));
            row.vs_ceiling =
                find(row.direction, Some(Path::Ceiling)).map(|c| BulkRatios::of(row, c));
        }
        Self {
            scenario: "bulk".to_string(),
            topology: "in-process".to_string(),
            processes: Vec::new(),
            settings,
            baseline,
            rows,
            peak_rss_kib: measurement::peak_rss_kib(),
        }
    }

    /// Names the deployment the run measured and its processes.
    pub fn with_deployment(mut self, topology: &str, processes: Vec<ProcessInfo>) -> Self {
        self.topology = topology.to_string();
        self.processes = processes;
        self
    }

    /// True when a ceiling row was measured.
    fn has_ceiling(&self) -> bool {
        self.rows.iter().any(|r| r.vs_ceiling.is_some())
    }

    /// The summary table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bulk on the {} deployment; settings {}",
            self.topology, self.settings
        );
        let _ = write!(
            out,
            "{:<8} {:<8} {:>9} {:>7} {:>8} {:>7} {:>10} {:>10} {:>10} {:>6} {:>7} {:>7} {:>7}",
            "dir",
            "path",
            "MiB",
            "s",
            "MiB/s",
            "Gbit/s",
            "TTFB50 µs",
            "TTFBmax µs",
            "CPU µs/MiB",
            "cores",
            "RSS MiB",
            "×tput",
            "×CPU"
        );
        let ceiling = self.has_ceiling();
        let _ = if ceiling {
            writeln!(out, " {:>7} {:>8}", "÷ceil", "×ceilCPU")
        } else {
            writeln!(out)
        };
        for r in &self.rows {
            let (t, c) = r
                .vs_baseline
                .as_ref()
                .map_or((1.0, 1.0), |v| (v.throughput, v.cpu_per_mib));
            let _ = write!(
                out,
                "{:<8} {:<8} {:>9.1} {:>7.2} {:>8.1} {:>7.2} {:>10} {:>10} {:>10.1} {:>6.2} {:>7.1} {:>7.3} {:>7.3}",
                r.direction.name(),
                r.path.name(),
                r.bytes as f64 / MIB as f64,
                r.seconds,
                r.mib_per_sec,
                r.gbit_per_sec,
                r.ttfb_us.p50,
                r.ttfb_us.max,
                r.cpu_us_per_mib,
                r.cpu_cores,
                r.rss_kib as f64 / 1024.0,
                t,
                c
            );
            let _ = match &r.vs_ceiling {
                Some(v) => writeln!(out, " {:>7.3} {:>8.3}", v.throughput, v.cpu_per_mib),
                None => writeln!(out),
            };
        }
        out.push_str(&self.per_process());
        if ceiling {
            let _ = writeln!(
                out,
                "÷ceil is MiB/s ÷ the ceiling's and ×ceilCPU CPU per MiB ÷ the ceiling's, \
                 same direction (ceiling: raw QUIC streams with Tether's TLS and transport)"
            );
        }
        let base = self.baseline.map_or("-", Path::name);
        let _ = writeln!(
            out,
            "ratios (×) are to {base} of the same direction; CPU µs/MiB is every measured \
             process's CPU per MiB moved, cores the CPU seconds they used per second; \
             TTFB is the time to first byte of each transfer; RSS MiB the bench process's; \
             peak RSS of the bench process {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        );
        out
    }

    /// Each measured process's CPU per MiB and RSS per row, then each
    /// process's idle and peak RSS; nothing when no row has them.
    fn per_process(&self) -> String {
        let mut out = String::new();
        let Some(first) = self.rows.iter().find(|r| !r.processes.is_empty()) else {
            return out;
        };
        let names: Vec<&str> = first.processes.iter().map(|p| p.name.as_str()).collect();
        let both = self.rows.iter().any(|r| r.edge_client_us_per_mib.is_some());
        let width = |n: &str| (n.chars().count() + 7).max(10);
        let _ = writeln!(
            out,
            "\nper process: CPU µs per MiB moved, and RSS MiB at the end of each measurement"
        );
        let _ = write!(out, "{:<8} {:<8}", "dir", "path");
        for n in &names {
            let _ = write!(out, " {:>w$}", format!("{n} µs/MiB"), w = width(n));
        }
        if both {
            let _ = write!(out, " {:>18}", "edge+client µs/MiB");
        }
        for n in &names {
            let _ = write!(out, " {:>w$}", format!("{n} MiB"), w = width(n));
        }
        let _ = writeln!(out);
        for r in &self.rows {
            let _ = write!(out, "{:<8} {:<8}", r.direction.name(), r.path.name());
            let fig = |n: &str| r.processes.iter().find(|p| p.name == n);
            for n in &names {
                let cell = fig(n).map_or("-".to_string(), |p| format!("{:.1}", p.cpu_us_per_mib));
                let _ = write!(out, " {cell:>w$}", w = width(n));
            }
            if both {
                let cell = r
                    .edge_client_us_per_mib
                    .map_or("-".to_string(), |v| format!("{v:.1}"));
                let _ = write!(out, " {cell:>18}");
            }
            for n in &names {
                let cell = fig(n).map_or("-".to_string(), |p| {
                    format!("{:.1}", p.rss_kib as f64 / 1024.0)
                });
                let _ = write!(out, " {cell:>w$}", w = width(n));
            }
            let _ = writeln!(out);
        }
        let list = |kib: fn(&ProcessInfo) -> u64, pid: bool| {
            self.processes
                .iter()
                .map(|p| {
                    let mib = kib(p) as f64 / 1024.0;
                    if pid {
                        format!("{} {mib:.1} (pid {})", p.name, p.pid)
                    } else {
                        format!("{} {mib:.1}", p.name)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "idle RSS MiB (after start-up, before any transfer): {}",
            list(|p| p.idle_rss_kib, true)
        );
        let _ = writeln!(
            out,
            "peak RSS MiB (VmHWM, whole run): {}",
            list(|p| p.peak_rss_kib, false)
        );
        out
    }

    /// The JSON document, for machines.
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measured(mib: u64, secs: u64, edge_cpu_ms: u64) -> BulkMeasurement {
        let mut m = BulkMeasurement::new();
        m.bytes = mib * MIB;
        m.transfers = 1;
        m.elapsed = Duration::from_secs(secs);
        m.cpu = Duration::from_millis(2 * edge_cpu_ms);
        measurement::record(&mut m.ttfb, Duration::from_micros(500));
        m.processes = ["edge", "client"]
            .into_iter()
            .map(|name| ProcessUsage {
                name: name.into(),
                cpu: Duration::from_millis(edge_cpu_ms),
                rss_kib: 4096,
                probes: Default::default(),
            })
            .collect();
        m
    }

    #[test]
    fn ratios_are_within_a_direction() {
        let rows = vec![
            BulkRow::new(Path::Direct, Direction::Upload, &measured(1024, 1, 500)),
            BulkRow::new(Path::Tunnel, Direction::Upload, &measured(1024, 2, 1000)),
            BulkRow::new(Path::Ceiling, Direction::Upload, &measured(1024, 1, 250)),
            BulkRow::new(Path::Direct, Direction::Download, &measured(512, 1, 500)),
            BulkRow::new(Path::Tunnel, Direction::Download, &measured(512, 1, 500)),
        ];
        let report = BulkReport::new(serde_json::json!({}), rows);
        assert_eq!(report.baseline, Some(Path::Direct));
        let tunnel_up = &report.rows[1];
        assert!((tunnel_up.mib_per_sec - 512.0).abs() < 1e-9);
        assert!((tunnel_up.cpu_us_per_mib - 2e6 / 1024.0).abs() < 1e-6);
        let base = tunnel_up.vs_baseline.as_ref().map(|v| v.throughput);
        assert_eq!(base, Some(0.5));
        let ceil = tunnel_up.vs_ceiling.as_ref().map(|v| v.cpu_per_mib);
        assert_eq!(ceil, Some(4.0));
        assert_eq!(tunnel_up.edge_client_us_per_mib, Some(2e6 / 1024.0));
        // No download ceiling was measured: no ratio to one.
        assert!(report.rows[4].vs_ceiling.is_none());
        assert_eq!(
            report.rows[4].vs_baseline.as_ref().map(|v| v.throughput),
            Some(1.0)
        );
        let table = report.table();
        for want in [
            "upload   tunnel",
            "download direct",
            "edge+client µs/MiB",
            "÷ceil",
        ] {
            assert!(table.contains(want), "{want:?} missing from:\n{table}");
        }
        let doc: serde_json::Value =
            serde_json::from_str(&report.json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(doc["rows"][1]["path"], "tunnel");
        assert_eq!(doc["rows"][1]["direction"], "upload");
    }
}
