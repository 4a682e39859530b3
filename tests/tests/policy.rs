//! Authorisation through the running system: allowed and denied calls at
//! the edge and at the client, bypass attempts with non-canonical spellings,
//! and policy reloads under concurrent traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use proxy::policy::{parse_policy, Policy, Scope};
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{allow_all, Options, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const EDGE: &str = r#"
[[rule]]
id = "dev-web"
effect = "allow"
callers = ["spiffe://tether.local/caller/dev"]
tunnels = ["spiffe://tether.local/tunnel/demo"]
services = ["web"]

[[rule]]
id = "dev-echo-unary"
effect = "allow"
callers = ["spiffe://tether.local/caller/dev"]
services = ["echo"]
grpc = ["/tether.echo.v1.Echo/Unary", "/tether.echo.v1.Echo/Bidi"]

[[rule]]
id = "no-admin"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/admin"]
"#;

const CLIENT: &str = r#"
[[rule]]
id = "cp-callers"
effect = "allow"
callers = ["spiffe://tether.local/caller/*"]

[[rule]]
id = "no-bidi-here"
effect = "deny"
callers = ["spiffe://tether.local/*"]
grpc = ["/tether.echo.v1.Echo/Bidi"]
"#;

fn policy(text: &str, scope: Scope) -> Policy {
    parse_policy(text, scope).unwrap()
}

async fn topo() -> Topology {
    Topology::start_with(Options {
        edge_policy: policy(EDGE, Scope::Edge),
        client_policy: policy(CLIENT, Scope::Client),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Sends raw bytes as an HTTP/1.1 request and returns the status code, so
/// the request line reaches the edge exactly as written.
async fn raw_status(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    let read = async {
        loop {
            let n = tcp.read(&mut buf[got..]).await.unwrap();
            got += n;
            if n == 0 || buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..got]);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn allowed_and_denied_http_calls() {
    let topo = topo().await;
    let host = topo.host("web");
    let mut http = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let resp = http
        .send(request(Method::GET, &host, "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(topo.upstream.observed.requests(), 1);

    let resp = http
        .send(request(Method::GET, &host, "/admin/users", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["tether-error"], "denied");
    let body = tether_tests::upstream::collect(resp.into_body())
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("rule 'no-admin'"), "{body}");
    assert_eq!(
        topo.upstream.observed.requests(),
        1,
        "a denied call reached the upstream"
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn grpc_denials_at_edge_and_at_client() {
    let topo = topo().await;
    let mut client = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    client
        .unary(EchoRequest::default())
        .await
        .expect("allowed at both ends");
    let before = topo.upstream.observed.requests();

    // Denied by the edge: no allow rule for ServerStream.
    let status = client
        .server_stream(tether_tests::pb::StreamRequest::default())
        .await
        .expect_err("edge denies");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("default deny"),
        "{}",
        status.message()
    );

    // Allowed by the edge, vetoed by the client's own rule.
    let status = client
        .bidi(tokio_stream::iter(vec![EchoRequest::default()]))
        .await
        .expect_err("client vetoes");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("no-bidi-here"),
        "{}",
        status.message()
    );
    assert_eq!(
        topo.upstream.observed.requests(),
        before,
        "a denied call reached the upstream"
    );
    topo.shutdown().await;
}

#[tokio::test]
async fn non_canonical_spellings_never_reach_the_upstream() {
    let topo = topo().await;
    let host = topo.host("web");
    let attempts = [
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%2e%2e/admin",
        "/%2E/admin",
        "/%2fadmin",
        "/x%2F..%2Fadmin",
        "/admin%00",
        "/ad%zzmin",
        "/x/..",
        "/x\\..\\admin",
    ];
    for path in attempts {
        let status = raw_status(
            topo.plaintext_addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 400, "{path} must be refused as non-canonical");
    }
    // Mixed case hits the deny rule (deny rules ignore case).
    for path in ["/ADMIN", "/Admin/users"] {
        let status = raw_status(
            topo.plaintext_addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 403, "{path}");
    }
    // A host naming another tunnel than the absolute-form target.
    let status = raw_status(
        topo.plaintext_addr,
        &format!("GET http://web.other.tunnel.local/hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    // Bad authorities.
    for bad_host in ["web.demo.tunnel.local:xx", "user@web.demo.tunnel.local"] {
        let status = raw_status(
            topo.plaintext_addr,
            &format!("GET /hello HTTP/1.1\r\nHost: {bad_host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(status == 400 || status == 404, "{bad_host}: {status}");
    }
    assert_eq!(
        topo.upstream.observed.requests(),
        0,
        "a bypass attempt reached the upstream"
    );
    // The same connection spelling canonically still works.
    let status = raw_status(
        topo.plaintext_addr,
        &format!("GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    topo.shutdown().await;
}

#[tokio::test]
async fn grpc_paths_must_name_one_method() {
    let topo = topo().await;
    let host = topo.host("echo");
    for path in [
        "/tether.echo.v1.Echo/Unary/x",
        "/tether.echo.v1.Echo",
        "/tether.echo.v1.Echo/Unary?x=1",
    ] {
        let status = raw_status(
            topo.plaintext_addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        // gRPC refusals are HTTP 200 with a grpc-status; any non-forwarded answer is fine here.
        assert!(status == 200 || status == 400, "{path}: {status}");
    }
    assert_eq!(topo.upstream.observed.requests(), 0);
    topo.shutdown().await;
}

#[tokio::test]
async fn reloads_under_traffic_never_lose_or_wrongly_allow_a_stream() {
    // Policy A allows /hello; policy B allows /hello and /headers. Neither
    // ever allows /admin. Swap between them while callers hammer all three.
    let a = r#"
[[rule]]
id = "hello"
effect = "allow"
callers = ["spiffe://tether.local/*"]
paths = ["/hello"]
"#;
    let b = r#"
[[rule]]
id = "hello-and-headers"
effect = "allow"
callers = ["spiffe://tether.local/*"]
paths = ["/hello", "/headers"]

[[rule]]
id = "admin"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/admin"]
"#;
    let topo = Topology::start_with(Options {
        edge_policy: policy(a, Scope::Edge),
        client_policy: allow_all(Scope::Client),
        ..Options::default()
    })
    .await
    .unwrap();
    let (pa, pb) = (policy(a, Scope::Edge), policy(b, Scope::Edge));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let handle = topo.edge_policy.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                handle.swap(if n % 2 == 0 { pb.clone() } else { pa.clone() });
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let mut callers = Vec::new();
    for worker in 0..8 {
        let (addr, host) = (topo.plaintext_addr, topo.host("web"));
        callers.push(tokio::spawn(async move {
            let mut http = HttpCaller::plaintext(addr, false).await.unwrap();
            let mut seen = (0u32, 0u32);
            for i in 0..60 {
                let path = ["/hello", "/headers", "/admin"][(i + worker) % 3];
                let resp = http
                    .send(request(Method::GET, &host, path, empty()).unwrap())
                    .await
                    .expect("stream lost");
                let status = resp.status().as_u16();
                let _ = tether_tests::upstream::collect(resp.into_body())
                    .await
                    .expect("body lost");
                match path {
                    "/hello" => assert_eq!(status, 200, "/hello is allowed by both policies"),
                    "/admin" => assert_eq!(status, 403, "/admin is allowed by neither policy"),
                    _ => {
                        assert!(status == 200 || status == 403, "/headers got {status}");
                        if status == 200 {
                            seen.0 += 1
                        } else {
                            seen.1 += 1
                        }
                    }
                }
            }
            seen
        }));
    }
    let (mut allowed, mut denied) = (0u32, 0u32);
    for c in callers {
        let (a, d) = c.await.unwrap();
        allowed += a;
        denied += d;
    }
    // Both policies must have been seen in force on /headers; keep calling
    // (the swapper still alternating) until they have, within a bound.
    let mut http = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let host = topo.host("web");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while allowed == 0 || denied == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only one policy was ever seen in force ({allowed} allowed, {denied} denied)"
        );
        let resp = http
            .send(request(Method::GET, &host, "/headers", empty()).unwrap())
            .await
            .expect("stream lost");
        match resp.status().as_u16() {
            200 => allowed += 1,
            403 => denied += 1,
            other => panic!("/headers got {other}"),
        }
        let _ = tether_tests::upstream::collect(resp.into_body()).await;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.await.unwrap();
    assert!(swaps > 0);
    // Every call was decided by one of the two policies, whole: an allow of
    // /headers names B's rule, a denial of it is A's default deny, /hello
    // is allowed by A's or B's rule, /admin denied by B's rule or A's
    // default deny. Nothing else.
    let calls = 8 * 60 + u64::from(allowed + denied) - 8 * 20;
    tokio::time::timeout(
        Duration::from_secs(30),
        topo.edge_audit_log.wait_written(2 * calls),
    )
    .await
    .expect("every call's records");
    let opens: Vec<_> = tether_tests::audit_trail::records(&topo.edge_audit)
        .into_iter()
        .filter(|r| r.event == proxy::audit::Event::Open)
        .collect();
    assert!(!opens.is_empty());
    for o in &opens {
        let decided = (
            o.path.as_str(),
            o.decision.map(|d| d.as_str()),
            o.rule.as_deref(),
        );
        let by_a_or_b = matches!(
            decided,
            ("/headers", Some("allow"), Some("hello-and-headers"))
                | ("/headers", Some("deny"), None)
                | ("/hello", Some("allow"), Some("hello" | "hello-and-headers"))
                | ("/admin", Some("deny"), Some("admin") | None)
        );
        assert!(by_a_or_b, "decided by neither policy: {decided:?}");
    }
    topo.shutdown().await;
}
