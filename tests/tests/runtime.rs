//! `--worker-threads`: the real binaries run on as many runtime workers as
//! asked (counted in /proc by thread name) and still carry calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Launch, Process};
use tether_tests::upstream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const WRITER: &str = "tests/tests/runtime.rs";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Threads of `pid` named `tokio-rt-worker`.
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

fn one_worker() -> Launch {
    Launch {
        args: vec!["--worker-threads".into(), "1".into()],
        ..Launch::default()
    }
}

#[tokio::test]
async fn both_binaries_run_on_the_workers_asked_for_and_carry_calls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    files::ensure_dev_pki(d).unwrap();
    let up = upstream::start(any()).await.unwrap();
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: WRITER.into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: None,
            cp_upstream: up.addr,
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let edge = Process::start_launched("tunnel-server", &edge_toml, &one_worker()).await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: WRITER.into(),
            edge_address: edge.addr("tunnels"),
            upstream: up.addr,
            admin_listen: None,
            egress_listen: any(),
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let client = Process::start_launched("tunnel-client", &client_toml, &one_worker()).await;

    let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
        .await
        .unwrap();
    for n in 0..20 {
        let text = format!("on one worker {n}");
        let reply = echo
            .unary(EchoRequest {
                text: text.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(reply.get_ref().text, text);
    }
    assert_eq!(runtime_workers(edge.pid()), 1, "the edge's runtime workers");
    assert_eq!(
        runtime_workers(client.pid()),
        1,
        "the client's runtime workers"
    );
}
