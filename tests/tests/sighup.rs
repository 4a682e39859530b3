//! Live credentials as an operator rotates them on a host: real binaries
//! whose certificate files are replaced in place, then SIGHUP. The edge
//! presents the new certificate on its next handshake; the client reloads
//! too, and the tunnel connection that is up is untouched (one
//! registration, calls still served). Neither process exits on SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use certs::{Ca, IdentityKind, IssuedCert, LeafSpec};
use proxy::audit::Durability;
use proxy::identity::leaf_facts;
use rustls::pki_types::{CertificateDer, ServerName};
use tether_tests::callers::{caller_tls, grpc_plaintext};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies, EDGE_CERT, TUNNEL_CERT};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Process, PATIENCE};
use tether_tests::upstream;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const ECHO_HOST: &str = "echo.demo.tunnel.local";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn hangup(process: &Process) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(process.pid()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
}

/// Waits until the process logs a reload that SIGHUP triggered (a file
/// poll may reload the same files first; the SIGHUP reload follows).
async fn reloaded_by_sighup(process: &Process) {
    process
        .log
        .wait_until("a reload triggered by SIGHUP", |lines| {
            lines
                .iter()
                .any(|l| l.contains("TLS credentials reloaded") && l.contains("SIGHUP"))
        })
        .await;
}

fn serial(cert: &IssuedCert) -> Vec<u8> {
    leaf_facts(&CertificateDer::from(cert.cert_der.clone()))
        .unwrap()
        .serial
}

async fn presented_serial(ingress: SocketAddr, dir: &Path, caller: &IssuedCert) -> Vec<u8> {
    let roots = proxy::tls::load_trust_bundle(&dir.join(files::CA_CERT)).unwrap();
    let tls = caller_tls(caller, roots, &[b"h2"]).unwrap();
    let tcp = TcpStream::connect(ingress).await.unwrap();
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the edge's certificate verifies");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    leaf_facts(&leaf).unwrap().serial
}

async fn call(plaintext: SocketAddr) {
    let mut echo = grpc_plaintext(plaintext, ECHO_HOST).await.unwrap();
    tokio::time::timeout(PATIENCE, echo.unary(EchoRequest::default()))
        .await
        .expect("the call is answered")
        .unwrap();
}

#[tokio::test]
async fn sighup_reloads_rotated_certificates_without_dropping_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    files::ensure_dev_pki(d).unwrap();
    let service = upstream::start(any()).await.unwrap();
    let edge_cfg = files::write_edge(
        d,
        &EdgeFiles {
            writer: "tests/tests/sighup.rs".into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: None,
            cp_upstream: service.addr,
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let mut edge = Process::start("tunnel-server", &edge_cfg).await;
    let client_cfg = files::write_client(
        d,
        &ClientFiles {
            writer: "tests/tests/sighup.rs".into(),
            edge_address: edge.addr("tunnels"),
            upstream: service.addr,
            admin_listen: None,
            egress_listen: any(),
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let mut client = Process::start("tunnel-client", &client_cfg).await;
    edge.log.wait_for("tunnel registered").await;
    call(edge.addr("plaintext")).await;

    let ca = Ca::load_dir(d).unwrap();
    let ops = ca
        .issue(&LeafSpec::new(IdentityKind::Caller, "ops"))
        .unwrap();
    let ingress = edge.addr("ingress");
    let before = presented_serial(ingress, d, &ops).await;

    // Rotate both ends' certificates in place, as a renewal job does.
    let edge_cert = ca
        .issue(&LeafSpec::new(IdentityKind::Edge, "edge-1"))
        .unwrap();
    edge_cert.write_files(d, EDGE_CERT, true).unwrap();
    let tunnel_cert = ca
        .issue(&LeafSpec::new(IdentityKind::Tunnel, "demo"))
        .unwrap();
    tunnel_cert.write_files(d, TUNNEL_CERT, true).unwrap();
    assert_ne!(serial(&edge_cert), before);

    hangup(&edge);
    hangup(&client);
    reloaded_by_sighup(&edge).await;
    reloaded_by_sighup(&client).await;

    assert_eq!(
        presented_serial(ingress, d, &ops).await,
        serial(&edge_cert),
        "the edge presents the new certificate on a new handshake"
    );
    // The tunnel that was up carries calls, on its one connection.
    call(edge.addr("plaintext")).await;
    let registrations = edge.log.count("tunnel registered");
    assert_eq!(registrations, 1, "the tunnel connection was not replaced");

    client.terminate();
    assert!(
        client.wait_exit().await.success(),
        "the client survived SIGHUP"
    );
    edge.terminate();
    assert!(edge.wait_exit().await.success(), "the edge survived SIGHUP");
}
