//! The promise itself, not only its shape: no byte reaches a service before
//! the stream's open record is durable, at either end, in all four flows
//! (ingress HTTP, ingress raw TCP, egress HTTP, egress CONNECT). With an
//! audit writer held (`AuditLog::hold`, no sleeps), the stream waits and the
//! service has received nothing; released, the call arrives. And with a full
//! disk under either end's log, egress and raw TCP refuse like ingress HTTP
//! (fail closed). The two ends' open records are made durable at the same
//! time: the acceptor records while the opener's writer is held.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use certs::IdentityKind;
use http::Method;
use rustls_pki_types::ServerName;
use tether_tests::callers::{caller_tls, connect_via, empty, request, HttpCaller};
use tether_tests::small_fs::SmallFs;
use tether_tests::topology::{Options, Topology};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Edge,
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    IngressHttp,
    IngressTcp,
    EgressHttp,
    EgressConnect,
}

/// How many calls of `flow` its service has received.
fn reached(topo: &Topology, flow: Flow) -> u64 {
    match flow {
        Flow::IngressHttp => topo.upstream.observed.requests(),
        Flow::IngressTcp => topo.tcp_echo.connections.load(Ordering::SeqCst),
        Flow::EgressHttp => topo.cp_upstream.observed.requests(),
        Flow::EgressConnect => topo.cp_tcp_echo.connections.load(Ordering::SeqCst),
    }
}

/// Writes `data`, half-closes, reads to EOF; the bytes read.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: S, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async {
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
    };
    let reader = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    tokio::join!(writer, reader).1
}

/// What one call of a flow did: the HTTP status (200 for a TCP connection
/// whose bytes echoed), and the `tether-error` if any.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    tether_error: Option<String>,
}

/// Makes one call of `flow`.
async fn call(
    flow: Flow,
    plaintext: std::net::SocketAddr,
    egress: std::net::SocketAddr,
    tcp_ingress: std::net::SocketAddr,
    host: String,
    tls: Option<rustls::ClientConfig>,
) -> Outcome {
    let http = |addr, host: String| async move {
        let mut caller = HttpCaller::plaintext(addr, false).await.unwrap();
        let resp = caller
            .send(request(Method::GET, &host, "/hello", empty()).unwrap())
            .await
            .unwrap();
        let tether_error = resp
            .headers()
            .get("tether-error")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let status = resp.status().as_u16();
        let _ = tether_tests::upstream::collect(resp.into_body()).await;
        Outcome {
            status,
            tether_error,
        }
    };
    match flow {
        Flow::IngressHttp => http(plaintext, host).await,
        Flow::EgressHttp => http(egress, "cp-web".to_string()).await,
        Flow::IngressTcp => {
            let tcp = TcpStream::connect(tcp_ingress).await.unwrap();
            let tls = TlsConnector::from(Arc::new(tls.expect("a caller identity")))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let out = exchange(tls, b"ping").await;
            tcp_outcome(&out)
        }
        Flow::EgressConnect => {
            let (status, tcp) = connect_via(egress, "cp-tcp:5432").await.unwrap();
            if status != 200 {
                return Outcome {
                    status,
                    tether_error: None,
                };
            }
            let out = exchange(tcp, b"ping").await;
            tcp_outcome(&out)
        }
    }
}

/// A TCP call succeeded when its bytes came back; a refused one just ends.
fn tcp_outcome(out: &[u8]) -> Outcome {
    Outcome {
        status: if out.starts_with(b"ping") { 200 } else { 0 },
        tether_error: None,
    }
}

/// Starts one call of `flow` on its own task.
fn spawn_call(topo: &Topology, flow: Flow) -> tokio::task::JoinHandle<Outcome> {
    let tls = (flow == Flow::IngressTcp).then(|| {
        let dba = topo.pki.leaf(IdentityKind::Caller, "dba").unwrap();
        caller_tls(&dba, topo.pki.roots().unwrap(), &[]).unwrap()
    });
    tokio::spawn(call(
        flow,
        topo.plaintext_addr,
        topo.egress_addr.unwrap(),
        topo.tcp_ingress_addr,
        topo.host("web"),
        tls,
    ))
}

fn log_of(topo: &Topology, end: End) -> proxy::audit::AuditLog {
    match end {
        End::Edge => topo.edge_audit_log.clone(),
        End::Client => topo.client.as_ref().unwrap().audit.clone(),
    }
}

/// Releases `hold`: the held call of `flow` then succeeds and reaches its
/// service exactly once (`before` is what it had received until then).
async fn released_call_arrives_once(
    topo: Topology,
    flow: Flow,
    hold: proxy::audit::AuditHold,
    pending: tokio::task::JoinHandle<Outcome>,
    before: u64,
) {
    hold.release();
    let outcome = within("the call after release", pending).await.unwrap();
    assert_eq!(outcome.status, 200, "{flow:?}: {outcome:?}");
    assert_eq!(reached(&topo, flow), before + 1, "{flow:?} arrived once");
    topo.shutdown().await;
}

/// With `end`'s audit writer held, a call of `flow` waits and its service
/// receives nothing; released, the call arrives.
async fn audit_stall_blocks_forwarding(end: End, flow: Flow) {
    let topo = Topology::start().await.unwrap();
    let log = log_of(&topo, end);
    let before = reached(&topo, flow);
    let hold = log.hold();
    let pending = spawn_call(&topo, flow);
    within(
        "the stream's open record reaches the held writer",
        hold.stalled(),
    )
    .await;
    assert_eq!(
        reached(&topo, flow),
        before,
        "{flow:?} reached its service before the {end:?}'s open record was durable"
    );
    assert!(
        !pending.is_finished(),
        "{flow:?} finished while its audit record was held"
    );
    released_call_arrives_once(topo, flow, hold, pending, before).await;
}

#[tokio::test]
async fn edge_audit_stall_blocks_ingress_http() {
    audit_stall_blocks_forwarding(End::Edge, Flow::IngressHttp).await;
}

#[tokio::test]
async fn client_audit_stall_blocks_ingress_http() {
    audit_stall_blocks_forwarding(End::Client, Flow::IngressHttp).await;
}

#[tokio::test]
async fn edge_audit_stall_blocks_ingress_tcp() {
    audit_stall_blocks_forwarding(End::Edge, Flow::IngressTcp).await;
}

#[tokio::test]
async fn client_audit_stall_blocks_ingress_tcp() {
    audit_stall_blocks_forwarding(End::Client, Flow::IngressTcp).await;
}

#[tokio::test]
async fn client_audit_stall_blocks_egress_http() {
    audit_stall_blocks_forwarding(End::Client, Flow::EgressHttp).await;
}

#[tokio::test]
async fn edge_audit_stall_blocks_egress_http() {
    audit_stall_blocks_forwarding(End::Edge, Flow::EgressHttp).await;
}

#[tokio::test]
async fn client_audit_stall_blocks_egress_connect() {
    audit_stall_blocks_forwarding(End::Client, Flow::EgressConnect).await;
}

#[tokio::test]
async fn edge_audit_stall_blocks_egress_connect() {
    audit_stall_blocks_forwarding(End::Edge, Flow::EgressConnect).await;
}

/// The far end decides and makes its own open record durable while the
/// opener's is still held (the two fsyncs overlap: one disk flush of
/// latency, not two), and still reaches its service only once both are.
async fn acceptor_records_while_the_opener_waits(opener: End, flow: Flow) {
    let topo = Topology::start().await.unwrap();
    let acceptor = match opener {
        End::Edge => End::Client,
        End::Client => End::Edge,
    };
    let (held_log, other_log) = (log_of(&topo, opener), log_of(&topo, acceptor));
    let before = reached(&topo, flow);
    let written = other_log.stats().records_written;
    let hold = held_log.hold();
    let pending = spawn_call(&topo, flow);
    within(
        "the opener's open record reaches its held writer",
        hold.stalled(),
    )
    .await;
    within(
        "the acceptor's open record, written while the opener's is held",
        other_log.wait_written(written + 1),
    )
    .await;
    assert_eq!(
        reached(&topo, flow),
        before,
        "{flow:?} reached its service before the {opener:?}'s open record was durable"
    );
    assert!(!pending.is_finished(), "{flow:?} finished while held");
    released_call_arrives_once(topo, flow, hold, pending, before).await;
}

#[tokio::test]
async fn the_client_records_while_the_edge_opener_waits_ingress_http() {
    acceptor_records_while_the_opener_waits(End::Edge, Flow::IngressHttp).await;
}

#[tokio::test]
async fn the_client_records_while_the_edge_opener_waits_ingress_tcp() {
    acceptor_records_while_the_opener_waits(End::Edge, Flow::IngressTcp).await;
}

#[tokio::test]
async fn the_edge_records_while_the_client_opener_waits_egress_http() {
    acceptor_records_while_the_opener_waits(End::Client, Flow::EgressHttp).await;
}

#[tokio::test]
async fn the_edge_records_while_the_client_opener_waits_egress_connect() {
    acceptor_records_while_the_opener_waits(End::Client, Flow::EgressConnect).await;
}

/// With `end`'s audit log on a full disk, calls of `flow` are refused and
/// nothing reaches the service once a write has failed; with space back,
/// service resumes by itself.
async fn fails_closed_on_a_full_disk(end: End, flow: Flow) {
    let fs = SmallFs::mount().expect("a tmpfs to fill");
    let mut opts = Options::default();
    match end {
        End::Edge => opts.edge_audit_dir = Some(fs.path().to_path_buf()),
        End::Client => opts.client_audit_dir = Some(fs.path().to_path_buf()),
    }
    let topo = Topology::start_with(opts).await.unwrap();
    let first = within("a call with room on disk", spawn_call(&topo, flow))
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    fs.fill().unwrap();
    // The log's last page may have room for a few records. A write that
    // does not fit fails and is truncated back, which can leave room for a
    // smaller one: an append that fits succeeds, by design, and its call is
    // served with its record written. So the disk counts as reported full
    // after three refusals in a row; every refused call must have reached
    // nothing.
    let mut refused = 0;
    for _ in 0..500 {
        let served_before = reached(&topo, flow);
        let outcome = within("a call on a full disk", spawn_call(&topo, flow))
            .await
            .unwrap();
        if outcome.status == 200 {
            refused = 0;
            continue;
        }
        assert_eq!(
            reached(&topo, flow),
            served_before,
            "a refused {flow:?} reached its service"
        );
        if matches!(flow, Flow::IngressHttp | Flow::EgressHttp) {
            assert_eq!(outcome.status, 503, "{outcome:?}");
            assert_eq!(outcome.tether_error.as_deref(), Some("unavailable"));
        }
        refused += 1;
        if refused == 3 {
            break;
        }
    }
    assert_eq!(
        refused, 3,
        "the {end:?}'s audit log never reported the full disk"
    );
    assert!(!log_of(&topo, end).healthy());
    fs.free().unwrap();
    let again = within("a call with space back", spawn_call(&topo, flow))
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    topo.shutdown().await;
}

#[tokio::test]
async fn a_full_disk_at_the_client_refuses_egress_http() {
    fails_closed_on_a_full_disk(End::Client, Flow::EgressHttp).await;
}

#[tokio::test]
async fn a_full_disk_at_the_edge_refuses_egress_http() {
    fails_closed_on_a_full_disk(End::Edge, Flow::EgressHttp).await;
}

#[tokio::test]
async fn a_full_disk_at_the_client_refuses_egress_connect() {
    fails_closed_on_a_full_disk(End::Client, Flow::EgressConnect).await;
}

#[tokio::test]
async fn a_full_disk_at_the_edge_refuses_ingress_tcp() {
    fails_closed_on_a_full_disk(End::Edge, Flow::IngressTcp).await;
}

#[tokio::test]
async fn a_full_disk_at_the_client_refuses_ingress_tcp() {
    fails_closed_on_a_full_disk(End::Client, Flow::IngressTcp).await;
}
