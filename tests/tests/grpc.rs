//! gRPC through the tunnel with a real gRPC implementation at both ends:
//! all four streaming kinds, statuses, metadata (text and binary) and
//! trailers, over the mTLS and the plaintext ingress listeners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certs::IdentityKind;
use tether_tests::callers::{caller_tls, grpc_plaintext, grpc_tls};
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::{EchoRequest, StreamRequest};
use tether_tests::topology::Topology;
use tonic::transport::Channel;
use tonic::Code;

async fn exercise_all_kinds(client: &mut EchoClient<Channel>, expect_caller: &str) {
    // Unary, with response metadata.
    let resp = client
        .unary(EchoRequest {
            text: "hello".into(),
            payload: vec![1, 2, 3],
            ..Default::default()
        })
        .await
        .expect("unary call");
    assert_eq!(resp.metadata().get("x-echo").unwrap(), "yes");
    assert_eq!(
        resp.metadata()
            .get_bin("x-echo-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0xde, 0xad, 0xbe, 0xef]
    );
    let reply = resp.into_inner();
    assert_eq!(reply.text, "hello");
    assert_eq!(reply.payload, vec![1, 2, 3]);
    assert!(
        reply.caller.contains(expect_caller),
        "caller header was {:?}",
        reply.caller
    );
    assert!(
        reply
            .caller
            .contains("By=spiffe://tether.local/tunnel/demo"),
        "{:?}",
        reply.caller
    );

    // Server streaming.
    let mut stream = client
        .server_stream(StreamRequest {
            text: "s".into(),
            count: 5,
            hang_after: false,
        })
        .await
        .expect("server stream")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(msg) = stream.message().await.expect("stream message") {
        seen.push(msg.text);
    }
    assert_eq!(seen, vec!["s-0", "s-1", "s-2", "s-3", "s-4"]);

    // Client streaming.
    let input = tokio_stream::iter((0..10).map(|i| EchoRequest {
        text: i.to_string(),
        payload: vec![i as u8],
        ..Default::default()
    }));
    let reply = client
        .client_stream(input)
        .await
        .expect("client stream")
        .into_inner();
    assert_eq!(reply.text, "0123456789");
    assert_eq!(reply.seq, 10);
    assert_eq!(reply.payload, (0..10u8).collect::<Vec<_>>());

    // Bidirectional streaming, interleaved: each reply is awaited before the
    // next request is sent, so both directions are open at once.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("bidi")
        .into_inner();
    for i in 0..20u64 {
        tx.send(EchoRequest {
            text: format!("m{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = replies.message().await.unwrap().expect("bidi reply");
        assert_eq!(reply.text, format!("m{i}"));
        assert_eq!(reply.seq, i);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    // An error status with text and binary metadata in the trailers.
    let status = client
        .unary(EchoRequest {
            text: "boom".into(),
            fail_code: Code::FailedPrecondition as u32,
            ..Default::default()
        })
        .await
        .expect_err("must fail");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "failed as asked: boom");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "detail-text");
    assert_eq!(
        status
            .metadata()
            .get_bin("x-detail-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255]
    );
}

#[tokio::test]
async fn all_four_kinds_over_mtls_ingress() {
    let topo = Topology::start().await.unwrap();
    let caller = topo.pki.leaf(IdentityKind::Caller, "orchestrator").unwrap();
    let tls = caller_tls(&caller, topo.pki.roots().unwrap(), &[b"h2"]).unwrap();
    let mut client = grpc_tls(topo.ingress_addr, &topo.host("echo"), tls)
        .await
        .unwrap();
    exercise_all_kinds(&mut client, "URI=spiffe://tether.local/caller/orchestrator").await;
    topo.shutdown().await;
}

#[tokio::test]
async fn all_four_kinds_over_plaintext_ingress() {
    let topo = Topology::start().await.unwrap();
    let mut client = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    exercise_all_kinds(&mut client, "URI=spiffe://tether.local/caller/dev").await;
    topo.shutdown().await;
}

#[tokio::test]
async fn services_behind_tls_are_reached_with_http2_and_http1() {
    use std::collections::BTreeMap;
    use tether_tests::callers::{empty, request, HttpCaller};
    use tunnel_client::config::{Protocol, Service};
    let pki = tether_tests::topology::Pki::new().unwrap();
    // The data-plane service's own certificate, from a CA the client trusts.
    let mut spec = certs::LeafSpec::new(IdentityKind::Edge, "svc");
    spec.dns_names = vec!["localhost".into()];
    let svc_cert = pki.ca.issue(&spec).unwrap();
    let secure = tether_tests::upstream::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        &svc_cert.cert_pem,
        &svc_cert.key_pem,
    )
    .await
    .unwrap();
    // And one whose CA the client does not trust.
    let other = tether_tests::topology::Pki::new()
        .unwrap()
        .ca
        .issue(&spec)
        .unwrap();
    let untrusted = tether_tests::upstream::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        &other.cert_pem,
        &other.key_pem,
    )
    .await
    .unwrap();
    let mut extra = BTreeMap::new();
    for (name, port) in [
        ("secure", secure.addr.port()),
        ("untrusted", untrusted.addr.port()),
    ] {
        extra.insert(
            name.to_string(),
            Service {
                url: format!("https://localhost:{port}").parse().unwrap(),
                protocol: Protocol::Tls,
                ca: Some(pki.roots().unwrap()),
                client_identity: None,
            },
        );
    }
    let topo = tether_tests::topology::Topology::start_with(tether_tests::topology::Options {
        extra_services: extra,
        ..Default::default()
    })
    .await
    .unwrap();
    // gRPC: ALPN picks HTTP/2 towards the service.
    let mut client = grpc_plaintext(topo.plaintext_addr, &topo.host("secure"))
        .await
        .unwrap();
    exercise_all_kinds(&mut client, "URI=spiffe://tether.local/caller/dev").await;
    // Plain HTTP over the same TLS service.
    let mut http = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let resp = http
        .send(request(http::Method::GET, &topo.host("secure"), "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(secure.observed.requests() > 0);
    assert_eq!(
        topo.upstream.observed.requests(),
        0,
        "calls went to the TLS service, not the plain one"
    );

    // A service whose certificate the client does not trust is unreachable, and says why.
    let resp = http
        .send(
            request(
                http::Method::GET,
                &topo.host("untrusted"),
                "/hello",
                empty(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("certificate"), "{body}");
    assert_eq!(untrusted.observed.requests(), 0);
    topo.shutdown().await;
}
