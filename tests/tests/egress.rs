//! Egress: data-plane workloads reach control-plane upstreams through the
//! client's local proxy and the same outbound tunnel, under the tunnel's
//! identity, both ends' egress policies and both ends' audit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::pb::EchoRequest;
use tether_tests::topology::Topology;

#[tokio::test]
async fn grpc_and_http_reach_control_plane_upstreams() {
    let topo = Topology::start().await.unwrap();
    let egress = topo.egress_addr.unwrap();
    // A gRPC client pointed at the listener with the upstream's name.
    let mut grpc = grpc_plaintext(egress, "cp-echo").await.unwrap();
    let reply = grpc
        .unary(EchoRequest {
            text: "out".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "out");
    assert_eq!(
        reply.caller, "By=spiffe://tether.local/edge/edge-1;URI=spiffe://tether.local/tunnel/demo",
        "the upstream learns the calling tunnel's verified identity"
    );
    // HTTP/1.1 in absolute form, as with HTTP_PROXY.
    let mut http = HttpCaller::plaintext(egress, false).await.unwrap();
    let req = http::Request::builder()
        .uri("http://cp-web/hello")
        .header("host", "cp-web")
        .body(empty())
        .unwrap();
    let resp = http.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Origin form with Host.
    let resp = http
        .send(request(Method::GET, "cp-web", "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        topo.upstream.observed.requests(),
        0,
        "egress must not touch the data-plane service"
    );
    assert_eq!(topo.cp_upstream.observed.requests(), 3);
    // An unknown upstream is refused as such.
    let resp = http
        .send(request(Method::GET, "nowhere", "/", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["tether-error"], "unknown-upstream");
    topo.shutdown().await;
}
