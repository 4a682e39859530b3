//! `--stage-timing`: both real binaries time each stage of every call and
//! serve the sums at `/metrics`, the figures bench's latency breakdown
//! reads; without the flag they serve none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http::Method;
use http_body_util::BodyExt as _;
use proxy::audit::Durability;
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Launch, Process};
use tether_tests::upstream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const WRITER: &str = "tests/tests/stage_timing.rs";
const CALLS: u64 = 5;

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
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of `family{stage="STAGE",side="SIDE"}`.
fn stage(text: &str, family: &str, stage: &str, side: &str) -> f64 {
    let series = format!(r#"{family}{{stage="{stage}",side="{side}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in\n{text}"))
}

/// Both ends with their admin listeners, `--stage-timing` on each if
/// `timed`; the edge is first.
async fn topology(d: &std::path::Path, up: SocketAddr, timed: bool) -> (Process, Process) {
    let launch = Launch {
        args: if timed {
            vec!["--stage-timing".into()]
        } else {
            Vec::new()
        },
        ..Launch::default()
    };
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: WRITER.into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: Some(any()),
            cp_upstream: up,
            audit: Durability::Always,
        },
        &policies,
    )
    .unwrap();
    let edge = Process::start_launched("tunnel-server", &edge_toml, &launch).await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: WRITER.into(),
            edge_address: edge.addr("tunnels"),
            upstream: up,
            admin_listen: Some(any()),
            egress_listen: any(),
            audit: Durability::Always,
        },
        &policies,
    )
    .unwrap();
    let client = Process::start_launched("tunnel-client", &client_toml, &launch).await;
    (edge, client)
}

async fn calls(edge: &Process) {
    let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
        .await
        .unwrap();
    for n in 0..CALLS {
        let text = format!("timed {n}");
        let reply = echo
            .unary(EchoRequest {
                text: text.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(reply.get_ref().text, text);
    }
}

#[tokio::test]
async fn each_end_times_every_stage_of_a_call_and_the_edge_wait_encloses_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream::start(any()).await.unwrap();
    files::ensure_dev_pki(dir.path()).unwrap();
    let (edge, client) = topology(dir.path(), up.addr, true).await;
    calls(&edge).await;
    // Every mark of a call is made before its response ends at the
    // caller: the edge's last when its response body ends, the client's
    // when the service's body has been written to the stream.
    let (e, c) = (
        scrape(edge.addr("admin")).await,
        scrape(client.addr("admin")).await,
    );
    let calls = CALLS as f64;
    for s in [
        "open.decided",
        "open.queued",
        "open.stream",
        "open.open_sent",
        "open.durable",
        "open.request_sent",
        "open.response",
        "open.finished",
    ] {
        assert_eq!(
            stage(&e, "tether_stage_calls_total", s, "edge"),
            calls,
            "{s}"
        );
    }
    for s in [
        "accept.decided",
        "accept.queued",
        "accept.durable",
        "accept.peer_audited",
        "accept.service",
        // `response_sent` only for a body longer than its first write.
        "accept.finished",
    ] {
        assert_eq!(
            stage(&c, "tether_stage_calls_total", s, "client"),
            calls,
            "{s}"
        );
    }
    // Audit `always`: each end's open record waits for an fsync.
    assert!(stage(&e, "tether_stage_seconds_total", "open.durable", "edge") > 0.0);
    assert!(stage(&c, "tether_stage_seconds_total", "accept.durable", "client") > 0.0);
    // From OPEN sent to the response head, the edge's time encloses
    // everything the client did from its admission (after reading OPEN)
    // to the service's answer: the two records are made durable at once.
    // One clock, CLOCK_MONOTONIC, for both processes.
    let edge_wait: f64 = ["open.durable", "open.request_sent", "open.response"]
        .into_iter()
        .map(|s| stage(&e, "tether_stage_seconds_total", s, "edge"))
        .sum();
    let client_part: f64 = [
        "accept.decided",
        "accept.queued",
        "accept.durable",
        "accept.peer_audited",
        "accept.service",
    ]
    .into_iter()
    .map(|s| stage(&c, "tether_stage_seconds_total", s, "client"))
    .sum();
    assert!(
        edge_wait > client_part,
        "the edge waited {edge_wait} s from OPEN, the client took {client_part} s before its service answered"
    );
}

#[tokio::test]
async fn without_the_flag_no_stage_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream::start(any()).await.unwrap();
    files::ensure_dev_pki(dir.path()).unwrap();
    let (edge, client) = topology(dir.path(), up.addr, false).await;
    calls(&edge).await;
    for (p, side) in [(&edge, "edge"), (&client, "client")] {
        let text = scrape(p.addr("admin")).await;
        assert!(
            text.contains("tether_streams_opened_total"),
            "{side} serves its metrics"
        );
        assert!(!text.contains("tether_stage_"), "{side}:\n{text}");
    }
}
