//! Live credentials and revocation, end to end in process:
//! - the edge's certificate is rotated on disk: new handshakes present the
//!   new one, a stream open across the reload carries on, a bad file is
//!   refused and the last good certificate stays;
//! - the client's certificate is rotated: its next connection uses it;
//! - a caller revoked by identity loses its connection and its call in
//!   flight within a second of the policy reload, is refused afterwards,
//!   and both are audited, while other callers carry on;
//! - a tunnel revoked by certificate serial is closed and stays out;
//! - a tunnel connection closes when the client's certificate expires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::{IdentityKind, IssuedCert, LeafSpec};
use proxy::audit::Event;
use proxy::identity::{format_serial, leaf_facts};
use proxy::policy::{parse_policy, Scope};
use rustls::pki_types::{CertificateDer, ServerName};
use tether_tests::audit_trail::records;
use tether_tests::callers::{caller_tls, grpc_tls};
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{allow_all_text, Options, Topology, TRUST_DOMAIN, TUNNEL};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Polls `cond` (a counter another task moves) until it holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn serial_of(cert: &IssuedCert) -> Vec<u8> {
    leaf_facts(&CertificateDer::from(cert.cert_der.clone()))
        .unwrap()
        .serial
}

/// The serial of the certificate the edge presents on a new ingress
/// handshake.
async fn presented_serial(topo: &Topology, caller: &IssuedCert) -> Vec<u8> {
    let tls = caller_tls(caller, topo.pki.roots().unwrap(), &[b"h2"]).unwrap();
    let tcp = TcpStream::connect(topo.ingress_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("the edge's certificate verifies");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    leaf_facts(&leaf).unwrap().serial
}

fn caller(topo: &Topology, name: &str) -> IssuedCert {
    topo.pki.leaf(IdentityKind::Caller, name).unwrap()
}

async fn echo(
    topo: &Topology,
    cert: &IssuedCert,
) -> tether_tests::pb::echo_client::EchoClient<tonic::transport::Channel> {
    let tls = caller_tls(cert, topo.pki.roots().unwrap(), &[b"h2"]).unwrap();
    grpc_tls(topo.ingress_addr, &topo.host("echo"), tls)
        .await
        .unwrap()
}

fn edge_policy_with(revoked: &str) -> proxy::policy::Policy {
    parse_policy(
        &format!("{}\n[revoked]\n{revoked}\n", allow_all_text()),
        Scope::Edge,
    )
    .unwrap()
}

#[tokio::test]
async fn the_edge_reloads_its_certificate_without_dropping_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::start_with(Options {
        edge_tls_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = caller(&topo, "alice");
    assert_eq!(
        presented_serial(&topo, &alice).await,
        serial_of(&topo.edge_cert)
    );

    // A bidi stream open across the reload.
    let mut client = echo(&topo, &alice).await;
    let (tx, rx) = mpsc::channel(4);
    let mut replies = within("bidi head", client.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    let mut roundtrip = async |text: &str| {
        tx.send(EchoRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = within("bidi reply", replies.message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.text, text);
    };
    roundtrip("before").await;
    let tunnel_conn = topo.registry.connections(TUNNEL)[0].conn.stable_id();

    let rotated = topo.pki.leaf(IdentityKind::Edge, "edge-1").unwrap();
    topo.pki.write_tls_files(dir.path(), &rotated).unwrap();
    let creds = topo.edge.as_ref().unwrap().credentials.clone();
    until("the edge reloads the new files", || creds.reloads() == 1).await;
    assert_eq!(presented_serial(&topo, &alice).await, serial_of(&rotated));
    roundtrip("after").await;
    assert_eq!(
        topo.registry.connections(TUNNEL)[0].conn.stable_id(),
        tunnel_conn,
        "the tunnel connection survived the reload"
    );

    // A garbled certificate is refused; the rotated one stays in force.
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    until("the edge refuses the garbled file", || {
        creds.failures() == 1
    })
    .await;
    assert_eq!(presented_serial(&topo, &alice).await, serial_of(&rotated));
    roundtrip("still").await;
    let mut fresh = echo(&topo, &alice).await;
    let call = fresh.unary(EchoRequest {
        text: "new caller connection".into(),
        ..Default::default()
    });
    within("a call on a new connection", call).await.unwrap();
    topo.shutdown().await;
}

#[tokio::test]
async fn the_client_reloads_its_certificate_for_its_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::start_with(Options {
        start_client: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let first = topo.pki.leaf(IdentityKind::Tunnel, TUNNEL).unwrap();
    let files = topo.pki.write_tls_files(dir.path(), &first).unwrap();
    let mut cfg = topo.client_config(TUNNEL, &Options::default()).unwrap();
    cfg.identity = proxy::tls::load_identity(&files.cert, &files.key).unwrap();
    cfg.tls_files = Some(files);
    cfg.audit.path = topo.client_audit.clone();
    let mut client = tunnel_client::build(cfg).unwrap();
    within("connected", client.connected()).await;
    let serial = |topo: &Topology| {
        topo.registry
            .connections(TUNNEL)
            .first()
            .and_then(|c| proxy::tls::quic_peer_facts(&c.conn))
            .map(|f| f.serial)
    };
    within("registered", topo.registry.wait_live(TUNNEL)).await;
    assert_eq!(serial(&topo), Some(serial_of(&first)));

    let second = topo.pki.leaf(IdentityKind::Tunnel, TUNNEL).unwrap();
    topo.pki.write_tls_files(dir.path(), &second).unwrap();
    until("the client reloads", || client.credentials.reloads() == 1).await;
    // The live connection keeps the certificate it was made with.
    assert_eq!(serial(&topo), Some(serial_of(&first)));
    topo.registry.connections(TUNNEL)[0]
        .conn
        .close(0u32.into(), b"test: make the client redial");
    within(
        "the client reconnects with its new certificate",
        topo.registry.wait_connections(TUNNEL, |c| {
            c.iter().any(|c| {
                proxy::tls::quic_peer_facts(&c.conn).map(|f| f.serial) == Some(serial_of(&second))
            })
        }),
    )
    .await;
    client.shutdown(Duration::ZERO).await;
    topo.shutdown().await;
}

#[tokio::test]
async fn a_revoked_caller_loses_its_connection_and_calls_within_a_second() {
    let topo = Topology::start().await.unwrap();
    let (mallory, alice) = (caller(&topo, "mallory"), caller(&topo, "alice"));
    let mallory_id = format!("spiffe://{TRUST_DOMAIN}/caller/mallory");
    let mut m = echo(&topo, &mallory).await;
    let mut a = echo(&topo, &alice).await;
    let in_flight = tokio::spawn(async move {
        m.unary(EchoRequest {
            text: "hang".into(),
            hang: true,
            ..Default::default()
        })
        .await
    });
    let obs = topo.upstream.observed.clone();
    within("the service is working on the call", obs.wait_hanging(1)).await;

    let revoked_at = Instant::now();
    topo.edge_policy.swap(edge_policy_with(&format!(
        "identities = [\"{mallory_id}\"]"
    )));
    let status = within("the call in flight ends", in_flight)
        .await
        .unwrap()
        .expect_err("a revoked caller's call fails");
    within("the service sees the cancellation", obs.wait_cancelled(1)).await;
    let took = revoked_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "revocation took {took:?} (at most 1 s): {status}"
    );

    // Other callers carry on; mallory cannot come back.
    let ok = a.unary(EchoRequest {
        text: "alice".into(),
        ..Default::default()
    });
    within("alice's call", ok).await.unwrap();
    let again = within("mallory again", async {
        echo(&topo, &mallory)
            .await
            .unary(EchoRequest::default())
            .await
    })
    .await;
    assert!(again.is_err(), "a revoked caller is refused: {again:?}");

    topo.edge_audit_log.sync().await.unwrap();
    let revokes: Vec<_> = records(&topo.edge_audit)
        .into_iter()
        .filter(|r| r.event == Event::Revoke && r.caller == mallory_id)
        .collect();
    let action = |r: &proxy::audit::AuditRecord| r.labels.as_ref().unwrap()["action"].clone();
    assert_eq!(action(&revokes[0]), "closed", "{revokes:?}");
    assert!(
        revokes.iter().skip(1).any(|r| action(r) == "refused"),
        "{revokes:?}"
    );
    assert_eq!(revokes[0].rule.as_deref(), Some("revoked"));
    assert_eq!(
        revokes[0].reason.as_deref(),
        Some(format!("identity {mallory_id} is revoked").as_str())
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn a_tunnel_revoked_by_certificate_serial_is_closed_and_stays_out() {
    let topo = Topology::start().await.unwrap();
    let conn = topo.registry.connections(TUNNEL)[0].conn.clone();
    let serial = proxy::tls::quic_peer_facts(&conn).unwrap().serial;
    let revoked_at = Instant::now();
    topo.edge_policy.swap(edge_policy_with(&format!(
        "serials = [\"{}\"]",
        format_serial(&serial).to_uppercase()
    )));
    within(
        "the tunnel goes offline",
        topo.registry.wait_offline(TUNNEL),
    )
    .await;
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    let client = topo.client.as_ref().unwrap();
    until("the client is told why", || {
        client.pool_status().slots.iter().any(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("revoked"))
        })
    })
    .await;
    // The client redials and is refused each time: nothing registers.
    assert!(topo.registry.connections(TUNNEL).is_empty());
    topo.edge_audit_log.sync().await.unwrap();
    let tunnel_id = format!("spiffe://{TRUST_DOMAIN}/tunnel/{TUNNEL}");
    assert!(records(&topo.edge_audit)
        .iter()
        .any(|r| r.event == Event::Revoke
            && r.caller == tunnel_id
            && r.tunnel == TUNNEL
            && r.labels.as_ref().unwrap()["connection"] == "tunnel"));
    topo.shutdown().await;
}

#[tokio::test]
async fn a_tunnel_connection_closes_when_the_client_certificate_expires() {
    let topo = Topology::start_with(Options {
        start_client: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut spec = LeafSpec::new(IdentityKind::Tunnel, TUNNEL);
    spec.lifetime = Duration::from_secs(3);
    let short = topo.pki.ca.issue(&spec).unwrap();
    let mut cfg = topo.client_config(TUNNEL, &Options::default()).unwrap();
    cfg.identity = tether_tests::topology::tls_identity(&short).unwrap();
    cfg.audit.path = topo.client_audit.clone();
    let mut client = tunnel_client::build(cfg).unwrap();
    within("connected", client.connected()).await;
    within("registered", topo.registry.wait_live(TUNNEL)).await;
    within(
        "the edge closes the connection at not_after",
        topo.registry.wait_offline(TUNNEL),
    )
    .await;
    until("the client learns its certificate expired", || {
        client.pool_status().slots.iter().any(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("expired"))
        })
    })
    .await;
    client.shutdown(Duration::ZERO).await;
    topo.shutdown().await;
}
