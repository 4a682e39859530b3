//! Smoke test of `bench bulk`: a tiny run over every path, both
//! directions and two streams at once goes through the same library code
//! the binary runs and reports real figures; the command line parses its
//! flags and writes `--report DIR`; `--target` measures an edge over mTLS;
//! the upstream's counting sink refuses a body of the wrong length; and a
//! transfer that outlives `--duration` fails the measurement, saying so.
//! It checks the harness, not Tether's speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bench::byte_size::MIB;
use bench::deploy::audit::Audit;
use bench::deploy::audit::AuditModes;
use bench::deploy::deployment::{Deployment, Spec};
use bench::load::bulk::caller;
use bench::load::bulk::transfer::Direction;
use bench::paths::Path;
use bench::scenarios::bulk::{self, BulkConfig, BulkLoad};
use http::Method;
use http_body_util::BodyExt as _;
use proxy::audit::Durability;
use tether_tests::callers::{full, request_h2, HttpCaller};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_over_every_path_both_ways_reports_sound_figures() {
    let bytes = 4 * MIB;
    let report = bulk::run(&BulkConfig {
        paths: Path::ALL.to_vec(),
        directions: Vec::new(),
        rounds: 1,
        load: BulkLoad {
            bytes,
            streams: 2,
            duration: Duration::from_secs(60),
            progress: false,
        },
        audit: Audit::Always,
        deployment: Spec::InProcess,
    })
    .await
    .unwrap();
    let rows: Vec<(Direction, Path)> = report.rows.iter().map(|r| (r.direction, r.path)).collect();
    let want: Vec<(Direction, Path)> = Direction::ALL
        .into_iter()
        .flat_map(|d| Path::ALL.into_iter().map(move |p| (d, p)))
        .collect();
    assert_eq!(rows, want, "a row per direction and path, direct first");
    assert_eq!(report.baseline, Some(Path::Direct));
    for r in &report.rows {
        let what = format!("{} {}", r.direction, r.path);
        assert_eq!(r.bytes, bytes, "{what}: every byte verified");
        assert_eq!(r.transfers, 2, "{what}: one transfer per stream");
        assert!(r.mib_per_sec > 0.0 && r.gbit_per_sec > 0.0, "{what}");
        assert!(
            r.ttfb_us.p50 > 0 && r.ttfb_us.p50 <= r.ttfb_us.max,
            "{what}"
        );
        assert!(r.cpu_us_per_mib >= 0.0 && r.rss_kib > 0, "{what}");
        assert_eq!(r.processes.len(), 1, "{what}: in process, one process");
        let base = r.vs_baseline.as_ref().unwrap();
        let ceil = r.vs_ceiling.as_ref().unwrap();
        if r.path == Path::Direct {
            assert!((base.throughput - 1.0).abs() < 1e-9, "{what}");
        }
        if r.path == Path::Ceiling {
            assert!((ceil.throughput - 1.0).abs() < 1e-9, "{what}");
        }
    }
    let table = report.table();
    for want in [
        "upload   tunnel",
        "download egress",
        "MiB/s",
        "÷ceil",
        "µs/MiB",
    ] {
        assert!(table.contains(want), "{want:?} missing from:\n{table}");
    }
    let doc: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
    assert_eq!(doc["scenario"], "bulk");
    assert_eq!(doc["rows"].as_array().unwrap().len(), want.len());
    assert_eq!(doc["settings"]["bytes_per_stream"], 2 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counting_sink_refuses_a_body_of_the_wrong_length() {
    let upstream = tether_tests::upstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let host = upstream.addr.to_string();
    let mut http = HttpCaller::plaintext(upstream.addr, true).await.unwrap();
    let post = |path: &str, body: &'static [u8]| {
        request_h2(Method::POST, &host, path, full(body)).unwrap()
    };
    let resp = http.send(post("/count", b"12345")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"5\n");
    let resp = http.send(post("/count?n=5", b"12345")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"5\n");
    // The reset may overtake the head: an error either way, never a count.
    let outcome = match http.send(post("/count?n=6", b"12345")).await {
        Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()).ok(),
        Err(_) => None,
    };
    assert_eq!(outcome, None, "a short body must end in an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_outlives_the_duration_cap_fails_the_measurement() {
    let deployment = Deployment::start(&Spec::InProcess, AuditModes::both(Durability::None))
        .await
        .unwrap();
    let callers = caller::connect(&deployment, Path::Tunnel, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let load = BulkLoad {
        // Far more than any build moves through the tunnel in 200 ms.
        bytes: 64 * 1024 * MIB,
        streams: 1,
        duration: Duration::from_millis(200),
        progress: false,
    };
    let err = bulk::measure(
        &callers.callers,
        Direction::Download,
        &load,
        "round 1/1 download tunnel",
        deployment.processes(),
    )
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(err.contains("--duration cap ran out"), "{err}");
    assert!(err.contains("download tunnel"), "{err}");
    drop(callers);
    deployment.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_runs_bulk_and_writes_its_report() {
    use clap::Parser as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bulk");
    let cli = bench::cli::Cli::try_parse_from([
        "bench",
        "bulk",
        "--paths",
        "direct,tunnel",
        "--direction",
        "download",
        "--bytes",
        "1MiB",
        "--streams",
        "3",
        "--rounds",
        "2",
        "--audit",
        "none",
        "--quiet",
        "--in-process",
        "--report",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    bench::cli::run(cli).await.unwrap();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.starts_with("# bench bulk: "), "{md}");
    assert!(md.contains("download tunnel"), "{md}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        // Two rounds of 1 MiB, in three streams each.
        assert_eq!(row["bytes"], 2 * MIB);
        assert_eq!(row["transfers"], 6);
    }
    assert_eq!(doc["settings"]["audit"], "none");
}

/// `--target`: an edge bench did not start (a topology in this test),
/// called on its mTLS ingress with HTTP/2 over TLS, beside `--direct`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_measures_an_existing_edge_over_mtls() {
    use bench::deploy::target::TargetSpec;
    use certs::IdentityKind;
    let topo = tether_tests::topology::Topology::start().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    topo.write_pki(files.path()).unwrap();
    topo.pki
        .leaf(IdentityKind::Caller, "bench")
        .unwrap()
        .write_files(files.path(), "caller", true)
        .unwrap();
    let report = bulk::run(&BulkConfig {
        paths: Vec::new(),
        directions: Vec::new(),
        rounds: 1,
        load: BulkLoad {
            bytes: MIB,
            streams: 2,
            duration: Duration::from_secs(60),
            progress: false,
        },
        audit: Audit::None,
        deployment: Spec::Target(TargetSpec {
            target: topo.ingress_addr.to_string(),
            ca: files.path().join("ca.pem"),
            cert: files.path().join("caller.pem"),
            key: files.path().join("caller.key"),
            authority: topo.host("echo"),
            // The test topology's edge certificate names only localhost.
            server_name: Some("localhost".into()),
            direct: Some(topo.upstream.addr.to_string()),
        }),
    })
    .await
    .unwrap();
    assert_eq!(report.topology, "target");
    let rows: Vec<(Direction, Path)> = report.rows.iter().map(|r| (r.direction, r.path)).collect();
    assert_eq!(
        rows,
        [
            (Direction::Upload, Path::Direct),
            (Direction::Upload, Path::Tunnel),
            (Direction::Download, Path::Direct),
            (Direction::Download, Path::Tunnel),
        ]
    );
    for r in &report.rows {
        assert_eq!(r.bytes, MIB, "{} {}", r.direction, r.path);
        assert!(r.vs_ceiling.is_none());
    }
    topo.shutdown().await;
}
