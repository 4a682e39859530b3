//! The tunnel listener's bound on connections: over `[tunnels]
//! max_connections` a new tunnel connection is refused at its first packet
//! (QUIC CONNECTION_REFUSED) and the connections up keep serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certs::IdentityKind;
use proxy::identity::IdentityRule;
use proxy::wire::ALPN;
use tether_tests::callers::grpc_plaintext;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{tls_identity, Options, Topology, TRUST_DOMAIN};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_tunnel_connection_over_the_bound_is_refused_and_the_others_keep_serving() {
    let topo = Topology::start_with(Options {
        edge_max_connections: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let cert = topo.pki.leaf(IdentityKind::Tunnel, "second").unwrap();
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
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            topo.tunnel_addr,
            "localhost",
        )
        .unwrap();
    let refused = tokio::time::timeout(WAIT, connecting).await.unwrap();
    assert!(
        matches!(&refused, Err(quinn::ConnectionError::ConnectionClosed(c))
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{refused:?}"
    );
    let mut echo = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(
        WAIT,
        echo.unary(EchoRequest {
            text: "still served".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.into_inner().text, "still served");
    topo.shutdown().await;
}
