//! `bench tunnels` end to end, through the binary: a tiny run on the
//! default process deployment registers its tunnels at the real edge,
//! measures the ceiling beside it and reports every figure (and leaves no
//! child running); in process it says that the memory is both ends'; and
//! against `--target` it refuses, saying why, before starting anything.
//!
//! The process test needs the debug `tunnel-server` and `tunnel-client`
//! next to the `bench` binary: `cargo test --workspace` builds them (both
//! packages have integration tests); alone, run
//! `cargo build -p tunnel-server -p tunnel-client` first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// 20 tunnels, 4 handshakes in flight, short idle and load windows:
/// seconds even in a debug build.
const TINY: [&str; 14] = [
    "tunnels",
    "--tunnels",
    "20",
    "--concurrency",
    "4",
    "--idle",
    "0.5",
    "--load-rate",
    "50",
    "--load-duration",
    "0.5",
    "--json",
    "--quiet",
    "--endpoints=2",
];

async fn bench(args: &[&str]) -> Output {
    tokio::process::Command::new(BENCH)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn report(o: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench failed:\n{stderr}");
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

/// What every run's document holds, whatever the deployment.
fn check_figures(doc: &Value) {
    assert_eq!(doc["scenario"], "tunnels");
    let rows = doc["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["tunnel", "ceiling"]);
    for row in rows {
        assert_eq!(row["calls"], 20, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(row["calls_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    }
    let t = &doc["tunnels"];
    assert_eq!(t["requested"], 20);
    assert_eq!(t["minting"]["identities"], 20);
    for phase in ["registration", "ceiling"] {
        let p = &t[phase];
        assert_eq!(p["connected"], 20, "{phase}: {p}");
        for key in ["failed", "timed_out", "not_started"] {
            assert_eq!(p[key], 0, "{phase}.{key}: {p}");
        }
        let l = &p["latency_us"];
        assert!(l["p50"].as_u64().unwrap() > 0, "{p}");
        assert!(l["p50"].as_u64() <= l["p99"].as_u64(), "{p}");
        assert!(p["server_udp_drops"].is_u64(), "{p}");
    }
    assert!(t["registration"]["edge_cpu_us_per_handshake"].is_number());
    assert!(t["handshakes_vs_ceiling"].as_f64().unwrap() > 0.0);
    let m = &t["memory"];
    assert!(m["before_kib"].as_u64().unwrap() > 0, "{m}");
    assert!(m["idle_kib"].as_u64().unwrap() > 0, "{m}");
    assert!(m["per_tunnel_idle_kib"].is_number(), "{m}");
    let idle = &t["idle"];
    assert!(idle["seconds"].as_f64().unwrap() >= 0.5, "{idle}");
    let load = &t["light_load"];
    for key in ["without_tunnels", "with_tunnels"] {
        assert!(load[key]["calls"].as_u64().unwrap() > 0, "{key}: {load}");
        assert_eq!(load[key]["errors"], 0, "{key}: {load}");
    }
    let targets = t["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(t["skipped"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_registers_at_the_edge_process_and_reports_every_figure() {
    let dir = bin_dir();
    let mut args = TINY.to_vec();
    args.extend(["--bin-dir", dir.to_str().unwrap()]);
    let doc = report(&bench(&args).await);
    check_figures(&doc);
    assert_eq!(doc["topology"], "processes");
    let t = &doc["tunnels"];
    assert_eq!(t["edge_process"], "edge");
    assert!(t["caveat"].is_null());
    let idle: Vec<&str> = t["idle"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(idle, ["gen", "edge", "client", "upstream"]);
    // Registering 20 tunnels grew the edge, and nothing else was running.
    let m = &t["memory"];
    assert!(
        m["connected_kib"].as_u64() > m["before_kib"].as_u64(),
        "{m}"
    );
    // Bench killed and reaped every child before it exited.
    for p in doc["processes"].as_array().unwrap().iter().skip(1) {
        let pid = p["pid"].as_u64().unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived bench"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_in_process_says_the_memory_is_both_ends() {
    let mut args = TINY.to_vec();
    args.push("--in-process");
    let doc = report(&bench(&args).await);
    check_figures(&doc);
    assert_eq!(doc["topology"], "in-process");
    let t = &doc["tunnels"];
    assert_eq!(t["edge_process"], "bench");
    assert!(t["caveat"].as_str().unwrap().contains("both ends"));
    let memory_targets: Vec<&Value> = t["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["unit"] != "×")
        .collect();
    assert!(memory_targets.iter().all(|t| t["met"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_against_a_target_is_refused_with_the_reason() {
    let out = bench(&[
        "tunnels",
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
        "--quiet",
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not available against --target"), "{err}");
    assert!(err.contains("CA private key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_help_says_what_it_measures() {
    let out = bench(&["tunnels", "--help"]).await;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in ["--tunnels", "--concurrency", "ceiling", "RSS per tunnel"] {
        assert!(help.contains(want), "{want} missing from:\n{help}");
    }
}
