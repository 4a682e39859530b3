//! Smoke test of the load-test harness: a tiny `unary` run over every path
//! (the raw-QUIC `ceiling` included) and a tiny `rate` run go through the same library code `bench` runs, and
//! their reports hold real figures (calls made, none failed or missed,
//! percentiles in order), and a run through the command line with
//! `--report DIR` writes the report files. It checks the harness, not
//! Tether's speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bench::cli::Cli;
use bench::deploy::deployment::Spec;
use bench::paths::Path;
use bench::report::model::Report;
use bench::scenarios::rate::{self, OpenLoop, RateConfig};
use bench::scenarios::unary::{self, ClosedLoop, UnaryConfig};

/// Long enough for a few hundred calls in a debug build, short enough that
/// the file runs in a couple of seconds.
const WINDOW: Duration = Duration::from_millis(200);

fn assert_sound(report: &Report, paths: &[Path]) {
    let labels: Vec<&str> = report.rows.iter().map(|r| r.label.as_str()).collect();
    let want: Vec<&str> = paths.iter().map(|p| p.name()).collect();
    assert_eq!(labels, want, "one row per path, direct first");
    assert_eq!(report.baseline.as_deref(), Some("direct"));
    assert!(report.clean(), "warnings: {:?}", report.warnings);
    for r in &report.rows {
        assert!(r.calls > 0, "{}: no calls", r.label);
        assert_eq!(r.errors, 0, "{}: errors", r.label);
        assert_eq!(r.missed, 0, "{}: missed", r.label);
        assert!(r.calls_per_sec > 0.0, "{}: no throughput", r.label);
        let l = &r.latency_us;
        assert!(l.p50 > 0, "{}: zero median", r.label);
        assert!(
            l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
            "{}: percentiles out of order: {l:?}",
            r.label
        );
        assert!(r.vs_baseline.is_some(), "{}: no ratio", r.label);
        assert_eq!(
            r.vs_ceiling.is_some(),
            paths.contains(&Path::Ceiling),
            "{}: ratio to the ceiling when, and only when, it was measured",
            r.label
        );
    }
    if paths.contains(&Path::Ceiling) {
        assert_eq!(report.ceiling.as_deref(), Some("ceiling"));
        let own = report.rows.iter().find(|r| r.label == "ceiling").unwrap();
        let ratio = own.vs_ceiling.as_ref().unwrap().throughput;
        assert!((ratio - 1.0).abs() < 1e-9, "ceiling ÷ itself is {ratio}");
        assert!(
            report.table().contains("÷ceil"),
            "table has the ceiling column"
        );
    }
    assert!(report.peak_rss_kib > 0, "VmHWM read");
    // The JSON document carries the same figures.
    let doc: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert_eq!(doc["rows"].as_array().unwrap().len(), paths.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_over_every_path_reports_sound_figures() {
    let report = unary::run(&UnaryConfig {
        paths: Path::ALL.to_vec(),
        rounds: 1,
        audit: bench::deploy::audit::Audit::Always,
        load: ClosedLoop {
            concurrency: 2,
            duration: WINDOW,
            size: 100,
            max_calls: 100_000,
            call_timeout: Duration::from_secs(5),
            progress: false,
        },
        deployment: Spec::InProcess,
    })
    .await
    .unwrap();
    assert!(Path::ALL.contains(&Path::Ceiling));
    assert_sound(&report, &Path::ALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_measures_from_intended_start_without_missing_calls() {
    let rate = 200.0;
    let report = rate::run(&RateConfig {
        paths: vec![Path::Direct, Path::Tunnel, Path::Ceiling],
        rounds: 1,
        load: OpenLoop {
            rate,
            duration: WINDOW,
            max_in_flight: 64,
            size: 100,
            max_calls: 100_000,
            call_timeout: Duration::from_secs(5),
            progress: false,
        },
        deployment: Spec::InProcess,
    })
    .await
    .unwrap();
    assert_sound(&report, &[Path::Direct, Path::Tunnel, Path::Ceiling]);
    for r in &report.rows {
        // Every due call was sent and answered: 200/s for 200 ms.
        assert_eq!(r.scheduled, (rate * WINDOW.as_secs_f64()) as u64);
        assert_eq!(r.calls, r.scheduled, "{}", r.label);
        assert!(r.send_lag_us.is_some(), "{}: send lag reported", r.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_option_writes_markdown_json_and_charts() {
    use clap::Parser as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let cli = Cli::try_parse_from([
        "bench",
        "unary",
        "--paths",
        "direct,tunnel",
        "--concurrency",
        "2",
        "--duration",
        "0.3",
        "--rounds",
        "1",
        "--quiet",
        "--in-process",
        "--report",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    bench::cli::run(cli).await.unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let md = read("report.md");
    assert!(md.starts_with("# bench unary: "), "{md}");
    for want in ["| direct |", "| tunnel |", "latency.svg", "throughput.svg"] {
        assert!(md.contains(want), "report.md lacks {want:?}:\n{md}");
    }
    let doc: serde_json::Value = serde_json::from_str(&read("report.json")).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let counts = row["timeline"]["count"].as_array().unwrap();
        let sampled: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
        assert_eq!(
            sampled,
            row["calls"].as_u64().unwrap(),
            "every call sampled"
        );
    }
    for chart in ["latency.svg", "throughput.svg"] {
        let svg = read(chart);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline ").count(),
            2,
            "{chart}: a line per path"
        );
        assert!(!svg.contains("NaN"), "{chart}");
    }
}
