//! The `bench` binary end to end in its two out-of-process deployments:
//! the default, which starts `tunnel-server`, `tunnel-client` and `bench
//! upstream` as children and reports each one's CPU and memory (and
//! leaves none running); and `--target`, which measures an edge it did
//! not start over mTLS. Plus the errors a user meets first: binaries not
//! built, a `--target` without its flags, a path a target does not have.
//!
//! The process test needs the debug `tunnel-server` and `tunnel-client`
//! next to the `bench` binary: `cargo test --workspace` builds them (both
//! packages have integration tests); alone, run
//! `cargo build -p tunnel-server -p tunnel-client` first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use certs::IdentityKind;
use serde_json::Value;
use tether_tests::topology::Topology;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// A few hundred calls per path even in a debug build; seconds per test.
const TINY: [&str; 8] = [
    "--duration",
    "0.3",
    "--rounds",
    "1",
    "--concurrency",
    "2",
    "--json",
    "--quiet",
];

async fn bench(args: &[&str]) -> Output {
    tokio::process::Command::new(BENCH)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(o: &Output) -> Value {
    assert!(o.status.success(), "bench failed:\n{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn bin_dir() -> PathBuf {
    let dir = Path::new(BENCH).parent().unwrap().to_path_buf();
    for bin in ["tunnel-server", "tunnel-client"] {
        assert!(
            dir.join(bin).is_file(),
            "{} missing: run `cargo build -p tunnel-server -p tunnel-client` \
             (cargo test --workspace builds it)",
            dir.join(bin).display()
        );
    }
    dir
}

fn names(doc: &Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_runs_each_component_as_a_process_and_measures_each() {
    let dir = bin_dir();
    let mut args = vec!["unary", "--bin-dir", dir.to_str().unwrap()];
    args.extend(TINY);
    let out = bench(&args).await;
    let doc = report(&out);
    assert_eq!(doc["topology"], "processes");
    let procs = names(&doc, "processes");
    assert_eq!(procs, ["gen", "edge", "client", "upstream"]);
    let pids: Vec<u64> = doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    for p in doc["processes"].as_array().unwrap() {
        let (idle, peak) = (p["idle_rss_kib"].as_u64(), p["peak_rss_kib"].as_u64());
        assert!(idle.unwrap() > 0, "{p}");
        assert!(peak.unwrap() >= idle.unwrap(), "{p}");
    }
    let rows = doc["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["direct", "tunnel", "egress", "ceiling"]);
    for row in rows {
        assert!(row["calls"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(names(row, "processes"), procs, "{}", row["label"]);
        assert!(row["edge_client_us_per_call"].is_number(), "{row}");
    }
    // A tunnel call crosses the edge and the client: both burned CPU.
    let tunnel = &rows[1];
    for (i, name) in [(1, "edge"), (2, "client")] {
        let cpu = tunnel["processes"][i]["cpu_us_per_call"].as_f64().unwrap();
        assert!(cpu > 0.0, "{name} used no CPU on the tunnel path: {tunnel}");
    }
    // Bench killed and reaped every child before it exited.
    for pid in &pids[1..] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived bench"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_binaries_name_the_command_that_builds_them() {
    let empty = tempfile::tempdir().unwrap();
    let out = bench(&[
        "unary",
        "--bin-dir",
        empty.path().to_str().unwrap(),
        "--quiet",
    ])
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cargo build --release -p tunnel-server -p tunnel-client"),
        "{err}"
    );
    assert!(err.contains("--in-process"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_flags_are_checked_before_anything_starts() {
    let out = bench(&["unary", "--target", "127.0.0.1:1", "--cert", "c.pem"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    for flag in ["--ca PEM", "--key PEM", "--authority HOST"] {
        assert!(err.contains(flag), "{flag} not asked for: {err}");
    }
    let out = bench(&[
        "unary",
        "--target",
        "127.0.0.1:1",
        "--ca",
        "ca.pem",
        "--cert",
        "c.pem",
        "--key",
        "c.key",
        "--authority",
        "echo.demo.tunnel.local",
        "--paths",
        "tunnel,ceiling",
    ])
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the ceiling path is not available against --target"),
        "{err}"
    );
}

/// An edge bench did not start (a topology in this test process), measured
/// over its mTLS ingress with a caller certificate from files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_measures_an_existing_edge_over_mtls() {
    let topo = Topology::start().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    topo.write_pki(files.path()).unwrap();
    topo.pki
        .leaf(IdentityKind::Caller, "bench")
        .unwrap()
        .write_files(files.path(), "caller", true)
        .unwrap();
    let file = |name: &str| files.path().join(name).to_str().unwrap().to_string();
    let (ingress, direct) = (
        topo.ingress_addr.to_string(),
        topo.upstream.addr.to_string(),
    );
    let (ca, cert, key) = (file("ca.pem"), file("caller.pem"), file("caller.key"));
    let authority = topo.host("echo");
    let mut args = vec![
        "unary",
        "--target",
        &ingress,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--authority",
        &authority,
        // The test topology's edge certificate names only localhost.
        "--server-name",
        "localhost",
        "--direct",
        &direct,
    ];
    args.extend(TINY);
    let out = bench(&args).await;
    let doc = report(&out);
    assert_eq!(doc["topology"], "target");
    assert_eq!(names(&doc, "processes"), ["gen"]);
    let rows = doc["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["direct", "tunnel"]);
    for row in rows {
        assert!(row["calls"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["edge_client_us_per_call"].is_null(), "{row}");
    }
    topo.shutdown().await;
}
