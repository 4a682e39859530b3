//! Logs and traces as an operator collects them: the real binaries with
//! stderr piped (not a terminal) and `NO_COLOR` unset. Text logs carry no
//! ANSI escape sequences; `--log-format json` writes one JSON object per
//! line; a stream's log lines carry its stream id, request id, trace id,
//! tunnel and service; a caller's W3C `traceparent` reaches the service
//! unchanged and its trace id is in the open and close audit records at
//! both ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use proxy::audit::{Durability, Event};
use tether_tests::audit_trail::records;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Launch, Process};
use tether_tests::upstream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn logs_are_plain_or_json_and_streams_carry_their_ids_and_trace() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    files::ensure_dev_pki(d).unwrap();
    let up = upstream::start(any()).await.unwrap();
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: "tests/tests/logs.rs".into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: None,
            cp_upstream: up.addr,
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    // Debug for the stream lines; colour allowed, so only the terminal
    // check keeps escape sequences out.
    let debug = "info,proxy=debug,tunnel_server=debug,tunnel_client=debug";
    let edge = Process::start_launched(
        "tunnel-server",
        &edge_toml,
        &Launch {
            args: vec!["--log-format".into(), "json".into()],
            log_filter: debug.into(),
            no_color: false,
        },
    )
    .await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: "tests/tests/logs.rs".into(),
            edge_address: edge.addr("tunnels"),
            upstream: up.addr,
            admin_listen: None,
            egress_listen: any(),
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let client = Process::start_launched(
        "tunnel-client",
        &client_toml,
        &Launch {
            args: Vec::new(),
            log_filter: debug.into(),
            no_color: false,
        },
    )
    .await;

    let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
        .await
        .unwrap();
    let mut req = tonic::Request::new(EchoRequest {
        text: "traced".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());
    echo.unary(req).await.unwrap();

    let ended = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.contains("stream ended") && l.contains(TRACE_ID))
            .cloned()
    };
    edge.log
        .wait_until("the edge's line for the traced stream", |l| {
            ended(l).is_some()
        })
        .await;
    client
        .log
        .wait_until("the client's line for the traced stream", |l| {
            ended(l).is_some()
        })
        .await;

    // The edge: JSON, one object per line, the stream's fields in its span.
    let edge_lines: Vec<String> = edge.log.text().lines().map(str::to_string).collect();
    for line in &edge_lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
    }
    let line: serde_json::Value = serde_json::from_str(&ended(&edge_lines).unwrap()).unwrap();
    let span = &line["span"];
    assert_eq!(span["name"], "stream", "{line}");
    assert_eq!(span["trace_id"], TRACE_ID, "{line}");
    assert_eq!(span["service"], "echo", "{line}");
    assert!(
        span["tunnel"].as_str().unwrap().ends_with("/tunnel/demo"),
        "{line}"
    );
    assert_eq!(span["stream_id"], 0, "{line}");
    let request_id = span["request_id"].as_str().unwrap().to_string();
    assert_eq!(request_id.len(), 32, "{line}");

    // The client: text, the same stream named the same way.
    let client_lines: Vec<String> = client.log.text().lines().map(str::to_string).collect();
    let text = ended(&client_lines).unwrap();
    for field in [
        format!("trace_id=\"{TRACE_ID}\""),
        format!("request_id={request_id}"),
        "service=\"echo\"".to_string(),
        "stream_id=".to_string(),
        "tunnel=".to_string(),
    ] {
        assert!(text.contains(&field), "{field} missing from {text}");
    }

    // Piped with NO_COLOR unset: no escape sequence in either log.
    for (name, p) in [("edge", &edge), ("client", &client)] {
        let text = p.log.text();
        assert!(
            !text.contains('\u{1b}'),
            "{name}: escape sequences in a piped log:\n{text}"
        );
    }

    // Both audit records of the stream carry the trace id, at both ends.
    for log in ["audit/edge.log", "audit/client-demo.log"] {
        let of_stream: Vec<_> = records(&d.join(log))
            .into_iter()
            .filter(|r| r.request_id == request_id)
            .collect();
        assert_eq!(of_stream.len(), 2, "{log}: {of_stream:?}");
        assert_eq!(of_stream[0].event, Event::Open);
        assert_eq!(of_stream[1].event, Event::Close);
        for r in &of_stream {
            assert_eq!(r.trace_id.as_deref(), Some(TRACE_ID), "{log}: {r:?}");
        }
    }
}
