//! Call semantics that must hold through the tunnel, end to end over real
//! sockets: bodies streamed both ways at once in bounded memory,
//! cancellation and deadlines reaching the service, service failures and
//! resets reaching the caller (never as a clean, truncated end),
//! backpressure from a slow reader back to the service, header hygiene,
//! distinct refusals, a thousand concurrent calls, and HTTP/1.1 framing.
//!
//! No test sleeps to synchronise: each waits on an event the service or the
//! caller reports, and every wait is bounded so a regression fails instead
//! of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tether_tests::callers::{
    empty, full, grpc_plaintext, request, request_h2, HttpCaller, ReqBody,
};
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::echo_server::{Echo, EchoServer};
use tether_tests::pb::{EchoReply, EchoRequest, StreamRequest};
use tether_tests::topology::{Options, Topology, DEV_CALLER, TRUST_DOMAIN, TUNNEL};
use tether_tests::upstream::collect;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::ServiceExt;
use tunnel_client::config::{Protocol, Service};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// Tests in this file share one process. The gigabyte test measures the
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

/// The `x-forwarded-client-cert` value Tether sets for the plaintext
/// listener's development caller on the demo tunnel.
fn expected_xfcc() -> String {
    format!("By=spiffe://{TRUST_DOMAIN}/tunnel/{TUNNEL};URI={DEV_CALLER}")
}

/// A client service entry for a local upstream at `addr`.
fn service(addr: SocketAddr, protocol: Protocol) -> Service {
    Service {
        url: format!("http://{addr}").parse().unwrap(),
        protocol,
        ca: None,
        client_identity: None,
    }
}

/// A topology whose tunnel also offers `extra` services.
async fn topology_with(extra: Vec<(&str, Service)>) -> Topology {
    let mut opts = Options::default();
    for (name, svc) in extra {
        opts.extra_services.insert(name.to_string(), svc);
    }
    Topology::start_with(opts).await.unwrap()
}

async fn echo_client(topo: &Topology) -> EchoClient<Channel> {
    grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap()
}

/// The HTTP/2 reset reason somewhere in `err`'s chain, if any.
fn h2_reason(err: &(dyn StdError + 'static)) -> Option<h2::Reason> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h2e) = e.downcast_ref::<h2::Error>() {
            if let Some(reason) = h2e.reason() {
                return Some(reason);
            }
        }
        cur = e.source();
    }
    None
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

// ---------------------------------------------------------------------------
// 1. Full-duplex streaming of a gigabyte in bounded memory
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
/// boundaries, comparing slices (memcmp) rather than byte by byte.
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

/// A caller POSTs 1 GiB, generated on the fly, to an h2c service that
/// streams it straight back, and reads the echo while still sending: every
/// byte comes back in order, the echo starts long before the upload ends,
/// and the process (caller, edge, client and service together) never holds
/// more than a bounded amount of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gigabyte_streams_both_ways_at_once_in_bounded_memory() {
    const TOTAL: u64 = 1 << 30;
    const CHUNKS: u64 = TOTAL / CHUNK as u64;
    const MAX_GROWTH_KIB: u64 = 256 * 1024;
    let _alone = PROCESS.write().await;

    let topo = Topology::start().await.unwrap();
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, true)
        .await
        .unwrap();
    let base = noise();
    let produced = Arc::new(AtomicU64::new(0));
    let body: ReqBody = {
        let (base, produced) = (base.clone(), produced.clone());
        let frames = futures_util::stream::iter(0..CHUNKS).map(move |k| {
            let chunk = chunk_at(&base, k);
            produced.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok::<_, BoxError>(Frame::data(chunk))
        });
        StreamBody::new(frames).boxed_unsync()
    };
    let req = request_h2(Method::POST, &topo.host("echo"), "/echo", body).unwrap();

    // Peak RSS from here on: resetting VmHWM (Linux ≥ 4.0) makes it a
    // measurement of this run; where that is not allowed, sampled VmRSS is
    // used instead.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_kib("VmRSS:");
    let mut rss_peak = rss_before;
    let started = Instant::now();

    let resp = within("echo response head", caller.send(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
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
                next_sample += 32 << 20;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(900), read_all)
        .await
        .expect("the gigabyte echo did not finish within 15 minutes");
    let elapsed = started.elapsed();

    assert_eq!(verifier.offset, TOTAL, "echo ended early or ran long");
    let first = produced_at_first_echo.expect("no echoed bytes");
    assert!(
        first < TOTAL / 4,
        "echo began only after {first} bytes were produced: something buffers the request"
    );
    if hwm_reset {
        rss_peak = rss_peak.max(proc_status_kib("VmHWM:"));
    }
    let growth = rss_peak.saturating_sub(rss_before);
    println!(
        "1 GiB echoed in {elapsed:.2?} ({:.0} MiB/s each way); RSS {} MiB → peak {} MiB \
         (+{} MiB, {}); first echo after {} MiB sent",
        1024.0 / elapsed.as_secs_f64(),
        rss_before / 1024,
        rss_peak / 1024,
        growth / 1024,
        if hwm_reset { "VmHWM" } else { "sampled VmRSS" },
        first >> 20,
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {} MiB while streaming 1 GiB: a body is being buffered",
        growth / 1024
    );
}

// ---------------------------------------------------------------------------
// 2. Caller cancellation reaches the service
// ---------------------------------------------------------------------------

/// A caller abandons a unary call the service is still working on; the
/// service's handler is dropped (cancelled), and the caller's connection
/// and the tunnel stay usable.
#[tokio::test]
async fn cancelled_unary_call_cancels_the_service() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let obs = topo.upstream.observed.clone();
    let mut client = echo_client(&topo).await;

    // A clone shares the connection, which stays open: the cancellation
    // travels as an HTTP/2 RST_STREAM, not as a closed connection.
    let mut c = client.clone();
    let call = tokio::spawn(async move {
        c.unary(EchoRequest {
            text: "hang".into(),
            hang: true,
            ..Default::default()
        })
        .await
    });
    within("the call reaches the service", obs.wait_requests(1)).await;
    within("the service starts working on it", obs.wait_hanging(1)).await;
    assert_eq!(obs.cancelled.load(Ordering::SeqCst), 0);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    within(
        "the cancellation reaches the service",
        obs.wait_cancelled(1),
    )
    .await;

    let reply = within(
        "a call after the cancellation",
        client.unary(EchoRequest {
            text: "after".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("the connection survives a cancelled call");
    assert_eq!(reply.into_inner().text, "after");
}

/// A caller reads the first messages of a server stream, then drops it
/// while the service is still producing: the service's stream is dropped.
#[tokio::test]
async fn dropped_server_stream_cancels_the_service() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let obs = topo.upstream.observed.clone();
    let mut client = echo_client(&topo).await;

    let mut stream = within(
        "server stream head",
        client.server_stream(StreamRequest {
            text: "s".into(),
            count: 3,
            hang_after: true,
        }),
    )
    .await
    .unwrap()
    .into_inner();
    for seq in 0..3 {
        let msg = within("a streamed message", stream.message())
            .await
            .unwrap()
            .expect("message");
        assert_eq!(msg.seq, seq);
        assert_eq!(msg.text, format!("s-{seq}"));
    }
    assert_eq!(obs.cancelled.load(Ordering::SeqCst), 0);
    drop(stream);
    within(
        "the cancellation reaches the service",
        obs.wait_cancelled(1),
    )
    .await;
}

/// A caller starts a client stream, sends a few messages, and abandons the
/// call without ending its stream while the service works on it (the last
/// message asks it to hang): the service's handler is cancelled.
///
/// tonic turns a cancelled request stream into a clean end of input, so a
/// handler that is still reading cannot tell; the body-level guarantee that
/// an abandoned upload never reaches a service as complete is
/// `abandoned_upload_never_reaches_the_service_complete`.
#[tokio::test]
async fn abandoned_client_stream_cancels_the_service() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let obs = topo.upstream.observed.clone();
    let client = echo_client(&topo).await;

    let (tx, rx) = mpsc::channel(4);
    let mut c = client.clone();
    let call = tokio::spawn(async move { c.client_stream(ReceiverStream::new(rx)).await });
    for i in 0..3 {
        tx.send(EchoRequest {
            text: i.to_string(),
            hang: i == 2,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    within("the service is working on the stream", obs.wait_hanging(1)).await;
    assert_eq!(obs.cancelled.load(Ordering::SeqCst), 0);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    within(
        "the cancellation reaches the service",
        obs.wait_cancelled(1),
    )
    .await;
    // Only now may the input end: had it ended first, the service would
    // have answered normally.
    drop(tx);
}

// ---------------------------------------------------------------------------
// 3. Service failures and resets reach the caller
// ---------------------------------------------------------------------------

/// The service fails a bidirectional stream in the middle with a gRPC
/// status: the caller gets the replies sent before it, then exactly that
/// status.
#[tokio::test]
async fn service_status_in_the_middle_of_a_bidi_stream_reaches_the_caller() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let mut client = echo_client(&topo).await;

    let (tx, rx) = mpsc::channel(4);
    let mut replies = within("bidi head", client.bidi(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3u64 {
        tx.send(EchoRequest {
            text: format!("m{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
        let reply = within("bidi reply", replies.message())
            .await
            .unwrap()
            .expect("reply");
        assert_eq!(
            (reply.text.as_str(), reply.seq),
            (format!("m{i}").as_str(), i)
        );
    }
    tx.send(EchoRequest {
        text: "fail".into(),
        fail_code: Code::ResourceExhausted as u32,
        ..Default::default()
    })
    .await
    .unwrap();
    let status = within("the failure", replies.message())
        .await
        .expect_err("the stream must end with the service's status");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "failed as asked");
}

/// How the body of one `/upload` ended at the raw upstream.
#[derive(Debug)]
enum UploadEnd {
    /// A clean end after this many bytes.
    Complete(u64),
    /// Reading failed after `bytes`, with this HTTP/2 reset reason if any.
    Failed {
        bytes: u64,
        reason: Option<h2::Reason>,
        error: String,
    },
    /// hyper dropped the handler before the body ended.
    Dropped { bytes: u64 },
}

/// Reports an upload's end exactly once, as `Dropped` if the handler is
/// dropped first.
struct UploadReport {
    id: u64,
    bytes: u64,
    tx: Option<mpsc::UnboundedSender<(u64, UploadEnd)>>,
}

impl UploadReport {
    fn end(&mut self, end: UploadEnd) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.id, end));
        }
    }
}

impl Drop for UploadReport {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.end(UploadEnd::Dropped { bytes });
    }
}

struct RawState {
    fail: Arc<Notify>,
    hits: AtomicU64,
    progress: watch::Sender<(u64, u64)>,
    uploads: mpsc::UnboundedSender<(u64, UploadEnd)>,
}

/// A raw HTTP upstream for failure, upload and header tests, speaking
/// HTTP/1.1 and h2c on one port:
/// - `GET /fail?n=N[&cl=1]`: status 200, N bytes of `r`, then waits for a
///   permit on `fail` and fails the body (with `cl=1` the response first
///   declares a Content-Length of 2N). hyper resets the HTTP/2 stream
///   (INTERNAL_ERROR) or cuts the HTTP/1.1 connection.
/// - `POST /upload?id=K`: reads the body, publishing `(K, bytes so far)` on
///   `progress` and how it ended on `uploads`; answers with the byte count.
/// - `GET /hop`: a response carrying hop-by-hop headers.
struct RawUpstream {
    addr: SocketAddr,
    state: Arc<RawState>,
    progress: watch::Receiver<(u64, u64)>,
    uploads: mpsc::UnboundedReceiver<(u64, UploadEnd)>,
}

async fn raw_upstream() -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (progress_tx, progress) = watch::channel((0, 0));
    let (uploads_tx, uploads) = mpsc::unbounded_channel();
    let state = Arc::new(RawState {
        fail: Arc::new(Notify::new()),
        hits: AtomicU64::new(0),
        progress: progress_tx,
        uploads: uploads_tx,
    });
    let st = state.clone();
    // Ends with the test's runtime.
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(raw_handle(req, st).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    RawUpstream {
        addr,
        state,
        progress,
        uploads,
    }
}

type RawBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn raw_full(status: StatusCode, body: impl Into<Bytes>) -> Response<RawBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

fn query_u64(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn raw_handle(req: Request<Incoming>, st: Arc<RawState>) -> Response<RawBody> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    match req.uri().path() {
        "/fail" => {
            let n = query_u64(&req, "n");
            let data = Bytes::from(vec![b'r'; n as usize]);
            let fail = st.fail.clone();
            let frames = futures_util::stream::once(async move { Ok(Frame::data(data)) }).chain(
                futures_util::stream::once(async move {
                    fail.notified().await;
                    Err::<Frame<Bytes>, BoxError>("the service failed mid-body".into())
                }),
            );
            let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
            if query_u64(&req, "cl") == 1 {
                resp.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, (2 * n).into());
            }
            resp
        }
        "/upload" => {
            let mut report = UploadReport {
                id: query_u64(&req, "id"),
                bytes: 0,
                tx: Some(st.uploads.clone()),
            };
            let mut body = req.into_body();
            loop {
                match body.frame().await {
                    None => {
                        let bytes = report.bytes;
                        report.end(UploadEnd::Complete(bytes));
                        return raw_full(StatusCode::OK, format!("{bytes}\n"));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            report.bytes += data.len() as u64;
                            st.progress.send_replace((report.id, report.bytes));
                        }
                    }
                    Some(Err(e)) => {
                        let (bytes, reason) = (report.bytes, h2_reason(&e));
                        report.end(UploadEnd::Failed {
                            bytes,
                            reason,
                            error: e.to_string(),
                        });
                        return raw_full(StatusCode::BAD_REQUEST, "");
                    }
                }
            }
        }
        "/hop" => {
            let mut resp = raw_full(StatusCode::OK, "hop\n");
            let h = resp.headers_mut();
            h.insert("connection", HeaderValue::from_static("x-bar"));
            h.insert("x-bar", HeaderValue::from_static("1"));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
            h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
            h.insert("x-end-to-end", HeaderValue::from_static("kept"));
            resp
        }
        _ => raw_full(StatusCode::NOT_FOUND, ""),
    }
}

/// Reads exactly `n` body bytes (the body must not end or fail first).
async fn read_exactly(body: &mut Incoming, n: u64) {
    let mut got = 0u64;
    while got < n {
        let frame = within("body bytes before the failure", body.frame())
            .await
            .expect("the body ended before the service failed")
            .expect("the body failed before the service failed");
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
        }
    }
    assert_eq!(got, n);
}

/// The service fails its response body after sending part of it — an
/// HTTP/2 service resets the stream, an HTTP/1.1 service cuts its
/// connection, with or without a declared Content-Length. An HTTP/2
/// caller's body read fails with a reset carrying INTERNAL_ERROR (not
/// CANCEL: the caller did not cancel), and an HTTP/1.1 caller's body read
/// fails (its connection is cut): neither ever sees a clean, short body.
#[tokio::test]
async fn service_failure_mid_body_reaches_the_caller_as_an_error() {
    const N: u64 = 100_000;
    let _shared = PROCESS.read().await;
    let raw = raw_upstream().await;
    let topo = topology_with(vec![
        ("raw", service(raw.addr, Protocol::H2c)),
        ("raw1", service(raw.addr, Protocol::Http1)),
    ])
    .await;

    for svc in ["raw", "raw1"] {
        for declared in [false, true] {
            let path = format!("/fail?n={N}{}", if declared { "&cl=1" } else { "" });
            let case = format!("service {svc}, Content-Length declared: {declared}");
            for h2_caller in [true, false] {
                let mut caller = HttpCaller::plaintext(topo.plaintext_addr, h2_caller)
                    .await
                    .unwrap();
                let req = if h2_caller {
                    request_h2(Method::GET, &topo.host(svc), &path, empty()).unwrap()
                } else {
                    request(Method::GET, &topo.host(svc), &path, empty()).unwrap()
                };
                let resp = within("response head", caller.send(req)).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{case}");
                if declared {
                    assert_eq!(
                        resp.headers()[http::header::CONTENT_LENGTH],
                        (2 * N).to_string().as_str(),
                        "{case}"
                    );
                }
                let mut body = resp.into_body();
                read_exactly(&mut body, N).await;
                raw.state.fail.notify_one();
                match within("the failure reaches the caller", body.frame()).await {
                    Some(Err(e)) if h2_caller => assert_eq!(
                        h2_reason(&e),
                        Some(h2::Reason::INTERNAL_ERROR),
                        "{case}: HTTP/2 caller got {e:?}"
                    ),
                    Some(Err(_)) => {}
                    other => panic!(
                        "{case}, {} caller: a failed body must not end cleanly, got {other:?}",
                        if h2_caller { "HTTP/2" } else { "HTTP/1.1" }
                    ),
                }
            }
        }
    }
    assert_eq!(raw.state.hits.load(Ordering::SeqCst), 8);
}

/// A caller starts an upload and abandons it midway — an HTTP/2 caller
/// resets its stream, an HTTP/1.1 caller drops its connection. The service
/// (h2c or HTTP/1.1) must see its request body fail, never end cleanly as
/// if the truncated upload were complete; an h2c service sees the caller's
/// CANCEL. The same uploads, finished, arrive complete.
#[tokio::test]
async fn abandoned_upload_never_reaches_the_service_complete() {
    const PIECE: usize = 64 * 1024;
    let _shared = PROCESS.read().await;
    let mut raw = raw_upstream().await;
    let topo = topology_with(vec![
        ("raw", service(raw.addr, Protocol::H2c)),
        ("raw1", service(raw.addr, Protocol::Http1)),
    ])
    .await;
    let piece = Bytes::from(vec![b'u'; PIECE]);
    let mut id = 0u64;

    for svc in ["raw", "raw1"] {
        for h2_caller in [true, false] {
            for abandon in [false, true] {
                id += 1;
                let case = format!(
                    "service {svc}, {} caller, abandoned: {abandon}",
                    if h2_caller { "HTTP/2" } else { "HTTP/1.1" }
                );
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                let body = StreamBody::new(
                    ReceiverStream::new(rx).map(|b| Ok::<_, BoxError>(Frame::data(b))),
                )
                .boxed_unsync();
                let path = format!("/upload?id={id}");
                let req = if h2_caller {
                    request_h2(Method::POST, &topo.host(svc), &path, body).unwrap()
                } else {
                    request(Method::POST, &topo.host(svc), &path, body).unwrap()
                };
                let mut caller = HttpCaller::plaintext(topo.plaintext_addr, h2_caller)
                    .await
                    .unwrap();
                // The caller (and, for HTTP/1.1, its only connection) lives
                // in this task: aborting it abandons the upload.
                let call = tokio::spawn(async move {
                    let resp = caller.send(req).await?;
                    anyhow::Ok(collect(resp.into_body()).await?)
                });
                tx.send(piece.clone()).await.unwrap();
                let mut progress = raw.progress.clone();
                within(
                    "the service receives the first bytes",
                    progress.wait_for(|&(i, n)| i == id && n >= PIECE as u64),
                )
                .await
                .unwrap();

                if abandon {
                    call.abort();
                    assert!(call.await.unwrap_err().is_cancelled());
                } else {
                    tx.send(piece.clone()).await.unwrap();
                    drop(tx);
                    let answer = within("the answer", call).await.unwrap().unwrap();
                    assert_eq!(answer, format!("{}\n", 2 * PIECE), "{case}");
                }
                let (got, end) = within("the service's body ends", raw.uploads.recv())
                    .await
                    .unwrap();
                assert_eq!(got, id, "{case}");
                match (abandon, end) {
                    (false, UploadEnd::Complete(n)) => assert_eq!(n, 2 * PIECE as u64, "{case}"),
                    (
                        true,
                        UploadEnd::Failed {
                            bytes,
                            reason,
                            error,
                        },
                    ) => {
                        assert_eq!(bytes, PIECE as u64, "{case}");
                        if svc == "raw" {
                            assert_eq!(reason, Some(h2::Reason::CANCEL), "{case}: {error}");
                        }
                    }
                    (true, UploadEnd::Dropped { bytes }) => {
                        assert_eq!(bytes, PIECE as u64, "{case}")
                    }
                    (_, end) => panic!("{case}: the service saw {end:?}"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4. gRPC deadlines
// ---------------------------------------------------------------------------

/// A unary call with a 200 ms deadline to a service that never answers:
/// the caller gets DEADLINE_EXCEEDED (from the edge) or CANCELLED (from
/// its own timer, whichever fires first), and the service's handler is
/// cancelled rather than left running.
#[tokio::test]
async fn grpc_deadline_ends_the_call_and_cancels_the_service() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let obs = topo.upstream.observed.clone();
    let mut client = echo_client(&topo).await;

    let mut req = tonic::Request::new(EchoRequest {
        text: "hang".into(),
        hang: true,
        ..Default::default()
    });
    // Long enough for the request to reach the service on a loaded
    // machine (two fsynced open records on the way); a deadline that
    // expires before would leave nothing at the service to cancel.
    req.set_timeout(Duration::from_secs(2));
    let status = within("the deadline", client.unary(req))
        .await
        .expect_err("a hanging call must fail at its deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    within(
        "the deadline's cancellation reaches the service",
        obs.wait_cancelled(1),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 5. Backpressure
// ---------------------------------------------------------------------------

/// Where the service's production stops once the caller stalls. The
/// counter has no event for "stopped growing", so this uses events that
/// make every task of the path run instead of a clock: a full round trip
/// through the same edge, tunnel and client (`GET /hello` on another
/// connection). Production that has not moved across five round trips
/// in a row has settled, whatever the machine's speed. Bounded by [`WAIT`].
async fn settled(counter: impl Fn() -> u64, topo: &Topology) -> u64 {
    let mut probe = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let host = topo.host("web");
    within("the service stops producing", async {
        let (mut last, mut still) = (counter(), 0);
        loop {
            let resp = probe
                .send(request(Method::GET, &host, "/hello", empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            collect(resp.into_body()).await.unwrap();
            let now = counter();
            if now == last {
                still += 1;
                if still >= 5 {
                    return now;
                }
            } else {
                (last, still) = (now, 0);
            }
        }
    })
    .await
}

/// An HTTP/2 caller asks for 256 MiB and stops reading after 4 MiB: the
/// service is held back within a few flow-control windows (caller's
/// HTTP/2, QUIC, the client's HTTP/2 or TCP to the service) instead of
/// producing everything into buffers. When the caller resumes, every byte
/// arrives. Checked for an h2c and an HTTP/1.1 service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_caller_holds_back_the_service() {
    const N: u64 = 256 << 20;
    const READ_FIRST: u64 = 4 << 20;
    const MAX_AHEAD: u64 = 32 << 20;
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let obs = topo.upstream.observed.clone();
    let xs = vec![b'x'; CHUNK];

    for svc in ["echo", "web"] {
        let produced_before = obs.bytes_produced();
        let produced = || obs.bytes_produced() - produced_before;
        let mut caller = HttpCaller::plaintext(topo.plaintext_addr, true)
            .await
            .unwrap();
        let req = request_h2(
            Method::GET,
            &topo.host(svc),
            &format!("/bytes?n={N}"),
            empty(),
        )
        .unwrap();
        let resp = within("response head", caller.send(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut consumed = 0u64;
        let read = |data: Bytes| {
            assert!(
                data.chunks(CHUNK).all(|c| c == &xs[..c.len()]),
                "corrupted bytes"
            );
            data.len() as u64
        };
        while consumed < READ_FIRST {
            let frame = within("the first bytes", body.frame())
                .await
                .expect("body ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                consumed += read(data);
            }
        }
        let stalled_at = settled(produced, &topo).await;
        println!(
            "{svc}: caller stalled after {} MiB; service stopped at {} MiB",
            consumed >> 20,
            stalled_at >> 20
        );
        assert!(
            stalled_at <= consumed + MAX_AHEAD,
            "{svc}: the service produced {} MiB while the caller had read {} MiB: \
             something buffers instead of pushing back",
            stalled_at >> 20,
            consumed >> 20
        );
        while let Some(frame) = within("the rest of the body", body.frame()).await {
            if let Ok(data) = frame.unwrap().into_data() {
                consumed += read(data);
            }
        }
        assert_eq!(consumed, N, "{svc}");
        assert_eq!(produced(), N, "{svc}");
    }
}

// ---------------------------------------------------------------------------
// 6. Header hygiene
// ---------------------------------------------------------------------------

/// `name: value` lines from the example service's `GET /headers`.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Hop-by-hop and connection-specific request headers from an HTTP/1.1
/// caller, and forged identity headers, never reach the service; Tether
/// sets `x-forwarded-client-cert` exactly once; end-to-end headers pass.
#[tokio::test]
async fn hop_by_hop_and_forged_identity_request_headers_are_removed() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let mut req = request(Method::GET, &topo.host("web"), "/headers", empty()).unwrap();
    let h = req.headers_mut();
    h.insert("connection", HeaderValue::from_static("x-foo, x-bar"));
    h.insert("x-foo", HeaderValue::from_static("1"));
    h.insert("x-bar", HeaderValue::from_static("2"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
    h.insert("te", HeaderValue::from_static("gzip"));
    h.insert(
        "proxy-authorization",
        HeaderValue::from_static("Basic Zm9vOmJhcg=="),
    );
    h.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_static("By=spiffe://evil/tunnel/x;URI=spiffe://evil/caller/forged"),
    );
    h.append(
        "x-forwarded-client-cert",
        HeaderValue::from_static("URI=spiffe://tether.local/caller/admin"),
    );
    h.insert("x-end-to-end", HeaderValue::from_static("kept"));
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    h.insert("user-agent", HeaderValue::from_static("semantics-test/1"));
    let resp = within("GET /headers", caller.send(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(collect(resp.into_body()).await.unwrap().to_vec()).unwrap();
    let seen = parse_headers(&text);
    let get = |name: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };

    for gone in [
        "connection",
        "x-foo",
        "x-bar",
        "keep-alive",
        "proxy-connection",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(get(gone).is_empty(), "{gone} reached the service:\n{text}");
    }
    assert_eq!(get("x-forwarded-client-cert"), [expected_xfcc()], "{text}");
    assert_eq!(get("x-end-to-end"), ["kept"], "{text}");
    assert_eq!(
        get("traceparent"),
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
        "{text}"
    );
    assert_eq!(get("user-agent"), ["semantics-test/1"], "{text}");
    assert_eq!(get("x-request-id").len(), 1, "{text}");
}

/// A gRPC caller's forged `x-forwarded-client-cert` metadata is replaced:
/// the service sees exactly the identity Tether verified.
#[tokio::test]
async fn forged_identity_metadata_from_a_grpc_caller_is_replaced() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let mut client = echo_client(&topo).await;
    let mut req = tonic::Request::new(EchoRequest {
        text: "who".into(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "x-forwarded-client-cert",
        "By=spiffe://evil/tunnel/x;URI=spiffe://evil/caller/forged"
            .parse()
            .unwrap(),
    );
    let reply = within("unary", client.unary(req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.caller, expected_xfcc());
}

/// Hop-by-hop headers in an HTTP/1.1 service's response never reach the
/// caller; end-to-end ones do.
#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let _shared = PROCESS.read().await;
    let raw = raw_upstream().await;
    let topo = topology_with(vec![("raw1", service(raw.addr, Protocol::Http1))]).await;
    let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let req = request(Method::GET, &topo.host("raw1"), "/hop", empty()).unwrap();
    let resp = within("GET /hop", caller.send(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    for gone in [
        "x-bar",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the caller: {headers:?}"
        );
    }
    assert!(
        headers
            .get_all("connection")
            .iter()
            .all(|v| !v.as_bytes().eq_ignore_ascii_case(b"x-bar")),
        "the service's Connection header reached the caller: {headers:?}"
    );
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(collect(resp.into_body()).await.unwrap(), "hop\n");
}

// ---------------------------------------------------------------------------
// 7. Distinct refusals
// ---------------------------------------------------------------------------

struct Refusal {
    host: String,
    http: StatusCode,
    tether_error: &'static str,
    grpc: Code,
    /// What the message must name.
    mentions: &'static [&'static str],
}

async fn assert_refused(topo: &Topology, r: &Refusal) {
    let obs = &topo.upstream.observed;
    let before = obs.requests();
    for h2_caller in [false, true] {
        let mut caller = HttpCaller::plaintext(topo.plaintext_addr, h2_caller)
            .await
            .unwrap();
        let req = if h2_caller {
            request_h2(Method::GET, &r.host, "/hello", empty()).unwrap()
        } else {
            request(Method::GET, &r.host, "/hello", empty()).unwrap()
        };
        let resp = within("refusal", caller.send(req)).await.unwrap();
        assert_eq!(resp.status(), r.http, "{}", r.host);
        assert_eq!(resp.headers()["tether-error"], r.tether_error, "{}", r.host);
        let text = String::from_utf8(collect(resp.into_body()).await.unwrap().to_vec()).unwrap();
        for m in r.mentions {
            assert!(
                text.contains(m),
                "{}: HTTP message {text:?} lacks {m}",
                r.host
            );
        }
    }
    let mut client = grpc_plaintext(topo.plaintext_addr, &r.host).await.unwrap();
    let status = within(
        "gRPC refusal",
        client.unary(EchoRequest {
            text: "x".into(),
            ..Default::default()
        }),
    )
    .await
    .expect_err("must be refused");
    assert_eq!(status.code(), r.grpc, "{}: {status:?}", r.host);
    assert_eq!(
        status.metadata().get("tether-error").unwrap(),
        r.tether_error,
        "{}",
        r.host
    );
    for m in r.mentions {
        assert!(
            status.message().contains(m),
            "{}: gRPC message {:?} lacks {m}",
            r.host,
            status.message()
        );
    }
    assert_eq!(
        obs.requests(),
        before,
        "{}: a refused call reached the service",
        r.host
    );
}

/// Each way a call can fail to reach its service has its own HTTP status,
/// gRPC code and `tether-error`, and a message naming what is wrong; none
/// of them reaches the service.
#[tokio::test]
async fn each_refusal_is_distinct_and_says_what_is_wrong() {
    let _shared = PROCESS.read().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = Options::default();
    opts.extra_services
        .insert("dead".into(), service(closed, Protocol::Http1));
    opts.known_tunnels = vec!["offline".into()];
    let mut topo = Topology::start_with(opts).await.unwrap();

    let cases = [
        Refusal {
            host: "echo.nope.tunnel.local".into(),
            http: StatusCode::NOT_FOUND,
            tether_error: "unknown-tunnel",
            grpc: Code::NotFound,
            mentions: &["'nope'"],
        },
        Refusal {
            host: "echo.offline.tunnel.local".into(),
            http: StatusCode::SERVICE_UNAVAILABLE,
            tether_error: "tunnel-offline",
            grpc: Code::Unavailable,
            mentions: &["'offline'"],
        },
        Refusal {
            host: topo.host("nosuch"),
            http: StatusCode::NOT_FOUND,
            tether_error: "unknown-service",
            grpc: Code::Unimplemented,
            mentions: &["'nosuch'", "'demo'"],
        },
        Refusal {
            host: topo.host("dead"),
            http: StatusCode::BAD_GATEWAY,
            tether_error: "upstream-unavailable",
            grpc: Code::Unavailable,
            mentions: &["'dead'"],
        },
        Refusal {
            host: "example.com".into(),
            http: StatusCode::NOT_FOUND,
            tether_error: "no-route",
            grpc: Code::NotFound,
            mentions: &["example.com"],
        },
    ];
    for case in &cases {
        assert_refused(&topo, case).await;
    }

    // The demo tunnel itself, once its client is gone.
    topo.stop_client().await;
    assert_refused(
        &topo,
        &Refusal {
            host: topo.host("echo"),
            http: StatusCode::SERVICE_UNAVAILABLE,
            tether_error: "tunnel-offline",
            grpc: Code::Unavailable,
            mentions: &["'demo'"],
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// 8. A thousand concurrent calls
// ---------------------------------------------------------------------------

/// An Echo service whose unary handler holds every call until `n` calls
/// are in it at once, then answers them all: if the tunnel serialised or
/// capped concurrent calls below `n`, nothing would ever be answered.
#[derive(Clone)]
struct Gate {
    inside: watch::Sender<u64>,
    n: u64,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Gate {
    async fn unary(
        &self,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let caller = req
            .metadata()
            .get("x-forwarded-client-cert")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.inside.send_modify(|n| *n += 1);
        let mut inside = self.inside.subscribe();
        let n = self.n;
        inside
            .wait_for(|k| *k >= n)
            .await
            .map_err(|_| Status::internal("gate closed"))?;
        let msg = req.into_inner();
        Ok(tonic::Response::new(EchoReply {
            text: msg.text,
            payload: msg.payload,
            seq: 0,
            caller,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        _req: tonic::Request<StreamRequest>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        Err(Status::unimplemented("gate: unary only"))
    }

    async fn client_stream(
        &self,
        _req: tonic::Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        Err(Status::unimplemented("gate: unary only"))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        _req: tonic::Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        Err(Status::unimplemented("gate: unary only"))
    }
}

/// Serves `gate` over h2c, allowing more concurrent streams than the test
/// opens (hyper's default would cap them at 200).
async fn gate_upstream(gate: Gate) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let max_streams = u32::try_from(gate.n * 2).unwrap();
    let grpc = EchoServer::new(gate);
    // Ends with the test's runtime.
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let grpc = grpc.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| grpc.clone().oneshot(req));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(max_streams);
                let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    addr
}

/// 1,000 gRPC unary calls over 4 caller connections through one tunnel are
/// all in flight at once — proven by a service that answers none until all
/// 1,000 are inside it — and all come back with their own payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_through_one_tunnel() {
    const CALLS: u64 = 1000;
    const CONNECTIONS: u64 = 4;
    let _shared = PROCESS.read().await;
    let (inside, mut watch_inside) = watch::channel(0u64);
    let gate_addr = gate_upstream(Gate { inside, n: CALLS }).await;
    let topo = topology_with(vec![("gate", service(gate_addr, Protocol::H2c))]).await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(
            grpc_plaintext(topo.plaintext_addr, &topo.host("gate"))
                .await
                .unwrap(),
        );
    }

    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let mut client = clients[(i % CONNECTIONS) as usize].clone();
        calls.spawn(async move {
            let payload = i.to_le_bytes().repeat(8);
            let reply = client
                .unary(EchoRequest {
                    text: format!("call-{i}"),
                    payload: payload.clone(),
                    ..Default::default()
                })
                .await;
            (i, payload, reply)
        });
    }
    let all_inside = tokio::time::timeout(WAIT, watch_inside.wait_for(|n| *n >= CALLS))
        .await
        .map(|_| ());
    assert!(
        all_inside.is_ok(),
        "only {} of {CALLS} calls were in the service at once",
        *watch_inside.borrow()
    );

    let mut answered = 0;
    while let Some(joined) = within("the answers", calls.join_next()).await {
        let (i, payload, reply) = joined.unwrap();
        let reply = reply
            .unwrap_or_else(|s| panic!("call {i} failed: {s:?}"))
            .into_inner();
        assert_eq!(reply.text, format!("call-{i}"));
        assert_eq!(reply.payload, payload);
        assert_eq!(reply.caller, expected_xfcc());
        answered += 1;
    }
    assert_eq!(answered, CALLS);
}

// ---------------------------------------------------------------------------
// HTTP/1.1 body framing
// ---------------------------------------------------------------------------

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

/// HTTP/1.1 callers POST bodies framed by Content-Length and by chunked
/// encoding to HTTP/1.1 and h2c services; the echo comes back byte-exact,
/// and a declared length stays declared end to end.
#[tokio::test]
async fn http1_request_bodies_round_trip_byte_exact() {
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

    for svc in ["web", "echo"] {
        let mut caller = HttpCaller::plaintext(topo.plaintext_addr, false)
            .await
            .unwrap();

        let req = request(Method::POST, &topo.host(svc), "/echo", full(sized.clone())).unwrap();
        let resp = within("Content-Length echo", caller.send(req))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{svc}");
        assert_eq!(
            resp.headers()[http::header::CONTENT_LENGTH],
            sized.len().to_string().as_str(),
            "{svc}: the declared length did not survive"
        );
        assert!(collect(resp.into_body()).await.unwrap() == sized, "{svc}");

        let req = request(
            Method::POST,
            &topo.host(svc),
            "/echo",
            chunked_body(pieces.clone()),
        )
        .unwrap();
        let resp = within("chunked echo", caller.send(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{svc}");
        assert!(
            !resp.headers().contains_key(http::header::CONTENT_LENGTH),
            "{svc}: a chunked echo cannot know its length"
        );
        assert!(collect(resp.into_body()).await.unwrap() == chunked, "{svc}");

        // An empty POST, on the same connection.
        let req = request(Method::POST, &topo.host(svc), "/echo", full(Bytes::new())).unwrap();
        let resp = within("empty echo", caller.send(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{svc}");
        assert!(collect(resp.into_body()).await.unwrap().is_empty(), "{svc}");
    }
}

/// GET and HEAD without a body work over HTTP/1.1 and HTTP/2, to HTTP/1.1
/// and h2c services: HEAD carries the GET's Content-Length and no body, and
/// the connection stays in step for the next request.
#[tokio::test]
async fn bodiless_get_and_head_work() {
    let _shared = PROCESS.read().await;
    let topo = Topology::start().await.unwrap();
    let greeting = format!(
        "hello from the example service; you are {}\n",
        expected_xfcc()
    );

    for svc in ["web", "echo"] {
        for h2_caller in [false, true] {
            let case = format!("{svc}, HTTP/2 caller: {h2_caller}");
            let mut caller = HttpCaller::plaintext(topo.plaintext_addr, h2_caller)
                .await
                .unwrap();
            let req = |method: Method| {
                if h2_caller {
                    request_h2(method, &topo.host(svc), "/hello", empty()).unwrap()
                } else {
                    request(method, &topo.host(svc), "/hello", empty()).unwrap()
                }
            };
            for method in [Method::GET, Method::HEAD, Method::GET] {
                let resp = within("response", caller.send(req(method.clone())))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{case} {method}");
                let headers: HeaderMap = resp.headers().clone();
                let body = within("body", collect(resp.into_body())).await.unwrap();
                if method == Method::HEAD {
                    assert!(body.is_empty(), "{case}: HEAD returned a body");
                    assert_eq!(
                        headers[http::header::CONTENT_LENGTH],
                        greeting.len().to_string().as_str(),
                        "{case}"
                    );
                } else {
                    assert_eq!(body, greeting.as_bytes(), "{case}");
                }
            }
        }
    }
}
