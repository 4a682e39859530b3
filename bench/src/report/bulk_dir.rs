//! `--report DIR` for the `bulk` scenario: `report.json` (the document
//! `--json` prints) and `report.md`, which records what was run and where
//! (command line, machine, settings) around the terminal's table, so the
//! figures can be read, and their conditions known, later. Bulk has no
//! latency spectrum or call timeline, so it has no charts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

use crate::report::bulk::BulkReport;
use crate::report::dir::{JSON, MARKDOWN};
use crate::report::provenance::{self, Provenance};

/// Writes `report.md` and `report.json` into `dir`, creating it if
/// missing. Returns the markdown file's path.
pub fn write(dir: &Path, report: &BulkReport, provenance: &Provenance) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let files = [
        (JSON, report.json()? + "\n"),
        (MARKDOWN, markdown(report, provenance, SystemTime::now())),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir.join(MARKDOWN))
}

/// The markdown document: heading, command, machine, settings, then the
/// summary exactly as the terminal shows it.
pub fn markdown(report: &BulkReport, p: &Provenance, finished: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# bench bulk: {}\n", provenance::utc(p.started));
    let _ = writeln!(
        out,
        "Started {}, finished {}, on the {} deployment.\n",
        provenance::utc(p.started),
        provenance::utc(finished),
        report.topology
    );
    let _ = writeln!(out, "```sh\n{}\n```\n", p.command);
    let _ = writeln!(out, "## Machine\n\n| | |\n| --- | --- |");
    let _ = writeln!(
        out,
        "| CPU | {} × {} |",
        p.cpu_model.replace('|', "\\|"),
        p.cpus
    );
    let _ = writeln!(
        out,
        "| memory | {:.1} GiB |",
        p.mem_total_kib as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(out, "| kernel | {} |\n", p.kernel.replace('|', "\\|"));
    let _ = writeln!(out, "## Settings\n\n| setting | value |\n| --- | --- |");
    if let Some(map) = report.settings.as_object() {
        for (key, value) in map {
            let _ = writeln!(out, "| {key} | {} |", value.to_string().replace('|', "\\|"));
        }
    }
    let _ = writeln!(out, "\n## Summary\n\n```text\n{}```", report.table());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_are_written() {
        let Ok(tmp) = tempfile::tempdir() else { return };
        let dir = tmp.path().join("bulk");
        let report = BulkReport::new(serde_json::json!({"streams": 2}), Vec::new());
        let md = write(&dir, &report, &Provenance::collect()).ok();
        assert_eq!(md, Some(dir.join(MARKDOWN)));
        let text = std::fs::read_to_string(dir.join(MARKDOWN)).unwrap_or_default();
        assert!(text.starts_with("# bench bulk: "), "{text}");
        assert!(text.contains("| streams | 2 |"), "{text}");
        let json = std::fs::read_to_string(dir.join(JSON)).unwrap_or_default();
        assert!(json.contains("\"scenario\": \"bulk\""), "{json}");
    }
}
