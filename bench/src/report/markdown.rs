//! `report.md`: the run written up for a person to read later or paste
//! into a document: what was run (command, settings), where (machine), the
//! summary table with the same figures and ratios the terminal shows,
//! the charts, and what went wrong. One renderer for every scenario:
//! [`render`] writes a [`Report`] (`unary`, `rate`, `audit`, and the rows
//! of `tunnels`), [`render_bulk`] a [`BulkReport`]; both share the
//! preamble and machine sections and write every table with [`head`] and
//! [`row`].

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::report::bulk::BulkReport;
use crate::report::model::{Report, Row};
use crate::report::provenance::{self, Provenance};

/// Column headings of the summary table, in the terminal table's order.
const HEADINGS: [&str; 14] = [
    "calls",
    "errors",
    "missed",
    "calls/s",
    "p50 µs",
    "p90 µs",
    "p99 µs",
    "p99.9 µs",
    "max µs",
    "CPU µs/call",
    "RSS MiB",
    "× tput",
    "× p50",
    "× CPU",
];

/// The markdown document for `report`, produced by the run `provenance`
/// describes and finished at `finished`; `charts` are `(title, file)`
/// pairs, embedded in that order.
pub fn render(
    report: &Report,
    provenance: &Provenance,
    finished: SystemTime,
    charts: &[(&str, &str)],
) -> String {
    let mut out = String::new();
    let ratios = format!(
        " Ratios (×) are to {}.",
        report.baseline.as_deref().unwrap_or("-")
    );
    preamble(
        &mut out,
        &report.scenario,
        &report.topology,
        &ratios,
        provenance,
        finished,
    );
    settings(&mut out, report);
    let _ = writeln!(out, "## Summary\n");
    out.push_str(&table(report));
    per_process(&mut out, report);
    notes(&mut out, report);
    let _ = writeln!(out, "## Errors and missed calls\n");
    if report.warnings.is_empty() {
        let _ = writeln!(out, "None: every call succeeded and none was missed.\n");
    } else {
        for w in &report.warnings {
            let _ = writeln!(out, "- {}", cell(w));
        }
        out.push('\n');
    }
    for (title, file) in charts {
        let _ = writeln!(out, "## {title}\n\n![{title}]({file})\n");
    }
    out
}

/// The markdown document of the `bulk` scenario: heading, command,
/// machine, settings, then the summary exactly as the terminal shows it
/// (bulk has no latency spectrum or call timeline, so no charts).
pub fn render_bulk(report: &BulkReport, p: &Provenance, finished: SystemTime) -> String {
    let mut out = String::new();
    preamble(&mut out, "bulk", &report.topology, "", p, finished);
    let _ = writeln!(out, "## Settings\n");
    head(&mut out, &["setting", "value"]);
    if let Some(map) = report.settings.as_object() {
        for (key, value) in map {
            row(
                &mut out,
                &[key.clone(), value.to_string().replace('|', "\\|")],
            );
        }
    }
    let _ = writeln!(out, "\n## Summary\n\n```text\n{}```", report.table());
    out
}

/// The heading, when and where the run ran (`note` ends that sentence's
/// paragraph), the command line and the machine.
fn preamble(
    out: &mut String,
    scenario: &str,
    topology: &str,
    note: &str,
    p: &Provenance,
    finished: SystemTime,
) {
    let _ = writeln!(out, "# bench {scenario}: {}\n", provenance::utc(p.started));
    let _ = writeln!(
        out,
        "Started {}, finished {}, on the {topology} deployment.{note}\n",
        provenance::utc(p.started),
        provenance::utc(finished),
    );
    let _ = writeln!(out, "```sh\n{}\n```\n", p.command);
    machine(out, p);
}

fn machine(out: &mut String, p: &Provenance) {
    let _ = writeln!(out, "## Machine\n\n| | |\n| --- | --- |");
    row(
        out,
        &["CPU".into(), format!("{} × {}", cell(&p.cpu_model), p.cpus)],
    );
    row(
        out,
        &[
            "memory".into(),
            format!("{:.1} GiB", p.mem_total_kib as f64 / (1024.0 * 1024.0)),
        ],
    );
    row(out, &["kernel".into(), cell(&p.kernel)]);
    out.push('\n');
}

/// A table's heading row and the delimiter row under it.
pub fn head<S: AsRef<str>>(out: &mut String, headings: &[S]) {
    row(out, headings);
    let _ = writeln!(out, "|{}", " --- |".repeat(headings.len()));
}

/// One table row of `cells`, already made safe with [`cell`].
pub fn row<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn settings(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Settings\n");
    head(out, &["setting", "value"]);
    if let Some(map) = report.settings.as_object() {
        for (key, value) in map {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            row(out, &[cell(key), cell(&value)]);
        }
    }
    out.push('\n');
}

/// The summary as a markdown table: one row per path (or mode), the same
/// columns and figures as [`Report::table`].
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let first = if report.scenario == "audit" {
        "audit"
    } else {
        "path"
    };
    let mut headings: Vec<&str> = vec![first];
    headings.extend(HEADINGS);
    if report.ceiling.is_some() {
        headings.extend(["÷ ceil", "× ceil CPU"]);
    }
    head(&mut out, &headings);
    for r in &report.rows {
        let mut cells = row_cells(r);
        if report.ceiling.is_some() {
            let (t, c) = r
                .vs_ceiling
                .as_ref()
                .map_or((0.0, 0.0), |v| (v.throughput, v.cpu_per_call));
            cells.extend([format!("{t:.3}"), format!("{c:.3}")]);
        }
        row(&mut out, &cells);
    }
    out.push('\n');
    out
}

fn row_cells(r: &Row) -> Vec<String> {
    let l = &r.latency_us;
    let (t, p, c) = r
        .vs_baseline
        .as_ref()
        .map_or((1.0, 1.0, 1.0), |v| (v.throughput, v.p50, v.cpu_per_call));
    vec![
        cell(&r.label),
        r.calls.to_string(),
        r.errors.to_string(),
        r.missed.to_string(),
        format!("{:.0}", r.calls_per_sec),
        l.p50.to_string(),
        l.p90.to_string(),
        l.p99.to_string(),
        l.p999.to_string(),
        l.max.to_string(),
        format!("{:.1}", r.cpu_us_per_call),
        format!("{:.1}", r.rss_kib as f64 / 1024.0),
        format!("{t:.3}"),
        format!("{p:.3}"),
        format!("{c:.3}"),
    ]
}

/// Each measured process's CPU per call and RSS per row, then each
/// process's idle and peak RSS: the terminal's per-process block. Nothing
/// when no row has per-process figures.
fn per_process(out: &mut String, report: &Report) {
    let Some(first) = report.rows.iter().find(|r| !r.processes.is_empty()) else {
        return;
    };
    let names: Vec<&str> = first.processes.iter().map(|p| p.name.as_str()).collect();
    let both = report
        .rows
        .iter()
        .any(|r| r.edge_client_us_per_call.is_some());
    let mut headings = vec![if report.scenario == "audit" {
        "audit".to_string()
    } else {
        "path".to_string()
    }];
    headings.extend(names.iter().map(|n| format!("{} µs/call", cell(n))));
    if both {
        headings.push("edge+client µs/call".to_string());
    }
    headings.extend(names.iter().map(|n| format!("{} MiB", cell(n))));
    let _ = writeln!(
        out,
        "Per process: CPU µs per call, and RSS MiB at the end of each measurement.\n"
    );
    head(out, &headings);
    for r in &report.rows {
        let fig = |n: &str| r.processes.iter().find(|p| p.name == n);
        let mut cells = vec![cell(&r.label)];
        cells.extend(
            names
                .iter()
                .map(|n| fig(n).map_or("-".to_string(), |p| format!("{:.1}", p.cpu_us_per_call))),
        );
        if both {
            cells.push(
                r.edge_client_us_per_call
                    .map_or("-".to_string(), |v| format!("{v:.1}")),
            );
        }
        cells.extend(names.iter().map(|n| {
            fig(n).map_or("-".to_string(), |p| {
                format!("{:.1}", p.rss_kib as f64 / 1024.0)
            })
        }));
        row(out, &cells);
    }
    out.push('\n');
    if !report.processes.is_empty() {
        head(
            out,
            &[
                "process",
                "pid",
                "idle RSS MiB (before any call)",
                "peak RSS MiB (VmHWM)",
            ],
        );
        for p in &report.processes {
            row(
                out,
                &[
                    cell(&p.name),
                    p.pid.to_string(),
                    format!("{:.1}", p.idle_rss_kib as f64 / 1024.0),
                    format!("{:.1}", p.peak_rss_kib as f64 / 1024.0),
                ],
            );
        }
        out.push('\n');
    }
}

/// The lines the terminal prints under its table.
fn notes(out: &mut String, report: &Report) {
    for r in &report.rows {
        if let Some(lag) = &r.send_lag_us {
            let _ = writeln!(
                out,
                "- {}: calls were sent late by p50 {} µs, p99 {} µs, max {} µs \
                 (counted in the latency above).",
                cell(&r.label),
                lag.p50,
                lag.p99,
                lag.max
            );
        }
    }
    if let Some(ceiling) = &report.ceiling {
        let _ = writeln!(
            out,
            "- ÷ ceil is calls/s ÷ {ceiling}'s and × ceil CPU is CPU per call ÷ \
             {ceiling}'s ({ceiling}: raw QUIC streams with Tether's TLS and transport)."
        );
    }
    let _ = writeln!(
        out,
        "- Ratios (×) are to {}; CPU µs/call is every measured process's CPU per \
         successful call, RSS MiB the bench process's; peak RSS of the bench process \
         {:.1} MiB.\n",
        report.baseline.as_deref().unwrap_or("-"),
        report.peak_rss_kib as f64 / 1024.0
    );
}

/// `s` made safe inside a table cell: pipes escaped, newlines flattened.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::usage::{ProcessFigures, ProcessInfo};
    use crate::report::fixtures::report;

    fn provenance() -> Provenance {
        Provenance {
            started: SystemTime::UNIX_EPOCH,
            command: "bench unary --report out".into(),
            cpu_model: "Test CPU | 2 GHz".into(),
            cpus: 2,
            mem_total_kib: 24 * 1024 * 1024,
            kernel: "6.1.0".into(),
        }
    }

    #[test]
    fn the_table_has_one_row_per_path_and_the_ceiling_columns() {
        let report = report();
        let table = table(&report);
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2 + report.rows.len(), "{table}");
        let columns = |l: &str| l.matches('|').count();
        assert!(
            lines.iter().all(|l| columns(l) == columns(lines[0])),
            "{table}"
        );
        assert!(lines[0].contains("÷ ceil"));
        for (line, row) in lines[2..].iter().zip(&report.rows) {
            assert!(line.starts_with(&format!("| {} |", row.label)));
            assert!(line.contains(&format!("| {} |", row.latency_us.p99)));
        }
    }

    #[test]
    fn per_process_figures_get_their_own_tables() {
        let mut report = report();
        assert!(
            !render(&report, &provenance(), SystemTime::UNIX_EPOCH, &[]).contains("Per process")
        );
        for row in &mut report.rows {
            row.processes = ["gen", "edge", "client"]
                .into_iter()
                .map(|name| ProcessFigures {
                    name: name.into(),
                    cpu_us_per_call: 12.5,
                    rss_kib: 2048,
                    stages_us_per_call: Vec::new(),
                    heap_per_call: None,
                })
                .collect();
            row.edge_client_us_per_call = Some(25.0);
        }
        report.processes = vec![ProcessInfo {
            name: "edge".into(),
            pid: 42,
            idle_rss_kib: 9 * 1024,
            peak_rss_kib: 20 * 1024,
        }];
        let md = render(&report, &provenance(), SystemTime::UNIX_EPOCH, &[]);
        for want in [
            "| path | gen µs/call | edge µs/call | client µs/call | edge+client µs/call | gen MiB |",
            "| tunnel | 12.5 | 12.5 | 12.5 | 25.0 | 2.0 | 2.0 | 2.0 |",
            "| edge | 42 | 9.0 | 20.0 |",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
    }

    #[test]
    fn the_document_has_every_section() {
        let report = report();
        let charts = [("Latency by percentile", "latency.svg")];
        let md = render(&report, &provenance(), SystemTime::UNIX_EPOCH, &charts);
        assert!(md.starts_with("# bench unary: 1970-01-01 00:00:00 UTC\n"));
        for want in [
            "bench unary --report out",
            "| CPU | Test CPU \\| 2 GHz × 2 |",
            "| memory | 24.0 GiB |",
            "| kernel | 6.1.0 |",
            "| rounds | 2 |",
            "| paths | direct, tunnel, ceiling |",
            "![Latency by percentile](latency.svg)",
            "- tunnel: 6 calls failed",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
    }
}
