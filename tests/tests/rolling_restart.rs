//! A rolling restart of three edges, one at a time, as an operator runs
//! it: real binaries, three edge processes with identities of their own,
//! one client connected to all three (`[edge] addresses`, `max_edges = 3`).
//! Throughout, a constant unary load is spread over the edges by the
//! caller's own balancing, as an L4 load balancer with a retry policy
//! does: a call goes to the next edge in turn and, if that edge turns it
//! away before it started (connection refused, `draining`,
//! `tunnel-offline`), to the next. Before each edge is stopped (SIGTERM),
//! long bidirectional streams are opened through it; they must finish
//! in full within the grace period while the edge drains.
//!
//! Asserted: no unary call fails; every stream on a draining edge gets
//! every reply and a clean end, within the grace period; each edge exits
//! 0 and, restarted on its address, is joined again by the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::Process;
use tether_tests::upstream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const EDGES: usize = 3;
/// The edges' `shutdown_grace_ms`.
const GRACE: Duration = Duration::from_secs(10);
/// Streams opened through each edge before it is stopped.
const STREAMS: usize = 2;
/// Messages per stream, one every [`STREAM_PACE`]: each stream outlives
/// the start of its edge's drain by about two seconds.
const STREAM_MESSAGES: u64 = 20;
const STREAM_PACE: Duration = Duration::from_millis(100);
/// Pause between unary calls of the load (pacing, not synchronisation).
const LOAD_PACE: Duration = Duration::from_millis(5);
const WAIT: Duration = Duration::from_secs(30);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// An edge's directory: the first holds the development PKI; the others a
/// copy with an edge identity of their own.
fn edge_dir(root: &Path, n: usize) -> PathBuf {
    let dir = root.join(format!("edge-{n}"));
    if n == 1 {
        files::ensure_dev_pki(&dir).unwrap();
        return dir;
    }
    files::edge_pki_beside(&root.join("edge-1"), &dir, &format!("edge-{n}")).unwrap();
    dir
}

fn edge_config(dir: &Path, n: usize, tunnel: SocketAddr, cp: SocketAddr) -> PathBuf {
    let path = files::write_edge(
        dir,
        &EdgeFiles {
            writer: "tests/tests/rolling_restart.rs".into(),
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
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("id = \"edge-1\"", &format!("id = \"edge-{n}\""));
    text.push_str(&format!(
        "\n[limits]\nshutdown_grace_ms = {}\n",
        GRACE.as_millis()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    served: AtomicU64,
    /// Attempts turned away before the call started, then sent elsewhere.
    retried: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

/// Whether an attempt was turned away before the call started, so that
/// another edge may take it: the edge was not listening, or refused the
/// call as `draining` or with no tunnel connection yet.
fn turned_away(status: &tonic::Status) -> bool {
    let code = status
        .metadata()
        .get("tether-error")
        .and_then(|v| v.to_str().ok());
    matches!(code, Some("draining" | "tunnel-offline"))
}

/// One unary call, offered to each edge in turn from `first`.
async fn balanced_call(edges: &Mutex<Vec<SocketAddr>>, first: usize, tally: &Tally) {
    let targets = edges.lock().unwrap().clone();
    let mut last = String::new();
    for i in 0..targets.len() {
        let addr = targets[(first + i) % targets.len()];
        let mut echo = match grpc_plaintext(addr, ECHO_HOST).await {
            Ok(echo) => echo,
            Err(e) => {
                // Not listening (stopped, or not yet restarted).
                last = format!("{addr}: {e}");
                tally.retried.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match echo.unary(EchoRequest::default()).await {
            Ok(_) => {
                tally.served.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(status) if turned_away(&status) => {
                last = format!("{addr}: {status}");
                tally.retried.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                last = format!("{addr}: {status}");
                break;
            }
        }
    }
    tally.failed.fetch_add(1, Ordering::Relaxed);
    tally.errors.lock().unwrap().push(last);
}

/// A bidirectional stream through `addr`: [`STREAM_MESSAGES`] requests,
/// one every [`STREAM_PACE`], each echoed; returns the replies received
/// and whether the stream ended cleanly. `started` is sent once the first
/// reply is back (the stream is in flight at the edge).
async fn long_stream(addr: SocketAddr, started: mpsc::Sender<()>) -> Result<u64, String> {
    let mut echo = grpc_plaintext(addr, ECHO_HOST)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(4);
    let sender = tokio::spawn(async move {
        for i in 0..STREAM_MESSAGES {
            let msg = EchoRequest {
                text: format!("{i}"),
                ..Default::default()
            };
            if tx.send(msg).await.is_err() {
                return;
            }
            tokio::time::sleep(STREAM_PACE).await;
        }
    });
    let mut replies = echo
        .bidi(ReceiverStream::new(rx))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let mut got = 0;
    loop {
        match replies.message().await {
            Ok(Some(reply)) => {
                if reply.text != format!("{got}") {
                    return Err(format!("reply {got} was {:?}", reply.text));
                }
                got += 1;
                if got == 1 {
                    let _ = started.send(()).await;
                }
            }
            Ok(None) => break,
            Err(s) => return Err(format!("after {got} replies: {s}")),
        }
    }
    sender.await.map_err(|e| e.to_string())?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_edges_fails_no_call_and_lets_every_stream_finish() {
    let root = tempfile::tempdir().unwrap();
    let service = upstream::start(any()).await.unwrap();
    let cp = upstream::start(any()).await.unwrap();
    let dirs: Vec<PathBuf> = (1..=EDGES).map(|n| edge_dir(root.path(), n)).collect();
    let mut edges = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let config = edge_config(dir, i + 1, any(), cp.addr);
        edges.push(Process::start("tunnel-server", &config).await);
    }
    let tunnel_addrs: Vec<SocketAddr> = edges.iter().map(|e| e.addr("tunnels")).collect();

    let client_cfg = files::write_client(
        &dirs[0],
        &ClientFiles {
            writer: "tests/tests/rolling_restart.rs".into(),
            edge_address: tunnel_addrs[0],
            upstream: service.addr,
            admin_listen: None,
            egress_listen: any(),
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let others: Vec<String> = tunnel_addrs[1..]
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let text = std::fs::read_to_string(&client_cfg).unwrap().replace(
        "[edge]\n",
        &format!(
            "[edge]\naddresses = [{}]\nmax_edges = {EDGES}\n",
            others.join(", ")
        ),
    );
    std::fs::write(&client_cfg, text).unwrap();
    let mut client = Process::start("tunnel-client", &client_cfg).await;
    for edge in &edges {
        within(
            "the tunnel registers at every edge",
            edge.log.wait_for("tunnel registered"),
        )
        .await;
    }

    // The load: one call at a time, each started at the next edge in turn.
    let lb = Arc::new(Mutex::new(
        edges
            .iter()
            .map(|e| e.addr("plaintext"))
            .collect::<Vec<_>>(),
    ));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (lb, tally, stop) = (lb.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                balanced_call(&lb, n, &tally).await;
                n += 1;
                tokio::time::sleep(LOAD_PACE).await;
            }
        })
    };

    for i in 0..EDGES {
        let served_before = tally.served.load(Ordering::Relaxed);
        let plaintext = edges[i].addr("plaintext");
        let (started_tx, mut started_rx) = mpsc::channel(STREAMS);
        let streams: Vec<_> = (0..STREAMS)
            .map(|_| tokio::spawn(long_stream(plaintext, started_tx.clone())))
            .collect();
        for _ in 0..STREAMS {
            within("a long stream is under way", started_rx.recv()).await;
        }

        let stopping = Instant::now();
        edges[i].terminate();
        for stream in streams {
            let got = within("a stream on the draining edge ends", stream)
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("a stream on edge-{} failed: {e}", i + 1));
            assert_eq!(got, STREAM_MESSAGES, "every reply of the stream arrived");
        }
        let streams_done = stopping.elapsed();
        assert!(
            streams_done < GRACE,
            "the streams finished within the grace period ({streams_done:?})"
        );
        let status = edges[i].wait_exit().await;
        assert!(status.success(), "edge-{} exited {status}", i + 1);

        let config = edge_config(&dirs[i], i + 1, tunnel_addrs[i], cp.addr);
        edges[i] = Process::start("tunnel-server", &config).await;
        within(
            "the client joins the restarted edge",
            edges[i].log.wait_for("tunnel registered"),
        )
        .await;
        lb.lock().unwrap()[i] = edges[i].addr("plaintext");
        println!(
            "edge-{}: streams finished {streams_done:?} after SIGTERM; {} calls served meanwhile",
            i + 1,
            tally.served.load(Ordering::Relaxed) - served_before
        );
    }
    // Every edge serves again.
    for edge in &edges {
        let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
            .await
            .unwrap();
        within(
            "a call through each restarted edge",
            echo.unary(EchoRequest::default()),
        )
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let (served, retried, failed) = (
        tally.served.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    println!("rolling restart: {served} unary calls served, {retried} attempts sent to another edge, {failed} failed");
    assert_eq!(
        failed,
        0,
        "no unary call fails: {:?}",
        tally.errors.lock().unwrap()
    );
    assert!(served > 100, "the load ran throughout ({served} calls)");

    client.terminate();
    assert!(client.wait_exit().await.success());
    for edge in &mut edges {
        edge.terminate();
        assert!(edge.wait_exit().await.success());
    }
}
