//! `/metrics` on both binaries, as an operator scrapes them: the real
//! processes with admin listeners, calls through the tunnel, then the
//! Prometheus text read over HTTP from each. The counters move with the
//! calls (opened, closed, bytes, policy decisions, refusals by cause), the
//! tunnel connection is there by peer and state with its QUIC figures,
//! and the audit, registration and reload families are present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http::Method;
use http_body_util::BodyExt as _;
use proxy::audit::Durability;
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::Process;
use tether_tests::upstream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const CALLS: u64 = 3;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn scrape(admin: SocketAddr) -> String {
    let mut http = HttpCaller::plaintext(admin, false).await.unwrap();
    let resp = http
        .send(request(Method::GET, "admin", "/metrics", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn expect(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[tokio::test]
async fn both_binaries_export_metrics_that_move_with_the_calls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    files::ensure_dev_pki(d).unwrap();
    let up = upstream::start(any()).await.unwrap();
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: "tests/tests/metrics.rs".into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: Some(any()),
            cp_upstream: up.addr,
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let edge = Process::start("tunnel-server", &edge_toml).await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: "tests/tests/metrics.rs".into(),
            edge_address: edge.addr("tunnels"),
            upstream: up.addr,
            admin_listen: Some(any()),
            egress_listen: any(),
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let client = Process::start("tunnel-client", &client_toml).await;
    let (edge_admin, client_admin) = (edge.addr("admin"), client.addr("admin"));

    let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
        .await
        .unwrap();
    for _ in 0..CALLS {
        echo.unary(EchoRequest {
            text: "metrics".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // A call to a host outside the routing domain: refused before routing.
    let mut lost = grpc_plaintext(edge.addr("plaintext"), "echo.demo.elsewhere.example")
        .await
        .unwrap();
    lost.unary(EchoRequest::default()).await.unwrap_err();

    let e = scrape(edge_admin).await;
    let calls = CALLS as f64;
    assert_eq!(
        expect(
            &e,
            r#"tether_streams_opened_total{decision="allow",direction="ingress",kind="http",service="echo",tunnel="demo",side="edge"}"#
        ),
        calls
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_streams_closed_total{direction="ingress",kind="http",outcome="ok",service="echo",tunnel="demo",side="edge"}"#
        ),
        calls
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_refusals_total{cause="no-route",direction="ingress",side="edge"}"#
        ),
        1.0
    );
    assert!(
        !e.contains("elsewhere.example"),
        "a refused call's names are not labels"
    );
    assert!(
        expect(
            &e,
            r#"tether_stream_bytes_total{direction="ingress",way="in",side="edge"}"#
        ) > 0.0
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_stream_duration_seconds_count{direction="ingress",kind="http",side="edge"}"#
        ),
        calls + 1.0
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_streams_in_flight{direction="ingress",side="edge"}"#
        ),
        0.0
    );
    assert!(
        expect(
            &e,
            r#"tether_policy_decisions_total{decision="allow",direction="ingress",rule="allow-all",side="edge"}"#
        ) >= calls
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_connections{peer="demo",state="registered",side="edge"}"#
        ),
        1.0
    );
    assert!(expect(&e, r#"tether_quic_rtt_seconds{peer="demo",side="edge"}"#) > 0.0);
    assert!(
        expect(
            &e,
            r#"tether_quic_congestion_window_bytes{peer="demo",side="edge"}"#
        ) > 0.0
    );
    assert_eq!(
        expect(
            &e,
            r#"tether_registrations_total{outcome="registered",side="edge"}"#
        ),
        1.0
    );
    assert!(expect(&e, r#"tether_audit_records_written_total{side="edge"}"#) >= 2.0 * calls);
    assert!(
        expect(
            &e,
            r#"tether_audit_flush_duration_seconds_count{side="edge"}"#
        ) >= 1.0
    );
    assert_eq!(expect(&e, r#"tether_audit_healthy{side="edge"}"#), 1.0);
    assert_eq!(
        expect(
            &e,
            r#"tether_reloads_total{outcome="error",what="policy",side="edge"}"#
        ),
        0.0
    );

    let c = scrape(client_admin).await;
    assert_eq!(
        expect(
            &c,
            r#"tether_streams_opened_total{decision="allow",direction="ingress",kind="http",service="echo",tunnel="demo",side="client"}"#
        ),
        calls
    );
    assert_eq!(
        expect(
            &c,
            r#"tether_connections{peer="edge-1",state="registered",side="client"}"#
        ),
        1.0
    );
    assert!(
        expect(
            &c,
            r#"tether_quic_rtt_seconds{peer="edge-1",side="client"}"#
        ) > 0.0
    );
    assert!(
        expect(
            &c,
            r#"tether_registrations_total{outcome="registered",side="client"}"#
        ) >= 1.0
    );
    assert!(expect(&c, r#"tether_reconnect_attempts_total{side="client"}"#) >= 1.0);
    assert_eq!(expect(&c, r#"tether_audit_healthy{side="client"}"#), 1.0);

    // They move: one more call shows on the next scrape at both ends.
    echo.unary(EchoRequest::default()).await.unwrap();
    let e2 = scrape(edge_admin).await;
    assert_eq!(
        expect(
            &e2,
            r#"tether_streams_opened_total{decision="allow",direction="ingress",kind="http",service="echo",tunnel="demo",side="edge"}"#
        ),
        calls + 1.0
    );
    let c2 = scrape(client_admin).await;
    assert_eq!(
        expect(
            &c2,
            r#"tether_streams_closed_total{direction="ingress",kind="http",outcome="ok",service="echo",tunnel="demo",side="client"}"#
        ),
        calls + 1.0
    );
}
