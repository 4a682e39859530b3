//! Refusals that used to escape the one admission path, seen through the
//! running edge: every refusal has its `tether-error`, its audit record and
//! one consistent set of fields.
//! - A head over `max_http_header_bytes` is refused with 431 and
//!   `headers-too-large` over HTTP/1.1 and HTTP/2 (no bare parser 431, no
//!   REFUSED_STREAM inviting a retry), at the edge and at the egress
//!   listener, and audited.
//! - A service that resets its stream before answering is not reported as
//!   unreachable: an HTTP/2 caller sees the service's reset reason, an
//!   HTTP/1.1 caller 502 `upstream-reset`.
//! - The edge names the tunnel by its SPIFFE ID in refused records as in
//!   allowed ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use proxy::audit::{AuditDecision, Event};
use tether_tests::audit_trail::records;
use tether_tests::callers::{empty, request, request_h2, HttpCaller};
use tether_tests::topology::{Options, Topology};
use tokio::net::TcpListener;
use tunnel_client::config::{Protocol, Service};

const WAIT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A request to `host` carrying one header of `size` bytes.
fn big_request(host: &str, size: usize, h2: bool) -> http::Request<tether_tests::callers::ReqBody> {
    let mut req = if h2 {
        request_h2(Method::GET, host, "/hello", empty()).unwrap()
    } else {
        request(Method::GET, host, "/hello", empty()).unwrap()
    };
    req.headers_mut()
        .insert("x-big", "v".repeat(size).parse().unwrap());
    req
}

async fn oversized_heads_are_refused_and_audited(h2: bool) {
    let topo = Topology::start().await.unwrap();
    let limit = proxy::Limits::default().max_http_header_bytes as usize;
    let host = topo.host("web");
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, h2)
        .await
        .unwrap();
    let resp = within(
        "oversized request",
        caller.send(big_request(&host, limit + 1024, h2)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.headers()["tether-error"], "headers-too-large");
    let body = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("exceed the limit"));
    // The connection is fine and the next call goes through: the refusal
    // was an answer, not a reset of the stream or the connection.
    let resp = within("next request", caller.send(big_request(&host, 16, h2)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = tether_tests::upstream::collect(resp.into_body()).await;
    assert_eq!(
        topo.upstream.observed.requests(),
        1,
        "only the small call arrived"
    );
    within("records", topo.edge_audit_log.wait_written(4)).await;
    let recs = records(&topo.edge_audit);
    let open = recs
        .iter()
        .find(|r| r.event == Event::Open && r.reason.as_deref() == Some("headers-too-large"))
        .expect("the refusal's open record");
    assert_eq!(open.decision, Some(AuditDecision::Refuse));
    let close = recs
        .iter()
        .find(|r| r.event == Event::Close && r.stream_id == open.stream_id)
        .expect("the refusal's close record");
    assert_eq!(close.http_status, Some(431));
    topo.shutdown().await;
}

#[tokio::test]
async fn oversized_heads_over_http1_are_refused_and_audited() {
    oversized_heads_are_refused_and_audited(false).await;
}

#[tokio::test]
async fn oversized_heads_over_http2_are_refused_and_audited() {
    oversized_heads_are_refused_and_audited(true).await;
}

#[tokio::test]
async fn oversized_heads_at_the_egress_listener_are_refused_and_audited() {
    let topo = Topology::start().await.unwrap();
    let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), false)
        .await
        .unwrap();
    let resp = within(
        "oversized egress request",
        caller.send(big_request("cp-web", 70 * 1024, false)),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.headers()["tether-error"], "headers-too-large");
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    let log = topo.client.as_ref().unwrap().audit.clone();
    within("records", log.wait_written(2)).await;
    let recs = records(&topo.client_audit);
    assert!(recs.iter().any(|r| r.event == Event::Open
        && r.decision == Some(AuditDecision::Refuse)
        && r.reason.as_deref() == Some("headers-too-large")));
    topo.shutdown().await;
}

/// An HTTP/2 service that resets every stream with ENHANCE_YOUR_CALM
/// before answering.
async fn start_resetting_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::ENHANCE_YOUR_CALM);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_service_reset_before_answering_is_not_reported_unreachable() {
    let addr = start_resetting_service().await;
    let mut opts = Options::default();
    opts.extra_services.insert(
        "calm".into(),
        Service {
            url: format!("http://{addr}").parse().unwrap(),
            protocol: Protocol::H2c,
            ca: None,
            client_identity: None,
        },
    );
    let topo = Topology::start_with(opts).await.unwrap();
    let host = topo.host("calm");
    // HTTP/2 caller: the service's own reason.
    let mut h2 = HttpCaller::plaintext(topo.plaintext_addr, true)
        .await
        .unwrap();
    let err = within(
        "h2 call",
        h2.send(request_h2(Method::GET, &host, "/", empty()).unwrap()),
    )
    .await
    .expect_err("the caller's stream is reset");
    let reason = std::iter::successors(
        Some(err.as_ref() as &(dyn std::error::Error + 'static)),
        |e| e.source(),
    )
    .find_map(|e| e.downcast_ref::<h2::Error>().and_then(h2::Error::reason));
    assert_eq!(reason, Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?}");
    // HTTP/1.1 caller: 502 upstream-reset, not upstream-unavailable.
    let mut h1 = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let resp = within(
        "h1 call",
        h1.send(request(Method::GET, &host, "/", empty()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(resp.headers()["tether-error"], "upstream-reset");
    let body = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("unreachable"), "{text}");
    // The client's close records say the service reset the stream.
    let log = topo.client.as_ref().unwrap().audit.clone();
    within("client records", log.wait_written(4)).await;
    let recs = records(&topo.client_audit);
    let closes: Vec<_> = recs.iter().filter(|r| r.event == Event::Close).collect();
    assert_eq!(closes.len(), 2);
    for c in closes {
        let error = c.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("reset the stream before answering"),
            "{error}"
        );
    }
    topo.shutdown().await;
}

#[tokio::test]
async fn the_edge_names_the_tunnel_alike_in_refused_and_allowed_records() {
    let topo = Topology::start().await.unwrap();
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    for service in ["web", "nosuch"] {
        let resp = caller
            .send(request(Method::GET, &topo.host(service), "/hello", empty()).unwrap())
            .await
            .unwrap();
        let _ = tether_tests::upstream::collect(resp.into_body()).await;
    }
    within("records", topo.edge_audit_log.wait_written(4)).await;
    let recs = records(&topo.edge_audit);
    let opens: Vec<_> = recs.iter().filter(|r| r.event == Event::Open).collect();
    assert_eq!(opens.len(), 2);
    assert_eq!(opens[0].decision, Some(AuditDecision::Allow));
    assert_eq!(opens[1].decision, Some(AuditDecision::Refuse));
    assert_eq!(opens[1].reason.as_deref(), Some("unknown-service"));
    for r in &recs {
        assert_eq!(r.tunnel, "spiffe://tether.local/tunnel/demo", "{r:?}");
    }
    topo.shutdown().await;
}
