//! Egress: data-plane workloads reach control-plane upstreams through the
//! client's local proxy and the same outbound tunnel, under the tunnel's
//! identity, both ends' egress policies and both ends' audit.
//!
//! Covered end to end over real sockets: gRPC of every streaming kind with
//! statuses and metadata; HTTP/1.1 and h2c bodies (Content-Length, chunked,
//! 256 MiB both ways at once in bounded memory); an ordinary client
//! configured by `http_proxy` (curl); denials at either end and by workload
//! label; names that are not upstreams (the edge is not an open proxy);
//! an upstream or the tunnel down; forged identity headers; the audit
//! trail at both ends.
//!
//! No test sleeps to synchronise: each waits on an event, and every wait is
//! bounded so a regression fails instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use proxy::audit::{verify_files, AuditLog, AuditRecord};
use proxy::policy::{parse_policy, Policy, Scope};
use tether_tests::audit_trail::{by_stream, records};
use tether_tests::callers::{
    empty, full, grpc_plaintext, request, request_h2, HttpCaller, ReqBody,
};
use tether_tests::pb::{EchoRequest, StreamRequest};
use tether_tests::topology::{Options, Topology};
use tether_tests::upstream::collect;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tunnel_client::config::{Protocol, Service};
use tunnel_client::TunnelState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// The demo tunnel's identity: the caller of every egress call.
const TUNNEL_ID: &str = "spiffe://tether.local/tunnel/demo";

/// What an upstream learns about an egress call: the edge that delivered it
/// and the tunnel that made it.
const XFCC: &str = "By=spiffe://tether.local/edge/edge-1;URI=spiffe://tether.local/tunnel/demo";

/// Tests in this file share one process. The large-body test measures the
/// process's memory, so it takes this lock exclusively and every other test
/// takes it shared: nothing else allocates while it measures.
static PROCESS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Awaits `fut`, failing the test with `what` if it takes longer than
/// [`WAIT`].
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

fn policy(text: &str) -> Policy {
    parse_policy(text, Scope::Egress).unwrap()
}

/// An edge upstream at `url` over `protocol`.
fn upstream_at(url: &str, protocol: Protocol) -> Service {
    Service {
        url: url.parse().unwrap(),
        protocol,
        ca: None,
        client_identity: None,
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn text(resp: http::Response<Incoming>) -> String {
    let body = within("response body", collect(resp.into_body()))
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// `name: value` lines from the example service's `GET /headers`.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn header_values<'a>(seen: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    seen.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Sends `req` on a fresh HTTP/1.1 connection to the egress listener.
async fn send_h1(topo: &Topology, req: http::Request<ReqBody>) -> http::Response<Incoming> {
    let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), false)
        .await
        .unwrap();
    within("egress response", caller.send(req)).await.unwrap()
}

async fn get(topo: &Topology, host: &str, path: &str) -> http::Response<Incoming> {
    send_h1(topo, request(Method::GET, host, path, empty()).unwrap()).await
}

/// Asserts a plain-HTTP refusal: status, `tether-error`, and a message that
/// contains `says`. Returns the message.
async fn assert_refused(
    resp: http::Response<Incoming>,
    status: StatusCode,
    code: &str,
    says: &str,
) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["tether-error"], code);
    let msg = text(resp).await;
    assert!(msg.contains(says), "'{msg}' should say '{says}'");
    msg
}

/// Asserts a gRPC refusal by Tether: code, `tether-error`, message.
fn assert_grpc_refused(status: &tonic::Status, code: Code, error: &str, says: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("tether-error")
            .map(|v| v.to_str().unwrap()),
        Some(error),
        "{status:?}"
    );
    assert!(
        status.message().contains(says),
        "'{}' should say '{says}'",
        status.message()
    );
}

/// The one stream of a log whose path is `path`.
fn stream_for(log: &Path, path: &str) -> (AuditRecord, AuditRecord) {
    let streams = by_stream(&records(log));
    let found: Vec<_> = streams.values().filter(|(o, _)| o.path == path).collect();
    assert_eq!(found.len(), 1, "streams for {path}: {streams:#?}");
    found[0].clone()
}

async fn wait_audit(log: &AuditLog, n: u64) {
    within(&format!("{n} audit records"), log.wait_written(n)).await;
}

fn client_log(topo: &Topology) -> AuditLog {
    topo.client.as_ref().unwrap().audit.clone()
}

#[tokio::test]
async fn grpc_and_http_reach_control_plane_upstreams() {
    let _shared = PROCESS.read().await;
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

// ---------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------

/// A gRPC client dials the egress listener with the upstream's name as its
/// authority: unary, server-streaming, client-streaming and bidirectional
/// calls reach `cp-echo` with messages, response metadata (text and binary)
/// and the service's own statuses (with their metadata) intact, and the
/// service learns the calling tunnel from the edge's XFCC.
#[tokio::test]
async fn grpc_streaming_kinds_statuses_and_metadata_cross_egress() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();

    // Unary, with request metadata and binary payload.
    let mut req = tonic::Request::new(EchoRequest {
        text: "unary".into(),
        payload: vec![0, 1, 2, 0xff],
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-app-meta", "from-the-workload".parse().unwrap());
    let resp = within("unary", grpc.unary(req)).await.unwrap();
    assert_eq!(resp.metadata().get("x-echo").unwrap(), "yes");
    assert_eq!(
        resp.metadata()
            .get_bin("x-echo-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        [0xde, 0xad, 0xbe, 0xef]
    );
    let reply = resp.into_inner();
    assert_eq!(
        (reply.text.as_str(), reply.payload.as_slice()),
        ("unary", &[0, 1, 2, 0xff][..])
    );
    assert_eq!(reply.caller, XFCC);

    // The service's own failure, with its metadata, is not a Tether error.
    let status = within(
        "failing unary",
        grpc.unary(EchoRequest {
            text: "nope".into(),
            fail_code: Code::FailedPrecondition as u32,
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "failed as asked: nope");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "detail-text");
    assert_eq!(
        status
            .metadata()
            .get_bin("x-detail-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        [0, 1, 2, 255]
    );
    assert!(status.metadata().get("tether-error").is_none());

    // Server streaming.
    let mut stream = within(
        "server stream head",
        grpc.server_stream(StreamRequest {
            text: "s".into(),
            count: 5,
            hang_after: false,
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let mut seen = Vec::new();
    while let Some(msg) = within("server stream message", stream.message())
        .await
        .unwrap()
    {
        assert_eq!(msg.caller, XFCC);
        seen.push((msg.seq, msg.text));
    }
    assert_eq!(
        seen,
        (0..5u64).map(|i| (i, format!("s-{i}"))).collect::<Vec<_>>()
    );

    // Client streaming.
    let msgs = (0..4).map(|i| EchoRequest {
        text: format!("c{i}"),
        payload: vec![i as u8; 1000],
        ..Default::default()
    });
    let reply = within(
        "client stream",
        grpc.client_stream(tokio_stream::iter(msgs.collect::<Vec<_>>())),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!((reply.text.as_str(), reply.seq), ("c0c1c2c3", 4));
    assert_eq!(reply.payload.len(), 4000);
    assert_eq!(reply.caller, XFCC);

    // Bidirectional, interleaved, ending with the service's status.
    let (tx, rx) = mpsc::channel(4);
    let mut replies = within("bidi head", grpc.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3u64 {
        tx.send(EchoRequest {
            text: format!("b{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = within("bidi reply", replies.message())
            .await
            .unwrap()
            .expect("a reply per message");
        assert_eq!((reply.text, reply.seq), (format!("b{i}"), i));
        assert_eq!(reply.caller, XFCC);
    }
    tx.send(EchoRequest {
        fail_code: Code::ResourceExhausted as u32,
        ..Default::default()
    })
    .await
    .unwrap();
    let status = within("bidi failure", replies.message())
        .await
        .expect_err("the stream ends with the service's status");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "failed as asked");

    assert_eq!(topo.cp_upstream.observed.requests(), 5);
    assert_eq!(
        topo.upstream.observed.requests(),
        0,
        "egress never touches the data-plane service"
    );
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// HTTP bodies
// ---------------------------------------------------------------------------

const CHUNK: usize = 64 * 1024;

/// 64 KiB of xorshift noise: the base every generated chunk is made from.
fn noise() -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Chunk `k` of a generated body: the noise with `k` in its first 8 bytes,
/// so lost, repeated, reordered or corrupted chunks are all detected.
fn chunk_at(base: &[u8], k: u64) -> Bytes {
    let mut b = BytesMut::from(base);
    b[..8].copy_from_slice(&k.to_le_bytes());
    b.freeze()
}

/// Checks streamed bytes against the generated body, whatever the frame
/// boundaries.
struct Verifier {
    base: Vec<u8>,
    offset: u64,
    current: (u64, Bytes),
}

impl Verifier {
    fn new(base: Vec<u8>) -> Self {
        Self {
            base,
            offset: 0,
            current: (u64::MAX, Bytes::new()),
        }
    }

    fn check(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let k = self.offset / CHUNK as u64;
            let at = (self.offset % CHUNK as u64) as usize;
            if self.current.0 != k {
                self.current = (k, chunk_at(&self.base, k));
            }
            let take = data.len().min(CHUNK - at);
            assert!(
                data[..take] == self.current.1[at..at + take],
                "echoed bytes differ from what was sent in the 64 KiB chunk at offset {}",
                self.offset - at as u64
            );
            data = &data[take..];
            self.offset += take as u64;
        }
    }
}

/// A chunked body: uneven pieces (one empty, which must not end the body
/// early) and no size hint, so hyper sends `Transfer-Encoding: chunked`.
fn chunked_body(pieces: Vec<Bytes>) -> ReqBody {
    let frames = futures_util::stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<_, BoxError>(Frame::data(p))),
    );
    StreamBody::new(frames).boxed_unsync()
}

/// HTTP/1.1 workloads POST bodies framed by Content-Length and by chunked
/// encoding, in origin form and in absolute form, to an HTTP/1.1 upstream
/// (`cp-web`) and an h2c one (`cp-echo`): the echo comes back byte-exact,
/// and a declared length stays declared end to end.
#[tokio::test]
async fn http1_bodies_cross_egress_byte_exact() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let noise = Bytes::from(noise());
    let sized = Bytes::from([noise.clone(), noise.slice(..1234)].concat());
    let pieces = vec![
        noise.slice(..1),
        noise.slice(1..11),
        Bytes::new(),
        noise.slice(11..4107),
        noise.clone(),
        noise.slice(..777),
    ];
    let chunked: Bytes = pieces.concat().into();

    for svc in ["cp-web", "cp-echo"] {
        for absolute in [false, true] {
            let case = format!("{svc}, absolute form: {absolute}");
            let req = |body: ReqBody| {
                let mut req = request(Method::POST, svc, "/echo", body).unwrap();
                if absolute {
                    *req.uri_mut() = format!("http://{svc}/echo").parse().unwrap();
                }
                req
            };
            let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), false)
                .await
                .unwrap();

            let resp = within("Content-Length echo", caller.send(req(full(sized.clone()))))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{case}");
            assert_eq!(
                resp.headers()[http::header::CONTENT_LENGTH],
                sized.len().to_string().as_str(),
                "{case}: the declared length did not survive"
            );
            assert!(collect(resp.into_body()).await.unwrap() == sized, "{case}");

            let resp = within(
                "chunked echo",
                caller.send(req(chunked_body(pieces.clone()))),
            )
            .await
            .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{case}");
            assert!(
                !resp.headers().contains_key(http::header::CONTENT_LENGTH),
                "{case}: a chunked echo cannot know its length"
            );
            assert!(
                collect(resp.into_body()).await.unwrap() == chunked,
                "{case}"
            );

            // An empty POST, on the same connection.
            let resp = within("empty echo", caller.send(req(full(Bytes::new()))))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{case}");
            assert!(
                collect(resp.into_body()).await.unwrap().is_empty(),
                "{case}"
            );
        }
    }
    assert_eq!(topo.cp_upstream.observed.requests(), 12);
    topo.shutdown().await;
}

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// POSTs `total` generated bytes to `/echo` on `svc` through the egress
/// listener and reads the echo while still sending. Checks every byte, that
/// the echo began long before the upload ended, and returns the process's
/// memory growth in KiB while it ran.
async fn echo_large(topo: &Topology, svc: &str, h2: bool, total: u64) -> u64 {
    let chunks = total / CHUNK as u64;
    let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), h2)
        .await
        .unwrap();
    let base = noise();
    let produced = Arc::new(AtomicU64::new(0));
    let body: ReqBody = {
        let (base, produced) = (base.clone(), produced.clone());
        let frames = futures_util::stream::iter(0..chunks).map(move |k| {
            let chunk = chunk_at(&base, k);
            produced.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok::<_, BoxError>(Frame::data(chunk))
        });
        StreamBody::new(frames).boxed_unsync()
    };
    let req = if h2 {
        request_h2(Method::POST, svc, "/echo", body).unwrap()
    } else {
        // A declared length on a streamed body: HTTP/1.1 framing by
        // Content-Length end to end.
        let mut req = request(Method::POST, svc, "/echo", body).unwrap();
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(total));
        req
    };

    // Peak RSS from here on: resetting VmHWM makes it a measurement of this
    // run; where that is not allowed, sampled VmRSS is used instead.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_kib("VmRSS:");
    let mut rss_peak = rss_before;
    let started = Instant::now();
    let resp = within("echo response head", caller.send(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    if !h2 {
        assert_eq!(
            resp.headers()[http::header::CONTENT_LENGTH],
            total.to_string().as_str(),
            "the declared length did not survive"
        );
    }
    let mut body = resp.into_body();
    let mut verifier = Verifier::new(base);
    let mut produced_at_first_echo = None;
    let mut next_sample = 0u64;
    let read_all = async {
        while let Some(frame) = within("next echoed frame", body.frame()).await {
            let frame = frame.expect("echo body failed");
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if produced_at_first_echo.is_none() && !data.is_empty() {
                produced_at_first_echo = Some(produced.load(Ordering::SeqCst));
            }
            verifier.check(&data);
            if verifier.offset >= next_sample {
                rss_peak = rss_peak.max(proc_status_kib("VmRSS:"));
                next_sample += 16 << 20;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read_all)
        .await
        .expect("the echo did not finish within 10 minutes");
    let elapsed = started.elapsed();
    assert_eq!(
        verifier.offset, total,
        "{svc}: echo ended early or ran long"
    );
    let first = produced_at_first_echo.expect("no echoed bytes");
    assert!(
        first < total / 4,
        "{svc}: echo began only after {first} bytes were produced: something buffers the request"
    );
    if hwm_reset {
        rss_peak = rss_peak.max(proc_status_kib("VmHWM:"));
    }
    let growth = rss_peak.saturating_sub(rss_before);
    println!(
        "{svc} ({}): {} MiB echoed in {elapsed:.2?}; RSS +{} MiB ({}); first echo after {} MiB sent",
        if h2 { "h2c" } else { "HTTP/1.1" },
        total >> 20,
        growth / 1024,
        if hwm_reset { "VmHWM" } else { "sampled VmRSS" },
        first >> 20,
    );
    growth
}

/// 256 MiB POSTed to `/echo` through the egress listener, read back while
/// still being sent: over HTTP/1.1 with a declared length to the HTTP/1.1
/// upstream `cp-web`, and over h2c to the h2c upstream `cp-echo`. Every
/// byte comes back in order, the echo starts long before the upload ends,
/// and the process (workload, client, edge and upstream together) grows by
/// far less than the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_bodies_stream_both_ways_at_once_in_bounded_memory() {
    const TOTAL: u64 = 256 << 20;
    const MAX_GROWTH_KIB: u64 = 96 * 1024;
    let _alone = PROCESS.write().await;
    let topo = Topology::start().await.unwrap();
    for (svc, h2) in [("cp-web", false), ("cp-echo", true)] {
        let growth = echo_large(&topo, svc, h2, TOTAL).await;
        assert!(
            growth < MAX_GROWTH_KIB,
            "{svc}: RSS grew by {} MiB while streaming 256 MiB: a body is being buffered",
            growth / 1024
        );
    }
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// A standard client configured by environment
// ---------------------------------------------------------------------------

/// `curl` on `PATH`, if installed.
fn find_curl() -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("curl"))
        .find(|p| p.is_file())
}

/// An unmodified HTTP client pointed at the listener by `http_proxy` (curl
/// honours the lowercase variable) fetches `http://cp-web/hello`: it sends
/// the absolute form a proxy expects and gets the upstream's answer.
#[tokio::test]
async fn curl_with_http_proxy_reaches_an_upstream() {
    let _shared = PROCESS.read().await;
    // CI installs curl (.ci/run); without it this test fails, never skips.
    let curl = find_curl().expect("curl on PATH (apt-get install curl)");
    let topo = Topology::start().await.unwrap();
    let port = topo.egress_addr.unwrap().port();
    let mut cmd = tokio::process::Command::new(curl);
    // -q first: ignore any ~/.curlrc.
    cmd.args(["-q", "-sS", "--max-time", "20", "http://cp-web/hello"])
        .env("http_proxy", format!("http://127.0.0.1:{port}"))
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .kill_on_drop(true);
    let out = within("curl", cmd.output()).await.unwrap();
    assert!(
        out.status.success(),
        "curl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("hello from the example service; you are {XFCC}\n")
    );
    assert_eq!(topo.cp_upstream.observed.requests(), 1);
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Denials
// ---------------------------------------------------------------------------

const EDGE_DENIES: &str = r#"
[[rule]]
id = "edge-tunnels"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/*"]
services = ["cp-web", "cp-echo"]

[[rule]]
id = "edge-no-secrets"
effect = "deny"
callers = ["spiffe://tether.local/*"]
services = ["cp-web"]
paths = ["/secrets"]

[[rule]]
id = "edge-no-bidi"
effect = "deny"
callers = ["spiffe://tether.local/*"]
grpc = ["/tether.echo.v1.Echo/Bidi"]
"#;

const CLIENT_ALLOWS_APP: &str = r#"
[[rule]]
id = "client-app"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/demo"]
workloads = ["app"]
"#;

/// The edge's egress policy denies: the workload gets 403 / PERMISSION_DENIED
/// naming the edge's rule, nothing reaches the upstream, the edge records the
/// denial, and the client records its own allow and the refusal it passed on.
#[tokio::test]
async fn denied_by_the_edge_egress_policy() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start_with(Options {
        edge_egress_policy: policy(EDGE_DENIES),
        client_egress_policy: policy(CLIENT_ALLOWS_APP),
        ..Options::default()
    })
    .await
    .unwrap();
    let resp = get(&topo, "cp-web", "/secrets").await;
    assert_refused(resp, StatusCode::FORBIDDEN, "denied", "'edge-no-secrets'").await;
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();
    let status = within(
        "denied bidi",
        grpc.bidi(tokio_stream::iter(vec![EchoRequest::default()])),
    )
    .await
    .unwrap_err();
    assert_grpc_refused(&status, Code::PermissionDenied, "denied", "'edge-no-bidi'");
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    // The same policies allow the rest.
    let resp = get(&topo, "cp-web", "/hello").await;
    assert_eq!(resp.status(), StatusCode::OK);
    text(resp).await;
    assert_eq!(topo.cp_upstream.observed.requests(), 1);

    wait_audit(&topo.edge_audit_log, 6).await;
    wait_audit(&client_log(&topo), 6).await;
    for (path, rule, grpc) in [
        ("/secrets", "edge-no-secrets", false),
        ("/tether.echo.v1.Echo/Bidi", "edge-no-bidi", true),
    ] {
        let (o, c) = stream_for(&topo.edge_audit, path);
        assert_eq!(
            (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
            (Some("deny"), Some(rule))
        );
        assert_eq!(
            (o.direction.as_str(), o.caller.as_str()),
            ("egress", TUNNEL_ID)
        );
        if grpc {
            assert_eq!(c.grpc_status, Some(7));
        } else {
            assert_eq!(c.http_status, Some(403));
        }
        let (co, cc) = stream_for(&topo.client_audit, path);
        assert_eq!(
            (co.decision.map(|d| d.as_str()), co.rule.as_deref()),
            (Some("allow"), Some("client-app")),
            "the client allowed {path} itself"
        );
        assert_eq!(co.request_id, o.request_id);
        if grpc {
            assert_eq!(cc.grpc_status, Some(7));
        } else {
            assert_eq!(cc.http_status, Some(403));
        }
        assert!(cc.error.unwrap().contains(rule));
    }
    topo.shutdown().await;
}

const CLIENT_DENIES: &str = r#"
[[rule]]
id = "client-out"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/demo"]

[[rule]]
id = "client-no-admin"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/admin"]

[[rule]]
id = "client-no-client-stream"
effect = "deny"
callers = ["spiffe://tether.local/*"]
grpc = ["/tether.echo.v1.Echo/ClientStream"]
"#;

/// The client's own egress policy denies: 403 / PERMISSION_DENIED naming the
/// client's rule, the call never leaves the client (the edge has no record
/// of it), and the client records the denial.
#[tokio::test]
async fn denied_by_the_client_egress_policy() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start_with(Options {
        client_egress_policy: policy(CLIENT_DENIES),
        ..Options::default()
    })
    .await
    .unwrap();
    for (svc, h2) in [("cp-web", false), ("cp-echo", true)] {
        let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), h2)
            .await
            .unwrap();
        let req = if h2 {
            request_h2(Method::GET, svc, "/admin", empty()).unwrap()
        } else {
            request(Method::GET, svc, "/admin", empty()).unwrap()
        };
        let resp = within("denied GET", caller.send(req)).await.unwrap();
        assert_refused(resp, StatusCode::FORBIDDEN, "denied", "'client-no-admin'").await;
    }
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();
    let status = within(
        "denied client stream",
        grpc.client_stream(tokio_stream::iter(vec![EchoRequest::default()])),
    )
    .await
    .unwrap_err();
    assert_grpc_refused(
        &status,
        Code::PermissionDenied,
        "denied",
        "'client-no-client-stream'",
    );
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    // Allowed afterwards; the edge's only record is this call.
    let reply = within("allowed unary", grpc.unary(EchoRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.caller, XFCC);

    let client = client_log(&topo);
    wait_audit(&client, 8).await;
    wait_audit(&topo.edge_audit_log, 2).await;
    let edge = by_stream(&records(&topo.edge_audit));
    assert_eq!(edge.len(), 1, "{edge:#?}");
    assert!(edge
        .values()
        .all(|(o, _)| o.path == "/tether.echo.v1.Echo/Unary"));
    let streams = by_stream(&records(&topo.client_audit));
    let admin: Vec<_> = streams
        .values()
        .filter(|(o, _)| o.path == "/admin")
        .collect();
    assert_eq!(admin.len(), 2);
    for (o, c) in admin {
        assert_eq!(
            (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
            (Some("deny"), Some("client-no-admin"))
        );
        assert_eq!(c.http_status, Some(403));
    }
    let (o, c) = stream_for(&topo.client_audit, "/tether.echo.v1.Echo/ClientStream");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), Some("client-no-client-stream"))
    );
    assert_eq!(c.grpc_status, Some(7));
    topo.shutdown().await;
}

/// `workloads` rules match the egress listener's label, at both ends, and a
/// listener without a label matches none of them: a call from a workload a
/// rule does not name falls to the default deny (403 / PERMISSION_DENIED,
/// recorded as a deny by no rule) at the end whose rule it was.
#[tokio::test]
async fn workloads_rules_match_the_listener_label() {
    let _shared = PROCESS.read().await;

    // At the edge: "app" may reach cp-web, only "billing" may reach cp-echo.
    let edge_policy = policy(
        r#"
[[rule]]
id = "app-web"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/*"]
workloads = ["app"]
services = ["cp-web"]

[[rule]]
id = "billing-echo"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/*"]
workloads = ["billing"]
services = ["cp-echo"]
"#,
    );
    let topo = Topology::start_with(Options {
        edge_egress_policy: edge_policy.clone(),
        egress_workload: Some("app".into()),
        ..Options::default()
    })
    .await
    .unwrap();
    let resp = get(&topo, "cp-web", "/hello").await;
    assert_eq!(resp.status(), StatusCode::OK);
    text(resp).await;
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();
    let status = within("unary as app", grpc.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_grpc_refused(&status, Code::PermissionDenied, "denied", "default deny");
    assert!(status.message().contains("edge"), "{status:?}");
    assert_eq!(topo.cp_upstream.observed.requests(), 1);
    wait_audit(&topo.edge_audit_log, 4).await;
    let (o, c) = stream_for(&topo.edge_audit, "/hello");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("allow"), Some("app-web"))
    );
    assert_eq!(c.http_status, Some(200));
    let (o, c) = stream_for(&topo.edge_audit, "/tether.echo.v1.Echo/Unary");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), None)
    );
    assert_eq!(c.grpc_status, Some(7));
    topo.shutdown().await;

    // At the client: its policy allows only "billing"; this listener is "app".
    let topo = Topology::start_with(Options {
        client_egress_policy: policy(
            r#"
[[rule]]
id = "billing-only"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/demo"]
workloads = ["billing"]
"#,
        ),
        egress_workload: Some("app".into()),
        ..Options::default()
    })
    .await
    .unwrap();
    let resp = get(&topo, "cp-web", "/hello").await;
    let msg = assert_refused(resp, StatusCode::FORBIDDEN, "denied", "default deny").await;
    assert!(msg.contains("tunnel's egress policy"), "{msg}");
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    wait_audit(&client_log(&topo), 2).await;
    let (o, c) = stream_for(&topo.client_audit, "/hello");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), None)
    );
    assert_eq!(
        o.labels,
        Some([("workload".to_string(), "app".to_string())].into())
    );
    assert_eq!(c.http_status, Some(403));
    topo.shutdown().await;

    // A listener without a label matches no `workloads` rule.
    let topo = Topology::start_with(Options {
        edge_egress_policy: edge_policy,
        egress_workload: None,
        ..Options::default()
    })
    .await
    .unwrap();
    let resp = get(&topo, "cp-web", "/hello").await;
    assert_refused(resp, StatusCode::FORBIDDEN, "denied", "default deny").await;
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    wait_audit(&topo.edge_audit_log, 2).await;
    let (o, _) = stream_for(&topo.edge_audit, "/hello");
    assert_eq!(
        (o.decision.map(|d| d.as_str()), o.rule.as_deref()),
        (Some("deny"), None)
    );
    assert_eq!(o.labels, None);
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Names, not addresses
// ---------------------------------------------------------------------------

/// An upstream name the edge does not define is 404 `unknown-upstream` /
/// NOT_FOUND — `localhost` included: names are looked up among the edge's
/// upstreams, never resolved. A host that is not a name at all (an IP
/// literal, a dotted DNS name, with or without a port, in the Host header,
/// in absolute form or as a gRPC authority) is refused with 400 /
/// INVALID_ARGUMENT before anything leaves the client: nothing connects to
/// the address named, and the edge never hears of it. The edge is not an
/// open proxy.
#[tokio::test]
async fn unknown_upstreams_and_addresses_are_refused() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    // A listener at the address a workload might try to reach directly.
    let sentinel = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sentinel.set_nonblocking(true).unwrap();
    let target = sentinel.local_addr().unwrap();
    let egress = topo.egress_addr.unwrap();

    let hosts = [
        "10.0.0.1".to_string(),
        target.to_string(),
        format!("[::1]:{}", target.port()),
        "cp-web.example.com".to_string(),
        format!("cp-web.internal:{}", target.port()),
    ];
    for host in &hosts {
        let resp = get(&topo, host, "/hello").await;
        assert_refused(
            resp,
            StatusCode::BAD_REQUEST,
            "bad-request",
            "not an upstream name",
        )
        .await;
        let req = http::Request::builder()
            .uri(format!("http://{host}/hello"))
            .header("host", host.as_str())
            .body(empty())
            .unwrap();
        let resp = send_h1(&topo, req).await;
        assert_refused(
            resp,
            StatusCode::BAD_REQUEST,
            "bad-request",
            "not an upstream name",
        )
        .await;
    }
    let mut grpc = grpc_plaintext(egress, &target.to_string()).await.unwrap();
    let status = within("gRPC to an address", grpc.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_grpc_refused(
        &status,
        Code::InvalidArgument,
        "bad-request",
        "not an upstream name",
    );
    let refused_at_client = 2 * hosts.len() as u64 + 1;

    // Names the edge does not define.
    for host in [
        "nowhere",
        "localhost",
        &format!("localhost:{}", target.port()),
    ] {
        let resp = get(&topo, host, "/hello").await;
        let msg = assert_refused(
            resp,
            StatusCode::NOT_FOUND,
            "unknown-upstream",
            "unknown upstream",
        )
        .await;
        let name = host.split(':').next().unwrap();
        assert!(msg.contains(&format!("'{name}'")), "{msg}");
    }
    let mut grpc = grpc_plaintext(egress, "nowhere").await.unwrap();
    let status = within(
        "gRPC to an unknown upstream",
        grpc.unary(EchoRequest::default()),
    )
    .await
    .unwrap_err();
    assert_grpc_refused(&status, Code::NotFound, "unknown-upstream", "'nowhere'");

    assert!(
        matches!(sentinel.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something connected to the address a workload named"
    );
    assert_eq!(topo.cp_upstream.observed.requests(), 0);
    assert_eq!(topo.upstream.observed.requests(), 0);

    // The client audited all of them; the edge only the four it was asked for.
    wait_audit(&client_log(&topo), 2 * (refused_at_client + 4)).await;
    wait_audit(&topo.edge_audit_log, 8).await;
    let edge = by_stream(&records(&topo.edge_audit));
    assert_eq!(edge.len(), 4, "{edge:#?}");
    for (o, c) in edge.values() {
        // The policy decides before the edge says whether an upstream exists
        // (so a denied tunnel cannot probe names): the open record carries
        // the policy's decision, the close record the unknown upstream.
        assert_eq!(o.decision.map(|d| d.as_str()), Some("allow"), "{o:?}");
        assert!(
            c.error
                .as_deref()
                .is_some_and(|e| e.contains("unknown upstream")),
            "{c:?}"
        );
        assert!(
            ["nowhere", "localhost"].contains(&o.service.as_str()),
            "{o:?}"
        );
        assert!(
            c.http_status == Some(404) || c.grpc_status == Some(5),
            "{c:?}"
        );
    }
    let client = by_stream(&records(&topo.client_audit));
    assert_eq!(client.len() as u64, refused_at_client + 4);
    let bad = client
        .values()
        .filter(|(o, _)| o.reason.as_deref() == Some("bad-request"))
        .count() as u64;
    assert_eq!(bad, refused_at_client);
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Upstream and tunnel down
// ---------------------------------------------------------------------------

/// An upstream the edge cannot reach is 502 `upstream-unavailable` /
/// UNAVAILABLE, over HTTP/1.1, h2c and gRPC.
#[tokio::test]
async fn an_unreachable_upstream_is_upstream_unavailable() {
    let _shared = PROCESS.read().await;
    let mut extra = BTreeMap::new();
    let url = format!("http://127.0.0.1:{}", closed_port());
    extra.insert("cp-down".to_string(), upstream_at(&url, Protocol::H2c));
    extra.insert(
        "cp-down-web".to_string(),
        upstream_at(&url, Protocol::Http1),
    );
    let topo = Topology::start_with(Options {
        extra_upstreams: extra,
        ..Options::default()
    })
    .await
    .unwrap();
    for svc in ["cp-down", "cp-down-web"] {
        let resp = get(&topo, svc, "/hello").await;
        assert_refused(
            resp,
            StatusCode::BAD_GATEWAY,
            "upstream-unavailable",
            &format!("'{svc}'"),
        )
        .await;
        let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), true)
            .await
            .unwrap();
        let resp = within(
            "h2c GET",
            caller.send(request_h2(Method::GET, svc, "/hello", empty()).unwrap()),
        )
        .await
        .unwrap();
        assert_refused(
            resp,
            StatusCode::BAD_GATEWAY,
            "upstream-unavailable",
            &format!("'{svc}'"),
        )
        .await;
    }
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-down")
        .await
        .unwrap();
    let status = within(
        "unary to a dead upstream",
        grpc.unary(EchoRequest::default()),
    )
    .await
    .unwrap_err();
    assert_grpc_refused(
        &status,
        Code::Unavailable,
        "upstream-unavailable",
        "'cp-down'",
    );
    topo.shutdown().await;
}

/// With the edge gone, an egress call is 503 `tunnel-offline` / UNAVAILABLE
/// from the client itself, and the client records it.
#[tokio::test]
async fn tunnel_down_is_tunnel_offline() {
    let _shared = PROCESS.read().await;
    let mut topo = Topology::start().await.unwrap();
    let mut state = topo.client.as_ref().unwrap().watch();
    topo.edge.take().unwrap().shutdown(Duration::ZERO).await;
    within(
        "the client notices the edge is gone",
        state.wait_for(|s| !matches!(s, TunnelState::Connected { .. })),
    )
    .await
    .unwrap();

    let resp = get(&topo, "cp-web", "/hello").await;
    assert_refused(
        resp,
        StatusCode::SERVICE_UNAVAILABLE,
        "tunnel-offline",
        "demo",
    )
    .await;
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();
    let status = within(
        "unary with the tunnel down",
        grpc.unary(EchoRequest::default()),
    )
    .await
    .unwrap_err();
    assert_grpc_refused(&status, Code::Unavailable, "tunnel-offline", "demo");
    assert_eq!(topo.cp_upstream.observed.requests(), 0);

    wait_audit(&client_log(&topo), 4).await;
    let (_, c) = stream_for(&topo.client_audit, "/hello");
    assert_eq!(c.http_status, Some(503));
    let (_, c) = stream_for(&topo.client_audit, "/tether.echo.v1.Echo/Unary");
    assert_eq!(c.grpc_status, Some(14));
    topo.shutdown().await;
}

/// A gRPC deadline shorter than the upstream takes ends the call with
/// DEADLINE_EXCEEDED (from Tether, or CANCELLED from the caller's own timer,
/// whichever fires first) and cancels the upstream's handler; without a
/// deadline, the response timeout gives 504 `upstream-timeout` /
/// DEADLINE_EXCEEDED.
#[tokio::test]
async fn slow_upstreams_time_out() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start_with(Options {
        limits: proxy::Limits {
            response_timeout: Duration::from_millis(300),
            ..proxy::Limits::default()
        },
        ..Options::default()
    })
    .await
    .unwrap();
    let obs = topo.cp_upstream.observed.clone();
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();

    let mut req = tonic::Request::new(EchoRequest {
        hang: true,
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(200));
    let status = within("the deadline", grpc.unary(req))
        .await
        .expect_err("a hanging call must fail at its deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    within(
        "the deadline's cancellation reaches the upstream",
        obs.wait_cancelled(1),
    )
    .await;

    let status = within(
        "the response timeout",
        grpc.unary(EchoRequest {
            hang: true,
            ..Default::default()
        }),
    )
    .await
    .expect_err("a hanging call must fail at the response timeout");
    assert_grpc_refused(
        &status,
        Code::DeadlineExceeded,
        "upstream-timeout",
        "'cp-echo'",
    );
    within(
        "the timeout's cancellation reaches the upstream",
        obs.wait_cancelled(2),
    )
    .await;
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

/// A workload that sends its own `x-forwarded-client-cert` (as HTTP/1.1 and
/// HTTP/2 headers, twice, and as gRPC metadata) cannot pass it on: the
/// upstream sees exactly one value, Tether's. Other end-to-end headers pass.
#[tokio::test]
async fn forged_identity_from_a_workload_is_replaced() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    for (svc, h2) in [("cp-web", false), ("cp-echo", true)] {
        let mut caller = HttpCaller::plaintext(topo.egress_addr.unwrap(), h2)
            .await
            .unwrap();
        let mut req = if h2 {
            request_h2(Method::GET, svc, "/headers", empty()).unwrap()
        } else {
            request(Method::GET, svc, "/headers", empty()).unwrap()
        };
        let h = req.headers_mut();
        h.insert(
            "x-forwarded-client-cert",
            HeaderValue::from_static(
                "By=spiffe://tether.local/edge/edge-1;URI=spiffe://tether.local/tunnel/other",
            ),
        );
        h.append(
            "x-forwarded-client-cert",
            HeaderValue::from_static("URI=spiffe://tether.local/caller/admin"),
        );
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        let resp = within("GET /headers", caller.send(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = text(resp).await;
        let seen = parse_headers(&text);
        assert_eq!(
            header_values(&seen, "x-forwarded-client-cert"),
            [XFCC],
            "{svc}:\n{text}"
        );
        assert_eq!(
            header_values(&seen, "x-end-to-end"),
            ["kept"],
            "{svc}:\n{text}"
        );
    }
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();
    let mut req = tonic::Request::new(EchoRequest {
        text: "who".into(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "x-forwarded-client-cert",
        "By=spiffe://evil/edge/x;URI=spiffe://tether.local/tunnel/other"
            .parse()
            .unwrap(),
    );
    let reply = within("unary", grpc.unary(req)).await.unwrap().into_inner();
    assert_eq!(reply.caller, XFCC);
    topo.shutdown().await;
}

// ---------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------

/// A small mixed run — allowed over HTTP and gRPC, denied at the edge,
/// denied at the client, unknown upstream, upstream down, an address instead
/// of a name — leaves exactly one open and one close record per stream at
/// each end that saw it, all marked `egress` with the tunnel as caller and
/// the listener's workload label; request ids correlate the two ends; both
/// logs verify.
#[tokio::test]
async fn mixed_egress_run_has_one_open_and_one_close_per_stream_at_each_end() {
    let _shared = PROCESS.read().await;
    let mut extra = BTreeMap::new();
    extra.insert(
        "cp-down".to_string(),
        upstream_at(
            &format!("http://127.0.0.1:{}", closed_port()),
            Protocol::Http1,
        ),
    );
    let edge_policy = policy(
        r#"
[[rule]]
id = "edge-tunnels"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/*"]

[[rule]]
id = "edge-no-secrets"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/secrets"]
"#,
    );
    let topo = Topology::start_with(Options {
        edge_egress_policy: edge_policy,
        client_egress_policy: policy(CLIENT_DENIES),
        extra_upstreams: extra,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut grpc = grpc_plaintext(topo.egress_addr.unwrap(), "cp-echo")
        .await
        .unwrap();

    // (path, host, status) of each HTTP call, and whether the edge sees it.
    let calls = [
        ("/hello", "cp-web", 200, true),
        ("/secrets", "cp-web", 403, true),
        ("/admin", "cp-web", 403, false),
        ("/missing", "nowhere", 404, true),
        ("/down", "cp-down", 502, true),
        ("/address", "10.0.0.1", 400, false),
    ];
    // Every call carries a W3C traceparent; its trace id is in the records.
    let trace = |i: usize| format!("{i:032x}");
    for (i, (path, host, status, _)) in calls.iter().enumerate() {
        let mut req = request(Method::GET, host, path, empty()).unwrap();
        req.headers_mut().insert(
            "traceparent",
            HeaderValue::from_str(&format!("00-{}-b7ad6b7169203331-01", trace(i + 1))).unwrap(),
        );
        let resp = send_h1(&topo, req).await;
        assert_eq!(resp.status().as_u16(), *status, "{host}{path}");
        text(resp).await;
    }
    let reply = within("unary", grpc.unary(EchoRequest::default()))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().caller, XFCC);

    let client_log = client_log(&topo);
    wait_audit(&client_log, 2 * 7).await;
    wait_audit(&topo.edge_audit_log, 2 * 5).await;
    let client = by_stream(&records(&topo.client_audit));
    let edge = by_stream(&records(&topo.edge_audit));
    assert_eq!(client.len(), 7, "{client:#?}");
    assert_eq!(edge.len(), 5, "{edge:#?}");
    let app = Some([("workload".to_string(), "app".to_string())].into());
    for (side, streams) in [("client", &client), ("edge", &edge)] {
        for (o, c) in streams.values() {
            for r in [o, c] {
                assert_eq!(r.side, side);
                assert_eq!(r.direction, "egress", "{r:?}");
                assert_eq!(
                    (r.caller.as_str(), r.tunnel.as_str()),
                    (TUNNEL_ID, TUNNEL_ID)
                );
                assert_eq!(r.labels, app, "{r:?}");
            }
        }
    }
    let find = |m: &BTreeMap<u64, (AuditRecord, AuditRecord)>, path: &str| {
        m.values()
            .find(|(o, _)| o.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("no stream for {path}"))
    };
    for (i, (path, _, status, at_edge)) in calls.into_iter().enumerate() {
        let (co, cc) = find(&client, path);
        assert_eq!(cc.http_status, Some(status), "client, {path}");
        assert_eq!(co.trace_id, Some(trace(i + 1)), "client, {path}");
        if at_edge {
            let (eo, ec) = find(&edge, path);
            assert_eq!(eo.request_id, co.request_id, "{path}");
            assert_eq!(eo.trace_id, Some(trace(i + 1)), "edge, {path}");
            assert_eq!(ec.http_status, Some(status), "edge, {path}");
        } else {
            assert!(edge.values().all(|(eo, _)| eo.path != path), "{path}");
        }
    }
    let expect = |m: &BTreeMap<u64, (AuditRecord, AuditRecord)>, path: &str, d: &str, r: &str| {
        let (o, _) = find(m, path);
        let got = (
            o.decision.map(|d| d.as_str()),
            o.rule.as_deref().or(o.reason.as_deref()),
        );
        assert_eq!(got, (Some(d), Some(r)), "{path}: {o:?}");
    };
    expect(&client, "/hello", "allow", "client-out");
    expect(&edge, "/hello", "allow", "edge-tunnels");
    expect(&client, "/secrets", "allow", "client-out");
    expect(&edge, "/secrets", "deny", "edge-no-secrets");
    expect(&client, "/admin", "deny", "client-no-admin");
    // Decided before existence is revealed; the close record names the miss.
    expect(&edge, "/missing", "allow", "edge-tunnels");
    assert!(find(&edge, "/missing")
        .1
        .error
        .unwrap()
        .contains("unknown upstream"));
    expect(&edge, "/down", "allow", "edge-tunnels");
    expect(&client, "/address", "refuse", "bad-request");
    let (o, c) = find(&edge, "/tether.echo.v1.Echo/Unary");
    assert_eq!(o.service, "cp-echo");
    assert_eq!(c.grpc_status, Some(0));
    assert!(c.bytes_in.unwrap() > 0 && c.bytes_out.unwrap() > 0);
    let (_, c) = find(&edge, "/hello");
    assert!(c.bytes_out.unwrap() > 0);

    verify_files(std::slice::from_ref(&topo.edge_audit)).unwrap();
    verify_files(std::slice::from_ref(&topo.client_audit)).unwrap();
    topo.shutdown().await;
}

#[tokio::test]
async fn tls_upstreams_with_a_client_certificate() {
    use std::collections::BTreeMap;
    use tunnel_client::config::{Protocol, Service};
    let _shared = PROCESS.read().await;
    let pki = tether_tests::topology::Pki::new().unwrap();
    let mut spec = certs::LeafSpec::new(certs::IdentityKind::Edge, "state-api");
    spec.dns_names = vec!["localhost".into()];
    let server = pki.ca.issue(&spec).unwrap();
    let secure = tether_tests::upstream::start_mtls(
        "127.0.0.1:0".parse().unwrap(),
        &server.cert_pem,
        &server.key_pem,
        pki.roots().unwrap(),
    )
    .await
    .unwrap();
    // The certificate the edge presents to the upstream.
    let edge_client = pki
        .ca
        .issue(&certs::LeafSpec::new(
            certs::IdentityKind::Edge,
            "edge-egress",
        ))
        .unwrap();
    let mut upstreams = BTreeMap::new();
    for (name, with_cert) in [("cp-secure", true), ("cp-secure-anon", false)] {
        upstreams.insert(
            name.to_string(),
            Service {
                url: format!("https://localhost:{}", secure.addr.port())
                    .parse()
                    .unwrap(),
                protocol: Protocol::Tls,
                ca: Some(pki.roots().unwrap()),
                client_identity: with_cert
                    .then(|| tether_tests::topology::tls_identity(&edge_client).unwrap()),
            },
        );
    }
    let topo = Topology::start_with(tether_tests::topology::Options {
        extra_upstreams: upstreams,
        ..Default::default()
    })
    .await
    .unwrap();
    let egress = topo.egress_addr.unwrap();
    let mut grpc = grpc_plaintext(egress, "cp-secure").await.unwrap();
    grpc.unary(EchoRequest::default())
        .await
        .expect("mTLS upstream reached with the configured certificate");
    let mut http = HttpCaller::plaintext(egress, false).await.unwrap();
    let resp = http
        .send(request(Method::GET, "cp-secure-anon", "/hello", empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        502,
        "without a client certificate the upstream refuses the connection"
    );
    assert_eq!(resp.headers()["tether-error"], "upstream-unavailable");
    assert_eq!(secure.observed.requests(), 1);
    topo.shutdown().await;
}
