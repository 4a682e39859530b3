//! `--report DIR`: writes a run's report into a directory, as files to
//! keep beside the code that produced them: `report.md` (for people),
//! `report.json` (the document `--json` prints), `latency.svg` and
//! `throughput.svg` (the charts `report.md` embeds); [`write_tunnels`] adds
//! the `tunnels` scenario's own figures to them, and [`write_bulk`] writes
//! the `bulk` scenario's `report.md` and `report.json`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

use crate::report::bulk::BulkReport;
use crate::report::charts;
use crate::report::markdown;
use crate::report::model::Report;
use crate::report::provenance::Provenance;
use crate::report::tunnels::TunnelsReport;
use crate::report::tunnels_table;

/// The markdown report.
pub const MARKDOWN: &str = "report.md";
/// The JSON document.
pub const JSON: &str = "report.json";
/// Latency across the percentile spectrum.
pub const LATENCY_SVG: &str = "latency.svg";
/// Throughput over time.
pub const THROUGHPUT_SVG: &str = "throughput.svg";

/// Writes every report file into `dir`, creating it if missing and
/// replacing files of a previous report. Returns the markdown file's path.
pub fn write(dir: &Path, report: &Report, provenance: &Provenance) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let charts = [
        ("Latency by percentile", LATENCY_SVG),
        ("Throughput over time", THROUGHPUT_SVG),
    ];
    let markdown = markdown::render(report, provenance, SystemTime::now(), &charts);
    let files = [
        (JSON, report.json()? + "\n"),
        (LATENCY_SVG, charts::latency(report)),
        (THROUGHPUT_SVG, charts::throughput(report, "calls")),
        (MARKDOWN, markdown),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir.join(MARKDOWN))
}

/// `--report DIR` for the `bulk` scenario: `report.json` (the document
/// `--json` prints) and `report.md`, which records what was run and where
/// (command line, machine, settings) around the terminal's table, so the
/// figures can be read, and their conditions known, later; no charts.
/// Returns the markdown file's path.
pub fn write_bulk(
    dir: &Path,
    report: &BulkReport,
    provenance: &Provenance,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let files = [
        (JSON, report.json()? + "\n"),
        (
            MARKDOWN,
            markdown::render_bulk(report, provenance, SystemTime::now()),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir.join(MARKDOWN))
}

/// `--report DIR` for `bench tunnels`: the usual files of the report's rows (registration
/// latency and registrations over time in the charts), with
/// `report.json` this whole document and the scenario's table added
/// to `report.md`.
pub fn write_tunnels(
    dir: &Path,
    report: &TunnelsReport,
    provenance: &Provenance,
) -> anyhow::Result<PathBuf> {
    let markdown = write(dir, &report.report, provenance)?;
    let json = dir.join(JSON);
    std::fs::write(&json, report.json()? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let mut text = std::fs::read_to_string(&markdown)
        .with_context(|| format!("reading {}", markdown.display()))?;
    text.push_str("## Tunnels\n\nCalls in the summary above are registrations.\n\n```text\n");
    text.push_str(&tunnels_table::table(report));
    text.push_str("```\n");
    std::fs::write(&markdown, text).with_context(|| format!("writing {}", markdown.display()))?;
    Ok(markdown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::report;

    #[test]
    fn every_file_is_written_into_a_new_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("report");
        let report = report();
        let md = write(&dir, &report, &Provenance::collect()).unwrap();
        assert_eq!(md, dir.join(MARKDOWN));
        for name in [MARKDOWN, JSON, LATENCY_SVG, THROUGHPUT_SVG] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(!text.is_empty(), "{name} is empty");
        }
        let json = std::fs::read_to_string(dir.join(JSON)).unwrap();
        assert_eq!(json.trim_end(), report.json().unwrap());
        // Written twice, the same directory is simply refreshed.
        write(&dir, &report, &Provenance::collect()).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = write(&file, &report(), &Provenance::collect()).unwrap_err();
        assert!(format!("{err:#}").contains("a-file"), "{err:#}");
    }

    #[test]
    fn both_bulk_files_are_written() {
        let Ok(tmp) = tempfile::tempdir() else { return };
        let dir = tmp.path().join("bulk");
        let report = BulkReport::new(serde_json::json!({"streams": 2}), Vec::new());
        let md = write_bulk(&dir, &report, &Provenance::collect()).ok();
        assert_eq!(md, Some(dir.join(MARKDOWN)));
        let text = std::fs::read_to_string(dir.join(MARKDOWN)).unwrap_or_default();
        assert!(text.starts_with("# bench bulk: "), "{text}");
        assert!(text.contains("| streams | 2 |"), "{text}");
        let json = std::fs::read_to_string(dir.join(JSON)).unwrap_or_default();
        assert!(json.contains("\"scenario\": \"bulk\""), "{json}");
    }
}
