//! The edge retries a call its connection refused as `draining` on another
//! connection of the tunnel when nothing had reached the service, and
//! never replays one it could not hold whole.
//!
//! A second connection of the demo tunnel is an emulated client that
//! registers and then refuses every stream with REFUSE `draining` without
//! sending GOAWAY: the window in which a real client has begun to drain
//! and the edge has not heard yet, held open. Being the newest connection
//! with nothing in flight, it is the one the edge routes the next call to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use certs::IdentityKind;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use proxy::audit::Event;
use proxy::forward::FrameReader;
use proxy::identity::IdentityRule;
use proxy::wire::{self, Frame, Hello, Refuse, RefuseCode, ServiceOffer, ALPN};
use proxy::Limits;
use tether_tests::audit_trail::{by_stream, records};
use tether_tests::callers::{grpc_plaintext, request_h2, HttpCaller, ReqBody};
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{tls_identity, Topology, TRUST_DOMAIN, TUNNEL};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// An emulated connection of the demo tunnel that refuses every stream
/// as draining.
struct Refuser {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    streams: Arc<AtomicU64>,
    opened: Arc<Notify>,
}

async fn refuser(topo: &Topology) -> Refuser {
    let before = topo.registry.connections(TUNNEL).len();
    let cert = topo.pki.leaf(IdentityKind::Tunnel, TUNNEL).unwrap();
    let tls = proxy::tls::client_config(
        &tls_identity(&cert).unwrap(),
        topo.pki.roots().unwrap(),
        IdentityRule {
            trust_domain: TRUST_DOMAIN.into(),
            kind: Some("edge"),
        },
        &[ALPN],
    )
    .unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Limits::default().transport_config());
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = within(
        "handshake",
        endpoint
            .connect_with(cfg, topo.tunnel_addr, "localhost")
            .unwrap(),
    )
    .await
    .unwrap();
    let wire_limits = Limits::default().wire;
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let hello = Frame::Hello(Hello {
        version: wire::VERSION,
        services: ["echo", "web"]
            .iter()
            .map(|s| ServiceOffer {
                name: s.to_string(),
            })
            .collect(),
        labels: Vec::new(),
    });
    let mut buf = BytesMut::new();
    wire::encode(&hello, &wire_limits, &mut buf).unwrap();
    send.write_all(&buf).await.unwrap();
    let mut control = FrameReader::new(recv, wire_limits);
    assert!(matches!(
        within("WELCOME", control.next()).await,
        Ok(Some(Frame::Welcome(_)))
    ));
    let (streams, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
    let (c, n, s) = (conn.clone(), opened.clone(), streams.clone());
    tokio::spawn(async move {
        // The control stream stays open while the connection lives.
        let _control = (send, control);
        while let Ok((mut send, recv)) = c.accept_bi().await {
            let mut reader = FrameReader::new(recv, wire_limits);
            let Ok(Some(Frame::Open(_))) = reader.next().await else {
                continue;
            };
            s.fetch_add(1, Ordering::SeqCst);
            n.notify_waiters();
            let refuse = Frame::Refuse(Refuse {
                code: RefuseCode::Draining,
                message: "emulated client is draining".into(),
            });
            let mut buf = BytesMut::new();
            wire::encode(&refuse, &wire_limits, &mut buf).unwrap();
            let _ = send.write_all(&buf).await;
            let _ = send.finish();
        }
    });
    within(
        "the emulated connection registers",
        topo.registry.wait_connections(TUNNEL, |c| c.len() > before),
    )
    .await;
    Refuser {
        _endpoint: endpoint,
        conn,
        streams,
        opened,
    }
}

#[tokio::test]
async fn a_call_refused_as_draining_is_retried_on_another_connection() {
    let topo = Topology::start().await.unwrap();
    let draining = refuser(&topo).await;
    let mut echo = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    for i in 0..20 {
        let reply = within(
            "a unary call",
            echo.unary(EchoRequest {
                text: format!("call {i}"),
                ..Default::default()
            }),
        )
        .await
        .unwrap_or_else(|s| panic!("call {i} failed: {s}"));
        assert_eq!(reply.into_inner().text, format!("call {i}"));
    }
    assert_eq!(
        draining.streams.load(Ordering::SeqCst),
        1,
        "the first call went to the refusing connection, which is avoided after it refused"
    );
    assert_eq!(
        topo.upstream.observed.requests(),
        20,
        "each call reached the service exactly once"
    );
    // One audit trail per call at the edge, each closed with success.
    topo.edge_audit_log.sync().await.unwrap();
    let edge = records(&topo.edge_audit);
    let streams = by_stream(&edge);
    assert_eq!(streams.len(), 20);
    assert!(streams.values().all(|(open, close)| open.decision
        == Some(proxy::audit::AuditDecision::Allow)
        && close.grpc_status == Some(0)));
    assert!(edge.iter().all(|r| r.event != Event::Revoke));
    draining.conn.close(0u32.into(), b"done");
    topo.shutdown().await;
}

#[tokio::test]
async fn a_call_whose_body_is_still_arriving_is_not_replayed() {
    let topo = Topology::start().await.unwrap();
    let draining = refuser(&topo).await;
    type Chunk = Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let body: ReqBody =
        http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))
            .boxed_unsync();
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, true)
        .await
        .unwrap();
    let req = request_h2(Method::POST, &topo.host("web"), "/echo", body).unwrap();
    let opened = draining.opened.notified();
    tokio::pin!(opened);
    opened.as_mut().enable();
    let call = tokio::spawn(async move { caller.send(req).await });
    within("the refusing connection gets the call", opened).await;
    // The body arrives only now: the edge could not have held it whole.
    let _ = tx
        .send(Ok(http_body::Frame::data(Bytes::from_static(b"late"))))
        .await;
    drop(tx);
    let resp = within("the answer", call).await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["tether-error"], "draining");
    assert_eq!(draining.streams.load(Ordering::SeqCst), 1);
    assert_eq!(
        topo.upstream.observed.requests(),
        0,
        "not replayed to the other connection"
    );
    draining.conn.close(0u32.into(), b"done");
    topo.shutdown().await;
}
