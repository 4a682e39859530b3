//! The audit trail through the running system: every stream of a mixed run
//! (allowed, denied at either end, refused, cancelled, failed upstream) has
//! exactly one open and one close record at each end that saw it, the logs
//! verify, and a log that cannot be written stops traffic until it can.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use proxy::audit::{verify_files, AuditRecord};
use proxy::policy::{parse_policy, Scope};
use tether_tests::audit_trail::{by_stream, records};
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::pb::EchoRequest;
use tether_tests::small_fs::SmallFs;
use tether_tests::topology::{Options, Topology};
use tonic::Code;
use tunnel_client::config::{Protocol, Service};

const EDGE: &str = r#"
[[rule]]
id = "dev-all"
effect = "allow"
callers = ["spiffe://tether.local/caller/dev"]

[[rule]]
id = "no-admin"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/admin"]
"#;

const CLIENT: &str = r#"
[[rule]]
id = "cp"
effect = "allow"
callers = ["spiffe://tether.local/caller/*"]

[[rule]]
id = "no-bidi"
effect = "deny"
callers = ["spiffe://tether.local/*"]
grpc = ["/tether.echo.v1.Echo/Bidi"]
"#;

async fn wait(log: &proxy::audit::AuditLog, n: u64) {
    tokio::time::timeout(Duration::from_secs(10), log.wait_written(n))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {n} audit records were written",
                log.stats().records_written
            )
        });
}

#[tokio::test]
async fn mixed_run_has_one_open_and_one_close_per_stream_at_each_end() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut extra = BTreeMap::new();
    extra.insert(
        "down".to_string(),
        Service {
            url: format!("http://127.0.0.1:{closed_port}").parse().unwrap(),
            protocol: Protocol::Http1,
            ca: None,
            client_identity: None,
        },
    );
    let topo = Topology::start_with(Options {
        edge_policy: parse_policy(EDGE, Scope::Edge).unwrap(),
        client_policy: parse_policy(CLIENT, Scope::Client).unwrap(),
        extra_services: extra,
        ..Options::default()
    })
    .await
    .unwrap();
    let client_log = topo.client.as_ref().unwrap().audit.clone();
    let mut grpc = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    let mut http = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();

    // 1. Allowed at both ends.
    grpc.unary(EchoRequest {
        text: "ok".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // 2. Denied at the edge.
    let resp = http
        .send(request(Method::GET, &topo.host("web"), "/admin", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // 3. Allowed at the edge, vetoed by the client.
    let status = grpc
        .bidi(tokio_stream::iter(vec![EchoRequest::default()]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // 4. Refused before any decision (non-canonical path) at the edge.
    let resp = http
        .send(request(Method::GET, &topo.host("web"), "/x/../admin", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // 5. Failed upstream.
    let resp = http
        .send(request(Method::GET, &topo.host("down"), "/", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    // 6. Cancelled by the caller while the service hangs.
    let mut hang = grpc.clone();
    let call = tokio::spawn(async move {
        hang.unary(EchoRequest {
            hang: true,
            ..Default::default()
        })
        .await
    });
    tokio::time::timeout(
        Duration::from_secs(5),
        topo.upstream.observed.wait_requests(2),
    )
    .await
    .unwrap();
    call.abort();
    tokio::time::timeout(
        Duration::from_secs(5),
        topo.upstream.observed.wait_cancelled(1),
    )
    .await
    .unwrap();
    // 7. Unknown tunnel.
    let resp = http
        .send(request(Method::GET, "web.nope.tunnel.local", "/", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Edge saw 7 streams, the client 4 (1, 3, 5, 6).
    wait(&topo.edge_audit_log, 14).await;
    wait(&client_log, 8).await;
    let edge = by_stream(&records(&topo.edge_audit));
    let client = by_stream(&records(&topo.client_audit));
    assert_eq!(edge.len(), 7, "{edge:#?}");
    assert_eq!(client.len(), 4, "{client:#?}");

    let find = |m: &BTreeMap<u64, (AuditRecord, AuditRecord)>, path: &str| {
        m.values()
            .find(|(o, _)| o.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("no stream for {path}"))
    };
    let (o, c) = find(&edge, "/tether.echo.v1.Echo/Unary");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("allow"), Some("dev-all"))
    );
    assert_eq!(o.tunnel, "spiffe://tether.local/tunnel/demo");
    assert_eq!(o.caller, "spiffe://tether.local/caller/dev");
    assert!(c.bytes_in.unwrap() > 0 && c.bytes_out.unwrap() > 0);
    let (o, c) = find(&edge, "/admin");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), Some("no-admin"))
    );
    assert_eq!(c.http_status, Some(403));
    let (o, _) = find(&edge, "/x/../admin");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.reason.as_deref()),
        (Some("refuse"), Some("bad-request"))
    );
    let (o, _) = find(&client, "/tether.echo.v1.Echo/Bidi");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), Some("no-bidi"))
    );
    assert_eq!(o.side, "client");
    let (_, c) = find(&client, "/");
    assert_eq!(c.http_status, Some(502));
    assert!(c.error.unwrap().contains("unreachable"));
    let unary: Vec<_> = client
        .values()
        .filter(|(o, _)| o.path == "/tether.echo.v1.Echo/Unary")
        .collect();
    assert_eq!(unary.len(), 2);
    assert!(
        unary.iter().any(|(_, c)| c.error.is_some()),
        "the cancelled call's close record names an error"
    );
    assert!(unary
        .iter()
        .any(|(_, c)| c.error.is_none() && c.grpc_status == Some(0)));
    // Request ids correlate the two ends.
    for (o, _) in client.values() {
        assert!(
            edge.values().any(|(e, _)| e.request_id == o.request_id),
            "{o:?}"
        );
    }
    verify_files(std::slice::from_ref(&topo.edge_audit)).unwrap();
    verify_files(std::slice::from_ref(&topo.client_audit)).unwrap();
    topo.shutdown().await;
}

async fn refuses_while_full_then_recovers(edge_side: bool) {
    let fs = SmallFs::mount().expect("a tmpfs to fill");
    let mut opts = Options::default();
    if edge_side {
        opts.edge_audit_dir = Some(fs.path().to_path_buf());
    } else {
        opts.client_audit_dir = Some(fs.path().to_path_buf());
    }
    let topo = Topology::start_with(opts).await.unwrap();
    let mut http = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let host = topo.host("web");
    let resp = http
        .send(request(Method::GET, &host, "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    let served = topo.upstream.observed.requests();

    fs.fill().unwrap();
    // The log's last page keeps some room after the disk is full, and a
    // failed write is truncated away, so a small record may still fit after
    // a larger one failed: a stream is served exactly when its open record
    // was written (checked against the log below). The room only shrinks,
    // so the log soon refuses every new stream.
    let mut served_while_filling = 0;
    let mut refused_in_a_row = 0;
    for _ in 0..500 {
        let resp = http
            .send(request(Method::GET, &host, "/hello", empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let unavailable = resp
            .headers()
            .get("tether-error")
            .is_some_and(|v| v == "unavailable");
        let body = tether_tests::upstream::collect(resp.into_body())
            .await
            .unwrap();
        match status {
            200 => {
                served_while_filling += 1;
                refused_in_a_row = 0;
            }
            503 => {
                assert!(unavailable);
                assert!(String::from_utf8_lossy(&body).contains("audit log"));
                refused_in_a_row += 1;
                if refused_in_a_row == 3 {
                    break;
                }
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        refused_in_a_row, 3,
        "the audit log never refused streams steadily on a full disk"
    );
    let served = served + served_while_filling;
    let mut grpc = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    let status = grpc.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        topo.upstream.observed.requests(),
        served,
        "nothing is forwarded unaudited"
    );
    if edge_side {
        assert!(!topo.edge_audit_log.healthy());
    } else {
        assert!(!topo.client.as_ref().unwrap().audit.healthy());
    }

    fs.free().unwrap();
    // Service resumes by itself: the next stream's write succeeds.
    let resp = http
        .send(request(Method::GET, &host, "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    grpc.unary(EchoRequest::default()).await.unwrap();
    let path = if edge_side {
        topo.edge_audit.clone()
    } else {
        topo.client_audit.clone()
    };
    let log = if edge_side {
        topo.edge_audit_log.clone()
    } else {
        topo.client.as_ref().unwrap().audit.clone()
    };
    assert!(log.healthy());
    let written = log.stats().records_written;
    wait(&log, written).await;
    topo.shutdown().await;
    verify_files(std::slice::from_ref(&path)).expect("the chain survives the outage intact");
    // Every /hello the service answered has its allow record in this log:
    // the one before the fill, those served while filling, the one after.
    let allowed = records(&path)
        .iter()
        .filter(|r| {
            r.event == proxy::audit::Event::Open
                && r.path == "/hello"
                && r.decision.map(|d| d.as_str()) == Some("allow")
        })
        .count();
    assert_eq!(
        allowed as u64,
        served_while_filling + 2,
        "served without a durable open record"
    );
}

#[tokio::test]
async fn a_full_disk_at_the_edge_refuses_streams_until_space_returns() {
    refuses_while_full_then_recovers(true).await;
}

#[tokio::test]
async fn a_full_disk_at_the_client_refuses_streams_until_space_returns() {
    refuses_while_full_then_recovers(false).await;
}
