//! Raw TCP both ways: an mTLS TCP listener at the edge reaching a tunnel's
//! TCP service, and CONNECT through the client's egress proxy to an edge TCP
//! upstream; half-close carried each way, resets propagated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certs::IdentityKind;
use rustls_pki_types::ServerName;
use tether_tests::callers::{anonymous_tls, caller_tls};
use tether_tests::topology::Topology;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Writes `data`, half-closes, and reads until EOF, concurrently.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    data: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async move {
        wr.write_all(&data).await?;
        wr.shutdown().await?;
        Ok::<_, std::io::Error>(wr)
    };
    let reader = async move {
        let mut out = Vec::new();
        rd.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let (w, r) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("exchange timed out");
    w?;
    r
}

async fn tls_to(
    addr: std::net::SocketAddr,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn ingress_tcp_with_mtls_echoes_and_carries_half_close() {
    let topo = Topology::start().await.unwrap();
    let caller = topo.pki.leaf(IdentityKind::Caller, "dba").unwrap();
    let cfg = caller_tls(&caller, topo.pki.roots().unwrap(), &[]).unwrap();
    let tls = tls_to(topo.tcp_ingress_addr, cfg).await.unwrap();
    let data = pattern(1 << 20);
    let out = exchange(tls, data.clone()).await.unwrap();
    let (echo, tail) = out.split_at(data.len());
    assert_eq!(echo, &data[..], "bytes came back intact");
    assert_eq!(
        tail,
        format!("EOF after {} bytes\n", data.len()).as_bytes(),
        "the service saw our FIN and could still answer"
    );
    assert_eq!(
        topo.tcp_echo
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn ingress_tcp_without_client_certificate_is_refused() {
    let topo = Topology::start().await.unwrap();
    let cfg = anonymous_tls(topo.pki.roots().unwrap(), &[]).unwrap();
    let refused = match tls_to(topo.tcp_ingress_addr, cfg).await {
        Err(_) => true,
        // TLS 1.3: the client may finish before the server's alert arrives.
        Ok(tls) => exchange(tls, b"hello".to_vec())
            .await
            .map(|o| o.is_empty())
            .unwrap_or(true),
    };
    assert!(refused);
    assert_eq!(
        topo.tcp_echo
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the service"
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn a_service_reset_reaches_the_tcp_caller() {
    let topo = Topology::start().await.unwrap();
    let caller = topo.pki.leaf(IdentityKind::Caller, "dba").unwrap();
    let cfg = caller_tls(&caller, topo.pki.roots().unwrap(), &[]).unwrap();
    let mut tls = tls_to(topo.tcp_ingress_addr, cfg).await.unwrap();
    tls.write_all(b"RST!").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        r.is_err(),
        "a reset must not look like a clean end (got {} bytes, clean EOF)",
        buf.len()
    );
    topo.shutdown().await;
}

async fn connect_via(egress: std::net::SocketAddr, target: &str) -> (u16, TcpStream) {
    tokio::time::timeout(
        Duration::from_secs(10),
        tether_tests::callers::connect_via(egress, target),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn egress_connect_reaches_a_tcp_upstream_with_half_close() {
    let topo = Topology::start().await.unwrap();
    let (status, tcp) = connect_via(topo.egress_addr.unwrap(), "cp-tcp:5432").await;
    assert_eq!(status, 200);
    let data = pattern(300_000);
    let out = exchange(tcp, data.clone()).await.unwrap();
    let (echo, tail) = out.split_at(data.len());
    assert_eq!(echo, &data[..]);
    assert_eq!(tail, format!("EOF after {} bytes\n", data.len()).as_bytes());
    assert_eq!(
        topo.cp_tcp_echo
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Unknown upstreams and HTTP upstreams are refused before any byte flows.
    let (status, _) = connect_via(topo.egress_addr.unwrap(), "nowhere:22").await;
    assert_eq!(status, 404);
    let (status, _) = connect_via(topo.egress_addr.unwrap(), "cp-web:80").await;
    assert_eq!(status, 400);
    assert_eq!(
        topo.cp_tcp_echo
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn a_caller_reset_reaches_the_service() {
    let topo = Topology::start().await.unwrap();
    let (status, mut tcp) = connect_via(topo.egress_addr.unwrap(), "cp-tcp:5432").await;
    assert_eq!(status, 200);
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    tcp.set_zero_linger().unwrap();
    drop(tcp);
    tokio::time::timeout(Duration::from_secs(10), topo.cp_tcp_echo.wait_resets(1))
        .await
        .expect("the service never saw the caller's reset");
    topo.shutdown().await;
}

#[tokio::test]
async fn tcp_connections_are_decided_and_audited() {
    use proxy::policy::{parse_policy, Scope};
    let edge = r#"
[[rule]]
id = "dba-db"
effect = "allow"
callers = ["spiffe://tether.local/caller/dba"]
services = ["tcp-echo"]
methods = ["CONNECT"]
"#;
    let topo = Topology::start_with(tether_tests::topology::Options {
        edge_policy: parse_policy(edge, Scope::Edge).unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let roots = topo.pki.roots().unwrap();
    // Denied: nothing reaches the service, the connection just ends.
    let intruder = topo.pki.leaf(IdentityKind::Caller, "intruder").unwrap();
    let tls = tls_to(
        topo.tcp_ingress_addr,
        caller_tls(&intruder, roots.clone(), &[]).unwrap(),
    )
    .await
    .unwrap();
    let out = exchange(tls, b"let me in".to_vec())
        .await
        .unwrap_or_default();
    assert!(out.is_empty());
    assert_eq!(
        topo.tcp_echo
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // Allowed.
    let dba = topo.pki.leaf(IdentityKind::Caller, "dba").unwrap();
    let tls = tls_to(topo.tcp_ingress_addr, caller_tls(&dba, roots, &[]).unwrap())
        .await
        .unwrap();
    let out = exchange(tls, b"select 1".to_vec()).await.unwrap();
    assert!(out.starts_with(b"select 1"));
    // Both audited at the edge, open and close each.
    tokio::time::timeout(Duration::from_secs(10), topo.edge_audit_log.wait_written(4))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&topo.edge_audit).unwrap();
    let records: Vec<proxy::audit::AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deny: Vec<_> = records
        .iter()
        .filter(|r| r.caller.ends_with("/intruder"))
        .collect();
    assert_eq!(deny.len(), 2);
    assert_eq!(deny[0].decision.map(|d| d.as_str()), Some("deny"));
    let allow: Vec<_> = records
        .iter()
        .filter(|r| r.caller.ends_with("/dba"))
        .collect();
    assert_eq!(allow.len(), 2);
    assert_eq!(
        (
            allow[0].decision.map(|d| d.as_str()),
            allow[0].rule.as_deref()
        ),
        (Some("allow"), Some("dba-db"))
    );
    assert_eq!(allow[1].bytes_in, Some(8));
    assert!(allow[1].bytes_out.unwrap() >= 8);
    assert!(allow
        .iter()
        .all(|r| r.method == "CONNECT" && r.service == "tcp-echo"));
    topo.shutdown().await;
}
