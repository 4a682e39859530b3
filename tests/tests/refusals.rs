//! Bad input gets a clear refusal and nothing else: rogue tunnel clients on
//! the edge's QUIC listener (bad certificates, wrong ALPN, broken or abusive
//! protocol), callers without an acceptable certificate on the mTLS ingress,
//! and a plaintext listener configured off loopback.
//!
//! Every case checks three things: the refusal is specific (the TLS alert or
//! close code and reason, the HTTP status and `tether-error`, the gRPC code),
//! nothing reached the upstream, and the demo tunnel still serves afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use certs::{Ca, IdentityKind, IssuedCert, LeafSpec};
use http::Method;
use proxy::forward::{FrameReader, StreamError};
use proxy::wire::{self, codes, varint, Frame, FrameType, Hello, RefuseCode, ServiceOffer};
use proxy::wire::{WireLimits, ALPN};
use quinn::{ConnectionError, TransportErrorCode, VarInt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::AlertDescription;
use tether_tests::callers::{
    anonymous_tls, caller_tls, empty, grpc_plaintext, grpc_tls, request, HttpCaller,
};
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{Pki, Topology, DOMAIN, TUNNEL};
use tether_tests::upstream::collect;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tonic::Code;
use tunnel_server::registry::Lookup;

/// Upper bound on every wait: a regression fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

/// The name rogue tunnel certificates carry.
const ROGUE: &str = "rogue";

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// The demo tunnel still serves a normal gRPC call, and that call is the only
/// request the upstream sees from here: nothing else was forwarded.
async fn demo_still_works(topo: &Topology, upstream_before: u64) {
    assert_eq!(
        topo.upstream.observed.requests(),
        upstream_before,
        "nothing may reach the upstream during a refusal"
    );
    assert!(
        matches!(topo.registry.lookup(TUNNEL), Lookup::Live(_)),
        "the demo tunnel must stay registered"
    );
    let mut client = within(
        "a gRPC connection to the plaintext ingress",
        grpc_plaintext(topo.plaintext_addr, &topo.host("echo")),
    )
    .await
    .expect("connect to the plaintext ingress");
    let reply = within(
        "a gRPC call through the demo tunnel",
        client.unary(EchoRequest {
            text: "still here".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("the demo tunnel still serves")
    .into_inner();
    assert_eq!(reply.text, "still here");
    assert!(
        reply
            .caller
            .contains("By=spiffe://tether.local/tunnel/demo"),
        "{:?}",
        reply.caller
    );
    assert_eq!(topo.upstream.observed.requests(), upstream_before + 1);
}

/// `name` never registered: the registry has not even heard of it (a
/// registration would have made it known for good), and the demo tunnel is
/// the only live one.
fn never_registered(topo: &Topology, name: &str) {
    assert!(
        matches!(topo.registry.lookup(name), Lookup::Unknown),
        "'{name}' must never have registered, registry says {:?}",
        topo.registry.lookup(name)
    );
    assert_eq!(topo.registry.live_tunnels(), vec![TUNNEL.to_string()]);
}

/// The first `rustls::Error` in an error chain, looking inside `io::Error`s
/// (whose `source()` skips the error they wrap).
fn rustls_error(err: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r.clone());
            }
        }
        cur = e.source();
    }
    None
}

// ---------------------------------------------------------------------------
// Rogue QUIC peers
// ---------------------------------------------------------------------------

/// A client certificate chain and key to present, possibly a bad one.
struct Presented {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn present(cert: &IssuedCert) -> Presented {
    Presented {
        chain: vec![CertificateDer::from(cert.cert_der.clone())],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
    }
}

/// The CA's own certificate and key, presented as if they were a leaf.
fn present_ca(ca: &Ca) -> Presented {
    Presented {
        chain: vec![CertificateDer::from(ca.cert_der())],
        key: PrivateKeyDer::from_pem_slice(ca.key_pem().as_bytes()).unwrap(),
    }
}

/// A TLS 1.3 client (ring) that verifies the edge against the topology's CA,
/// presents `client` (or nothing) and offers `alpn`.
fn rogue_tls(topo: &Topology, client: Option<Presented>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(topo.pki.roots().unwrap());
    let mut cfg = match client {
        Some(p) => builder.with_client_auth_cert(p.chain, p.key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// Dials the edge's QUIC listener. The endpoint is returned so it outlives
/// the connection.
async fn dial(
    topo: &Topology,
    tls: rustls::ClientConfig,
) -> (quinn::Endpoint, Result<quinn::Connection, ConnectionError>) {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            topo.tunnel_addr,
            "localhost",
        )
        .unwrap();
    let result = within("the QUIC handshake with the edge", connecting).await;
    (endpoint, result)
}

/// A HELLO frame offering `services`.
fn hello(version: u32, services: &[&str]) -> BytesMut {
    let frame = Frame::Hello(Hello {
        version,
        services: services
            .iter()
            .map(|s| ServiceOffer {
                name: (*s).to_string(),
            })
            .collect(),
        labels: Vec::new(),
    });
    let mut buf = BytesMut::new();
    wire::encode(&frame, &WireLimits::default(), &mut buf).unwrap();
    buf
}

/// A frame header announcing a `len`-byte payload, without the payload.
fn frame_header(ty: FrameType, len: u64) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u8(ty as u8);
    varint::encode(len, &mut buf).unwrap();
    buf
}

/// Far above every default limit (64 KiB heads, 1 MiB DATA).
const HUGE: u64 = 1 << 30;

/// Dials with `tls` and expects the edge to refuse the TLS handshake. Returns
/// the transport close the edge sent.
///
/// In TLS 1.3 the client's half of the handshake can complete before the edge
/// has judged the client certificate, so when the dial "succeeds" the rogue
/// carries on as a real tunnel would (control stream, HELLO offering `echo`)
/// and the edge's verdict arrives as the connection's close. Were the edge to
/// accept the rogue, the HELLO would register it and this wait would fail.
async fn refused_at_handshake(
    topo: &Topology,
    tls: rustls::ClientConfig,
) -> quinn::ConnectionClose {
    let (_endpoint, dialed) = dial(topo, tls).await;
    let err = match dialed {
        Err(e) => e,
        Ok(conn) => {
            let _ = tokio::time::timeout(WAIT, async {
                let (mut send, _recv) = conn.open_bi().await.ok()?;
                send.write_all(&hello(wire::VERSION, &["echo"])).await.ok()
            })
            .await;
            within("the edge to close the rogue's connection", conn.closed()).await
        }
    };
    match err {
        ConnectionError::ConnectionClosed(close) => close,
        other => {
            panic!("expected the edge to refuse the handshake with a TLS alert, got {other:?}")
        }
    }
}

/// The close carries the TLS alert `alert` as a QUIC crypto error, and its
/// reason contains `reason_has`.
fn assert_alert(close: &quinn::ConnectionClose, alert: AlertDescription, reason_has: &str) {
    assert_eq!(
        close.error_code,
        TransportErrorCode::crypto(u8::from(alert)),
        "expected TLS alert {alert:?}, got {close:?}"
    );
    let reason = String::from_utf8_lossy(&close.reason);
    assert!(
        reason.contains(reason_has),
        "close reason {reason:?} should contain {reason_has:?}"
    );
}

/// Runs one handshake-refusal case end to end on a fresh topology.
async fn handshake_case(
    make_tls: impl FnOnce(&Topology) -> rustls::ClientConfig,
    alert: AlertDescription,
    reason_has: &str,
    rogue_names: &[&str],
) {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let close = refused_at_handshake(&topo, make_tls(&topo)).await;
    assert_alert(&close, alert, reason_has);
    for name in rogue_names {
        never_registered(&topo, name);
    }
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

fn tunnel_spec(name: &str) -> LeafSpec {
    LeafSpec::new(IdentityKind::Tunnel, name)
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

// 1. No client certificate.
#[tokio::test]
async fn tunnel_without_client_certificate_is_refused() {
    handshake_case(
        |topo| rogue_tls(topo, None, &[ALPN]),
        AlertDescription::CertificateRequired,
        "peer sent no certificates",
        &[ROGUE],
    )
    .await;
}

/// Every CA of one trust domain has the same subject name, so a leaf from
/// another CA names a trusted issuer and webpki fails it on the signature:
/// rustls answers `decrypt_error` ("BadSignature").
const FOREIGN_CA_ALERT: AlertDescription = AlertDescription::DecryptError;

// 2. A certificate from another CA of the same trust domain.
#[tokio::test]
async fn tunnel_with_certificate_from_another_ca_is_refused() {
    let other = Pki::new().unwrap();
    let cert = other.leaf(IdentityKind::Tunnel, ROGUE).unwrap();
    handshake_case(
        |topo| rogue_tls(topo, Some(present(&cert)), &[ALPN]),
        FOREIGN_CA_ALERT,
        "invalid peer certificate: BadSignature",
        &[ROGUE],
    )
    .await;
}

// 3. An expired certificate.
#[tokio::test]
async fn tunnel_with_expired_certificate_is_refused() {
    let now = time::OffsetDateTime::now_utc();
    handshake_case(
        |topo| {
            let cert = topo
                .pki
                .ca
                .issue(&LeafSpec {
                    not_before: Some(now - days(2)),
                    not_after: Some(now - days(1)),
                    ..tunnel_spec(ROGUE)
                })
                .unwrap();
            rogue_tls(topo, Some(present(&cert)), &[ALPN])
        },
        AlertDescription::CertificateExpired,
        "certificate expired",
        &[ROGUE],
    )
    .await;
}

// 4. A certificate whose validity starts in the future.
#[tokio::test]
async fn tunnel_with_not_yet_valid_certificate_is_refused() {
    let now = time::OffsetDateTime::now_utc();
    handshake_case(
        |topo| {
            let cert = topo
                .pki
                .ca
                .issue(&LeafSpec {
                    not_before: Some(now + days(1)),
                    not_after: Some(now + days(2)),
                    ..tunnel_spec(ROGUE)
                })
                .unwrap();
            rogue_tls(topo, Some(present(&cert)), &[ALPN])
        },
        // rustls reports "not valid yet" with the certificate_expired alert
        // (RFC 8446: "expired or is not currently valid").
        AlertDescription::CertificateExpired,
        "not valid yet",
        &[ROGUE],
    )
    .await;
}

// 5. The CA certificate and key used as a leaf.
#[tokio::test]
async fn tunnel_presenting_the_ca_as_a_leaf_is_refused() {
    handshake_case(
        |topo| rogue_tls(topo, Some(present_ca(&topo.pki.ca)), &[ALPN]),
        AlertDescription::CertificateUnknown,
        "CaUsedAsEndEntity",
        &[ROGUE, "tether.local"],
    )
    .await;
}

// 6. A leaf with two URI SANs.
#[tokio::test]
async fn tunnel_with_two_uri_sans_is_refused() {
    handshake_case(
        |topo| {
            let cert = topo
                .pki
                .ca
                .issue(&LeafSpec {
                    extra_uri_sans: vec!["spiffe://tether.local/tunnel/other".into()],
                    ..tunnel_spec(ROGUE)
                })
                .unwrap();
            rogue_tls(topo, Some(present(&cert)), &[ALPN])
        },
        AlertDescription::CertificateUnknown,
        "MultipleUriSans(2)",
        &[ROGUE, "other"],
    )
    .await;
}

// 7. A caller identity or an edge identity on the tunnel listener.
#[tokio::test]
async fn caller_and_edge_identities_are_refused_on_the_tunnel_listener() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    for (kind, name) in [(IdentityKind::Caller, "x"), (IdentityKind::Edge, ROGUE)] {
        let cert = topo.pki.leaf(kind, name).unwrap();
        let close =
            refused_at_handshake(&topo, rogue_tls(&topo, Some(present(&cert)), &[ALPN])).await;
        assert_alert(
            &close,
            AlertDescription::CertificateUnknown,
            &format!(
                "WrongKind {{ id: \"spiffe://tether.local/{kind}/{name}\", expected: \"tunnel\" }}"
            ),
        );
        never_registered(&topo, name);
    }
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// 8. A valid tunnel certificate but the wrong ALPN (or none).
#[tokio::test]
async fn tunnel_with_wrong_alpn_is_refused() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let cert = topo.pki.leaf(IdentityKind::Tunnel, ROGUE).unwrap();
    for alpn in [&[b"h3".as_slice()][..], &[]] {
        let close = refused_at_handshake(&topo, rogue_tls(&topo, Some(present(&cert)), alpn)).await;
        assert_alert(
            &close,
            AlertDescription::NoApplicationProtocol,
            "peer doesn't support any known protocol",
        );
        never_registered(&topo, ROGUE);
    }
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Registration abuse by an authenticated tunnel
// ---------------------------------------------------------------------------

/// A rogue with a valid `/tunnel/rogue` certificate, past the handshake.
async fn authenticated_rogue(topo: &Topology) -> (quinn::Endpoint, quinn::Connection) {
    let cert = topo.pki.leaf(IdentityKind::Tunnel, ROGUE).unwrap();
    let (endpoint, dialed) = dial(topo, rogue_tls(topo, Some(present(&cert)), &[ALPN])).await;
    (
        endpoint,
        dialed.expect("a valid tunnel certificate passes the handshake"),
    )
}

/// What the edge did with the bytes a rogue sent on its control stream.
struct ControlVerdict {
    /// The first frame (or error) the edge sent back on the control stream.
    answer: Result<Option<Frame>, StreamError>,
    /// How the edge closed the connection.
    close: quinn::ApplicationClose,
}

/// Opens the control stream, sends `bytes` (then FIN when `finish`), and
/// collects the edge's answer and close.
async fn on_control_stream(topo: &Topology, bytes: &[u8], finish: bool) -> ControlVerdict {
    let (_endpoint, conn) = authenticated_rogue(topo).await;
    let (mut send, recv) = within("the control stream", conn.open_bi()).await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let mut reader = FrameReader::new(recv, WireLimits::default());
    let answer = within("the edge's answer on the control stream", reader.next()).await;
    let close = match within("the edge to close the connection", conn.closed()).await {
        ConnectionError::ApplicationClosed(close) => close,
        other => panic!("expected the edge to close the connection, got {other:?}"),
    };
    ControlVerdict { answer, close }
}

fn assert_app_close(close: &quinn::ApplicationClose, code: VarInt, reason_has: &str) {
    assert_eq!(close.error_code, code, "close was {close:?}");
    let reason = String::from_utf8_lossy(&close.reason);
    assert!(
        reason.contains(reason_has),
        "close reason {reason:?} should contain {reason_has:?}"
    );
}

// 9. Malformed HELLO.
#[tokio::test]
async fn malformed_hello_is_refused() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let mut goaway = BytesMut::new();
    wire::encode(
        &Frame::GoAway(wire::GoAway {
            reason: "hi".into(),
        }),
        &WireLimits::default(),
        &mut goaway,
    )
    .unwrap();
    let cases: [(&[u8], &str); 5] = [
        // Not a frame at all.
        (b"\xffGET / HTTP/1.1\r\n\r\n", "unknown frame type 0xff"),
        // A HELLO that promises five services in a two-byte payload.
        (
            b"\x01\x02\x01\x05",
            "more entries than the payload can hold",
        ),
        // A HELLO whose service name is not UTF-8.
        (b"\x01\x05\x01\x01\x02\xc3\x28", "not valid UTF-8"),
        // A HELLO cut short by FIN.
        (b"\x01\x10\x01", "stream finished inside a frame"),
        // A valid frame, but not HELLO.
        (&goaway, "expected HELLO, got GOAWAY"),
    ];
    for (bytes, reason) in cases {
        let verdict = on_control_stream(&topo, bytes, true).await;
        assert_app_close(&verdict.close, codes::conn::REFUSED, reason);
        assert!(
            matches!(verdict.answer, Err(StreamError::ConnectionLost(_))),
            "no WELCOME for a malformed HELLO, got {:?}",
            verdict.answer
        );
        never_registered(&topo, ROGUE);
    }
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// 10. HELLO with an unsupported version.
#[tokio::test]
async fn hello_with_unsupported_version_gets_an_error_frame() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let verdict = on_control_stream(&topo, &hello(wire::VERSION + 1, &["echo"]), false).await;
    let expected = format!(
        "protocol version {} is not supported; this edge speaks {}",
        wire::VERSION + 1,
        wire::VERSION
    );
    match verdict.answer {
        Ok(Some(Frame::Error(e))) => {
            assert_eq!(e.code, RefuseCode::Unsupported);
            assert_eq!(e.message, expected);
        }
        other => panic!("expected an ERROR frame, got {other:?}"),
    }
    assert_app_close(&verdict.close, codes::conn::REFUSED, &expected);
    never_registered(&topo, ROGUE);
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// 11a. An oversized frame header instead of HELLO: refused from the header
// alone, without waiting for (or buffering) the announced payload.
#[tokio::test]
async fn oversized_hello_is_refused_from_its_header() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let verdict = on_control_stream(&topo, &frame_header(FrameType::Hello, HUGE), false).await;
    assert_app_close(
        &verdict.close,
        codes::conn::REFUSED,
        &format!("HELLO frame payload of {HUGE} bytes exceeds the 65536-byte limit"),
    );
    assert!(
        matches!(verdict.answer, Err(StreamError::ConnectionLost(_))),
        "{:?}",
        verdict.answer
    );
    never_registered(&topo, ROGUE);
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

/// A rogue that registered properly (HELLO offering `echo`, WELCOME back).
struct Registered {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    control_send: quinn::SendStream,
    _control_recv: FrameReader,
}

async fn registered_rogue(topo: &Topology) -> Registered {
    let (endpoint, conn) = authenticated_rogue(topo).await;
    let (mut send, recv) = within("the control stream", conn.open_bi()).await.unwrap();
    send.write_all(&hello(wire::VERSION, &["echo"]))
        .await
        .unwrap();
    let mut reader = FrameReader::new(recv, WireLimits::default());
    match within("WELCOME", reader.next()).await {
        Ok(Some(Frame::Welcome(w))) => assert_eq!(w.edge_id, "edge-1"),
        other => panic!("expected WELCOME, got {other:?}"),
    }
    within("the rogue to be live", topo.registry.wait_live(ROGUE)).await;
    Registered {
        _endpoint: endpoint,
        conn,
        control_send: send,
        _control_recv: reader,
    }
}

// 11b. An oversized frame on the control stream of a registered tunnel: the
// edge closes that connection with PROTOCOL and deregisters it.
#[tokio::test]
async fn oversized_control_frame_after_registration_closes_the_tunnel() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let mut rogue = registered_rogue(&topo).await;
    rogue
        .control_send
        .write_all(&frame_header(FrameType::GoAway, HUGE))
        .await
        .unwrap();
    match within("the edge to close the connection", rogue.conn.closed()).await {
        ConnectionError::ApplicationClosed(close) => {
            assert_app_close(&close, codes::conn::PROTOCOL, "control stream error");
        }
        other => panic!("expected the edge to close with PROTOCOL, got {other:?}"),
    }
    within("the rogue to go offline", topo.registry.wait_offline(ROGUE)).await;
    assert!(matches!(topo.registry.lookup(ROGUE), Lookup::Offline));
    assert_eq!(topo.registry.live_tunnels(), vec![TUNNEL.to_string()]);
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// 12. A registered rogue that answers OPEN with garbage
// ---------------------------------------------------------------------------

/// How the rogue answers each OPEN.
#[derive(Debug, Clone, Copy)]
enum BadAnswer {
    /// Bytes that are no frame at all.
    Garbage,
    /// A RESPONSE header announcing a payload far above the limit.
    OversizedHead,
    /// A valid RESPONSE, then a DATA header far above the limit.
    OversizedData,
}

impl BadAnswer {
    fn bytes(self, open: &wire::Open) -> BytesMut {
        match self {
            BadAnswer::Garbage => BytesMut::from(&b"\xffHTTP/1.1 200 OK\r\n\r\n"[..]),
            BadAnswer::OversizedHead => frame_header(FrameType::Response, HUGE),
            BadAnswer::OversizedData => {
                let mut headers = http::HeaderMap::new();
                let content_type = open
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(http::HeaderValue::from_static("text/plain"));
                headers.insert(http::header::CONTENT_TYPE, content_type);
                let mut buf = BytesMut::new();
                wire::encode(
                    &Frame::Response(Box::new(wire::Response {
                        status: http::StatusCode::OK,
                        headers,
                    })),
                    &WireLimits::default(),
                    &mut buf,
                )
                .unwrap();
                buf.extend_from_slice(&frame_header(FrameType::Data, HUGE));
                buf
            }
        }
    }
}

/// What the rogue saw of one call: the OPEN's service and the STOP_SENDING
/// code the edge answered its bad bytes with.
type Served = (String, Option<VarInt>);

/// Serves every stream the edge opens with `answer`, reporting each.
fn serve_badly(conn: quinn::Connection, answer: BadAnswer) -> mpsc::UnboundedReceiver<Served> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Ends when the rogue's connection closes (the edge shuts down).
    tokio::spawn(async move {
        while let Ok((mut send, recv)) = conn.accept_bi().await {
            let mut reader = FrameReader::new(recv, WireLimits::default());
            let Ok(Some(Frame::Open(open))) = reader.next().await else {
                continue;
            };
            if send.write_all(&answer.bytes(&open)).await.is_err() {
                continue;
            }
            let stopped = send.stopped().await.ok().flatten();
            let _ = tx.send((open.service.clone(), stopped));
        }
    });
    rx
}

fn rogue_host() -> String {
    format!("echo.{ROGUE}.{DOMAIN}")
}

/// The rogue served the call (not the upstream), the edge told it to stop
/// sending with `PROTOCOL`, and its connection stays open: a data-stream
/// violation ends the stream, not the connection (docs/protocol.md).
async fn rogue_was_stopped(rogue: &Registered, served: &mut mpsc::UnboundedReceiver<Served>) {
    let (service, stop) = within("the rogue to be stopped", served.recv())
        .await
        .expect("the rogue served the call");
    assert_eq!(service, "echo");
    assert_eq!(
        stop,
        Some(codes::stream::PROTOCOL),
        "the edge must stop a stream that broke the protocol with PROTOCOL"
    );
    assert!(
        rogue.conn.close_reason().is_none(),
        "a data-stream violation must not close the connection: {:?}",
        rogue.conn.close_reason()
    );
}

/// A rogue answering the head with `answer`: HTTP/1.1 callers get 502 with
/// `tether-error: tunnel-failure` naming the problem, gRPC callers get
/// UNAVAILABLE with the same header.
async fn bad_head_case(answer: BadAnswer, reason_has: &str) {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let rogue = registered_rogue(&topo).await;
    let mut served = serve_badly(rogue.conn.clone(), answer);

    // HTTP/1.1.
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let resp = within(
        "the edge's answer",
        caller.send(request(Method::GET, &rogue_host(), "/hello", empty()).unwrap()),
    )
    .await
    .expect("the edge answers with an error response, not a broken connection");
    assert_eq!(resp.status(), http::StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["tether-error"], "tunnel-failure");
    let body = within("the error body", collect(resp.into_body()))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.starts_with("tunnel failure: malformed frame on tunnel stream: ")
            && body.contains(reason_has),
        "{body:?}"
    );
    rogue_was_stopped(&rogue, &mut served).await;

    // gRPC.
    let mut client = within(
        "a gRPC connection",
        grpc_plaintext(topo.plaintext_addr, &rogue_host()),
    )
    .await
    .unwrap();
    let status = within(
        "the gRPC refusal",
        client.unary(EchoRequest {
            text: "hi".into(),
            ..Default::default()
        }),
    )
    .await
    .expect_err("a rogue's garbage is no answer");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status.metadata().get("tether-error").unwrap(),
        "tunnel-failure"
    );
    assert!(status.message().contains(reason_has), "{status:?}");
    rogue_was_stopped(&rogue, &mut served).await;

    assert!(matches!(topo.registry.lookup(ROGUE), Lookup::Live(_)));
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

#[tokio::test]
async fn rogue_tunnel_answering_open_with_garbage_fails_the_call_cleanly() {
    bad_head_case(BadAnswer::Garbage, "unknown frame type 0xff").await;
}

#[tokio::test]
async fn rogue_tunnel_answering_open_with_an_oversized_frame_fails_the_call_cleanly() {
    bad_head_case(
        BadAnswer::OversizedHead,
        &format!("RESPONSE frame payload of {HUGE} bytes exceeds the 65536-byte limit"),
    )
    .await;
}

// After a valid head the status is already with the caller: the body must
// fail visibly (never look complete), as an HTTP/1.1 connection abort or an
// HTTP/2 reset that gRPC reports as INTERNAL.
#[tokio::test]
async fn rogue_tunnel_sending_an_oversized_data_frame_breaks_only_that_call() {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();
    let rogue = registered_rogue(&topo).await;
    let mut served = serve_badly(rogue.conn.clone(), BadAnswer::OversizedData);

    // HTTP/1.1: hyper may already have the head when the body fails, or may
    // abort before writing it; either way the caller sees a failure, never a
    // response that looks complete.
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let sent = within(
        "the response head",
        caller.send(request(Method::GET, &rogue_host(), "/hello", empty()).unwrap()),
    )
    .await;
    match sent {
        Err(err) => assert!(
            err.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_incomplete_message),
            "expected the connection to end before a complete response, got {err:?}"
        ),
        Ok(resp) => {
            assert_eq!(resp.status(), http::StatusCode::OK);
            within("the body to fail", collect(resp.into_body()))
                .await
                .expect_err("a body cut by a protocol error must not look complete");
        }
    }
    rogue_was_stopped(&rogue, &mut served).await;

    // gRPC.
    let mut client = within(
        "a gRPC connection",
        grpc_plaintext(topo.plaintext_addr, &rogue_host()),
    )
    .await
    .unwrap();
    let status = within(
        "the gRPC failure",
        client.unary(EchoRequest {
            text: "hi".into(),
            ..Default::default()
        }),
    )
    .await
    .expect_err("a broken body is no answer");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    rogue_was_stopped(&rogue, &mut served).await;

    assert!(matches!(topo.registry.lookup(ROGUE), Lookup::Live(_)));
    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Callers on the mTLS ingress
// ---------------------------------------------------------------------------

/// Connects to the mTLS ingress with `tls` and returns the TLS error the
/// edge ends the handshake with. The client sends nothing after its
/// handshake flight, so the edge's alert is the first thing it reads.
async fn ingress_refusal(topo: &Topology, tls: rustls::ClientConfig) -> rustls::Error {
    let tcp = TcpStream::connect(topo.ingress_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connect = TlsConnector::from(Arc::new(tls)).connect(name, tcp);
    let mut stream = match within("the TLS handshake", connect).await {
        Ok(stream) => stream,
        Err(e) => return rustls_error(&e).unwrap_or_else(|| panic!("not a TLS error: {e:?}")),
    };
    let mut buf = [0u8; 64];
    let err = within("the edge's verdict", stream.read(&mut buf))
        .await
        .expect_err("the edge must not accept this caller");
    rustls_error(&err).unwrap_or_else(|| panic!("not a TLS error: {err:?}"))
}

/// hyper's HTTP/2 client (through h2) keeps only the text of an I/O error,
/// so past the TLS layer the alert is checked by rustls's wording.
fn assert_mentions_alert(err: &str, alert: AlertDescription) {
    let text = rustls::Error::AlertReceived(alert).to_string();
    assert!(err.contains(&text), "{err} should mention {text:?}");
}

/// One ingress case: the edge alerts with `alert`; an HTTP request and a
/// gRPC call with the same TLS config both fail; nothing reached upstream.
async fn ingress_case(
    make_tls: impl Fn(&Topology) -> rustls::ClientConfig,
    alert: AlertDescription,
) {
    let topo = Topology::start().await.unwrap();
    let before = topo.upstream.observed.requests();

    let err = ingress_refusal(&topo, make_tls(&topo)).await;
    assert_eq!(err, rustls::Error::AlertReceived(alert), "{err}");

    let http = within("an HTTP request", async {
        let mut caller = HttpCaller::tls(topo.ingress_addr, make_tls(&topo)).await?;
        caller
            .send(request(Method::GET, &topo.host("web"), "/hello", empty())?)
            .await
    })
    .await;
    let err = http.expect_err("the HTTP request must fail");
    assert_mentions_alert(&format!("{err:?}"), alert);

    let grpc = within("a gRPC call", async {
        let mut client = grpc_tls(topo.ingress_addr, &topo.host("echo"), make_tls(&topo)).await?;
        let reply = client
            .unary(EchoRequest {
                text: "hi".into(),
                ..Default::default()
            })
            .await?;
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    let err = grpc.expect_err("the gRPC call must fail");
    assert_mentions_alert(&format!("{err:?}"), alert);

    demo_still_works(&topo, before).await;
    topo.shutdown().await;
}

// 13. No client certificate.
#[tokio::test]
async fn caller_without_certificate_is_refused() {
    ingress_case(
        |topo| anonymous_tls(topo.pki.roots().unwrap(), &[b"h2", b"http/1.1"]).unwrap(),
        AlertDescription::CertificateRequired,
    )
    .await;
}

// 14. A certificate from another CA of the same trust domain.
#[tokio::test]
async fn caller_with_certificate_from_another_ca_is_refused() {
    let other = Pki::new().unwrap();
    let cert = other.leaf(IdentityKind::Caller, "intruder").unwrap();
    ingress_case(
        |topo| caller_tls(&cert, topo.pki.roots().unwrap(), &[b"h2", b"http/1.1"]).unwrap(),
        FOREIGN_CA_ALERT,
    )
    .await;
}

// 15. An expired certificate.
#[tokio::test]
async fn caller_with_expired_certificate_is_refused() {
    let now = time::OffsetDateTime::now_utc();
    ingress_case(
        |topo| {
            let cert = topo
                .pki
                .ca
                .issue(&LeafSpec {
                    not_before: Some(now - days(2)),
                    not_after: Some(now - days(1)),
                    ..LeafSpec::new(IdentityKind::Caller, "orchestrator")
                })
                .unwrap();
            caller_tls(&cert, topo.pki.roots().unwrap(), &[b"h2", b"http/1.1"]).unwrap()
        },
        AlertDescription::CertificateExpired,
    )
    .await;
}

// ---------------------------------------------------------------------------
// 16. Plaintext listener off loopback
// ---------------------------------------------------------------------------

fn edge_config_file(dir: &std::path::Path, plaintext_listen: &str) -> std::path::PathBuf {
    let toml = format!(
        r#"
[tls]
cert = "edge.pem"
key = "edge.key"
trust_bundle = "ca.pem"

[tunnels]
listen = "127.0.0.1:0"

[ingress]
domain = "tunnel.local"

[ingress.plaintext]
listen = "{plaintext_listen}"
caller_identity = "spiffe://tether.local/caller/dev"

[audit]
path = "audit/edge.log"
"#
    );
    let path = dir.join(format!(
        "edge-{}.toml",
        plaintext_listen.replace([':', '[', ']', '.'], "_")
    ));
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn plaintext_listener_off_loopback_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    pki.ca.write_files(dir.path(), true).unwrap();
    pki.leaf(IdentityKind::Edge, "edge-1")
        .unwrap()
        .write_files(dir.path(), "edge", true)
        .unwrap();

    // The same file on loopback is fine: the refusal below is about the address.
    for ok in ["127.0.0.1:0", "[::1]:0"] {
        let cfg = tunnel_server::Config::load(&edge_config_file(dir.path(), ok))
            .unwrap_or_else(|e| panic!("{ok} must be accepted: {e}"));
        assert!(cfg.plaintext.unwrap().0.ip().is_loopback());
    }
    for bad in ["0.0.0.0:0", "[::]:0", "192.0.2.10:8080"] {
        let errors = tunnel_server::Config::load(&edge_config_file(dir.path(), bad))
            .expect_err("a plaintext listener off loopback must be rejected");
        assert_eq!(errors.0.len(), 1, "exactly one problem: {errors}");
        let msg = &errors.0[0];
        assert!(
            msg.starts_with("ingress.plaintext.listen: ") && msg.contains("loopback"),
            "{msg}"
        );
    }
}
