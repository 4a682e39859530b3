//! A client connected to two edges, as an operator runs it: real binaries,
//! two edge processes with their own identities, one client whose
//! `[edge] addresses` names both. It registers with each (the admin
//! listener's `/connections` shows both, distinct by identity); after
//! `kill -9` of one edge, calls through the other succeed at once, with no
//! retry; when the killed edge is back, the client connects to it again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::Process;
use tether_tests::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO_HOST: &str = "echo.demo.tunnel.local";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Writes an edge's files into `dir` with its tunnel listener on `tunnel`.
fn edge_files(dir: &Path, tunnel: SocketAddr, cp: SocketAddr, id: &str) -> std::path::PathBuf {
    let path = files::write_edge(
        dir,
        &EdgeFiles {
            writer: "tests/tests/edges.rs".into(),
            tunnel_listen: tunnel,
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: None,
            cp_upstream: cp,
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("id = \"edge-1\"", &format!("id = \"{id}\""));
    std::fs::write(&path, text).unwrap();
    path
}

async fn call_once(plaintext: SocketAddr, text: &str) -> Result<(), String> {
    let mut echo = grpc_plaintext(plaintext, ECHO_HOST)
        .await
        .map_err(|e| e.to_string())?;
    echo.unary(EchoRequest {
        text: text.into(),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|s| s.to_string())
}

/// `GET /connections` from the client's admin listener.
async fn connections(admin: SocketAddr) -> serde_json::Value {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /connections HTTP/1.0\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// `/connections` once it lists two connections (or after 10 s, for the
/// assertion to show what it lists).
async fn both_listed(admin: SocketAddr) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = connections(admin).await;
        if identities(&status).len() == 2 || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn identities(status: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = status["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["edge_identity"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_two_edges_is_served_through_one_when_the_other_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("edge-1");
    let second = dir.path().join("edge-2");
    files::ensure_dev_pki(&first).unwrap();
    files::edge_pki_beside(&first, &second, "edge-2").unwrap();
    let service = upstream::start(any()).await.unwrap();
    let cp = upstream::start(any()).await.unwrap();

    let mut edge1 = Process::start(
        "tunnel-server",
        &edge_files(&first, any(), cp.addr, "edge-1"),
    )
    .await;
    let edge2 = Process::start(
        "tunnel-server",
        &edge_files(&second, any(), cp.addr, "edge-2"),
    )
    .await;
    let tunnels1 = edge1.addr("tunnels");
    let client_cfg = files::write_client(
        &first,
        &ClientFiles {
            writer: "tests/tests/edges.rs".into(),
            edge_address: tunnels1,
            upstream: service.addr,
            admin_listen: Some(any()),
            egress_listen: any(),
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&client_cfg).unwrap().replace(
        "[edge]\n",
        &format!("[edge]\naddresses = [\"{}\"]\n", edge2.addr("tunnels")),
    );
    std::fs::write(&client_cfg, text).unwrap();
    let client = Process::start("tunnel-client", &client_cfg).await;
    edge1.log.wait_for("tunnel registered").await;
    edge2.log.wait_for("tunnel registered").await;

    // An edge logs the registration as it sends WELCOME; the client lists
    // the connection once WELCOME has arrived.
    let status = both_listed(client.addr("admin")).await;
    assert_eq!(
        identities(&status),
        [
            "spiffe://tether.local/edge/edge-1",
            "spiffe://tether.local/edge/edge-2"
        ],
        "one connection to each edge: {status:#}"
    );
    for c in status["connections"].as_array().unwrap() {
        assert!(c["rtt_ms"].as_f64().is_some(), "{c}");
        assert!(c["since_unix_ms"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["draining"], false, "{c}");
    }
    assert_eq!(status["slots"].as_array().unwrap().len(), 2, "{status:#}");

    // Calls through either edge are served.
    call_once(edge1.addr("plaintext"), "via edge-1")
        .await
        .unwrap();
    call_once(edge2.addr("plaintext"), "via edge-2")
        .await
        .unwrap();

    // kill -9 of one edge: every call through the other succeeds, first
    // try, right away.
    edge1.kill().await;
    for n in 0..20 {
        call_once(edge2.addr("plaintext"), &format!("after the kill {n}"))
            .await
            .unwrap_or_else(|e| panic!("call {n} through the surviving edge failed: {e}"));
    }

    // The killed edge comes back on its address: the client connects to
    // it again and shows both connections.
    let mut edge1 = Process::start(
        "tunnel-server",
        &edge_files(&first, tunnels1, cp.addr, "edge-1"),
    )
    .await;
    edge1.log.wait_for("tunnel registered").await;
    call_once(edge1.addr("plaintext"), "via the restarted edge-1")
        .await
        .unwrap();
    let status = connections(client.addr("admin")).await;
    assert_eq!(identities(&status).len(), 2, "{status:#}");
    edge1.kill().await;
}
