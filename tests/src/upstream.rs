//! The example data-plane service: gRPC `tether.echo.v1.Echo` and a few
//! plain HTTP endpoints on one port (HTTP/1.1 and h2c). It counts every
//! request it receives, so refusal tests can prove nothing reached it, and
//! records cancellations, so cancellation tests can prove they arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};
use tower::ServiceExt;

use crate::pb::echo_server::{Echo, EchoServer};
use crate::pb::{EchoReply, EchoRequest, StreamRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What the upstream has seen, shared with tests.
#[derive(Debug, Default)]
pub struct Observed {
    /// Requests received (gRPC and HTTP).
    pub requests: AtomicU64,
    /// gRPC handlers dropped before finishing (cancellation reached us).
    pub cancelled: AtomicU64,
    /// gRPC handlers parked for good by `hang` or `hang_after`: only a
    /// cancellation ends them, and it is counted in `cancelled`.
    pub hanging: AtomicU64,
    /// Signalled each time a handler starts hanging.
    pub hanging_notify: Notify,
    /// Signalled on each cancellation.
    pub cancel_notify: Notify,
    /// Signalled on each request.
    pub request_notify: Notify,
    /// Body bytes `GET /bytes` has produced so far: how far the service
    /// got ahead of its caller (backpressure tests).
    pub bytes_produced: AtomicU64,
}

impl Observed {
    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Body bytes `GET /bytes` has handed to its connection so far.
    pub fn bytes_produced(&self) -> u64 {
        self.bytes_produced.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` cancellations were observed.
    pub async fn wait_cancelled(&self, n: u64) {
        loop {
            let notified = self.cancel_notify.notified();
            if self.cancelled.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    /// Waits until at least `n` handlers are hanging: from then on,
    /// cancelling their calls is observed in [`Observed::cancelled`].
    pub async fn wait_hanging(&self, n: u64) {
        loop {
            let notified = self.hanging_notify.notified();
            if self.hanging.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    /// Parks the calling handler for good, counting it as hanging.
    async fn hang(&self) {
        self.hanging.fetch_add(1, Ordering::SeqCst);
        self.hanging_notify.notify_waiters();
        std::future::pending::<()>().await;
    }

    /// Waits until at least `n` requests were observed.
    pub async fn wait_requests(&self, n: u64) {
        loop {
            let notified = self.request_notify.notified();
            if self.requests() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a cancellation if dropped before `done`.
struct CancelGuard {
    observed: Arc<Observed>,
    done: bool,
}

impl CancelGuard {
    fn new(observed: Arc<Observed>) -> Self {
        Self {
            observed,
            done: false,
        }
    }

    /// The handler finished normally: not a cancellation.
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.observed.cancelled.fetch_add(1, Ordering::SeqCst);
            self.observed.cancel_notify.notify_waiters();
        }
    }
}

fn caller_of<T>(req: &tonic::Request<T>) -> String {
    req.metadata()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[derive(Clone)]
struct EchoService {
    observed: Arc<Observed>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(
        &self,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let caller = caller_of(&req);
        let msg = req.into_inner();
        if msg.hang {
            let mut guard = CancelGuard::new(self.observed.clone());
            self.observed.hang().await;
            guard.finish();
        }
        if msg.fail_code != 0 {
            let mut status = Status::new(
                Code::from(msg.fail_code as i32),
                format!("failed as asked: {}", msg.text),
            );
            status.metadata_mut().insert(
                "x-detail",
                "detail-text".parse().map_err(|_| Status::internal("md"))?,
            );
            status.metadata_mut().insert_bin(
                "x-detail-bin",
                tonic::metadata::MetadataValue::from_bytes(&[0, 1, 2, 255]),
            );
            return Err(status);
        }
        let mut resp = tonic::Response::new(EchoReply {
            text: msg.text,
            payload: msg.payload,
            seq: 0,
            caller,
        });
        resp.metadata_mut()
            .insert("x-echo", "yes".parse().map_err(|_| Status::internal("md"))?);
        resp.metadata_mut().insert_bin(
            "x-echo-bin",
            tonic::metadata::MetadataValue::from_bytes(&[0xde, 0xad, 0xbe, 0xef]),
        );
        Ok(resp)
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: tonic::Request<StreamRequest>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        let caller = caller_of(&req);
        let msg = req.into_inner();
        let observed = self.observed.clone();
        let stream = async_stream(msg, caller, observed);
        Ok(tonic::Response::new(stream))
    }

    async fn client_stream(
        &self,
        req: tonic::Request<Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let caller = caller_of(&req);
        let mut stream = req.into_inner();
        let mut guard = CancelGuard::new(self.observed.clone());
        let mut text = String::new();
        let mut payload = Vec::new();
        let mut seq = 0;
        while let Some(msg) = stream.message().await? {
            // tonic ends the input cleanly when the caller cancels (RST_STREAM
            // CANCEL), so only a handler that is not reading can observe a
            // cancellation: `hang` stops reading for good.
            if msg.hang {
                self.observed.hang().await;
            }
            text.push_str(&msg.text);
            payload.extend_from_slice(&msg.payload);
            seq += 1;
        }
        guard.finish();
        Ok(tonic::Response::new(EchoReply {
            text,
            payload,
            seq,
            caller,
        }))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        req: tonic::Request<Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        let caller = caller_of(&req);
        let observed = self.observed.clone();
        let input = req.into_inner();
        let out = futures_util::stream::unfold(
            (input, 0u64, CancelGuard::new(observed)),
            move |(mut input, seq, mut guard)| {
                let caller = caller.clone();
                async move {
                    match input.message().await {
                        Ok(Some(msg)) if msg.fail_code != 0 => {
                            guard.finish();
                            Some((
                                Err(Status::new(
                                    Code::from(msg.fail_code as i32),
                                    "failed as asked",
                                )),
                                (input, seq, guard),
                            ))
                        }
                        Ok(Some(msg)) => Some((
                            Ok(EchoReply {
                                text: msg.text,
                                payload: msg.payload,
                                seq,
                                caller,
                            }),
                            (input, seq + 1, guard),
                        )),
                        Ok(None) => {
                            guard.finish();
                            None
                        }
                        Err(status) => Some((Err(status), (input, seq, guard))),
                    }
                }
            },
        );
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

fn async_stream(msg: StreamRequest, caller: String, observed: Arc<Observed>) -> ReplyStream {
    let guard = CancelGuard::new(observed);
    let count = u64::from(msg.count);
    let s = futures_util::stream::unfold((0u64, guard), move |(seq, mut guard)| {
        let (text, caller) = (msg.text.clone(), caller.clone());
        let hang_after = msg.hang_after;
        async move {
            if seq >= count {
                if hang_after {
                    guard.observed.hang().await;
                }
                guard.finish();
                return None;
            }
            Some((
                Ok(EchoReply {
                    text: format!("{text}-{seq}"),
                    payload: Vec::new(),
                    seq,
                    caller,
                }),
                (seq + 1, guard),
            ))
        }
    });
    Box::pin(s)
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<BoxBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp
}

/// Plain HTTP endpoints (`HEAD` works on each: GET's head, no body):
/// - `GET /hello`: a greeting naming the caller;
/// - `POST /echo`: streams the request body back as it arrives;
/// - `GET /headers`: the request headers, one `name: value` per line;
/// - `GET /bytes?n=N`: N bytes of `x`, streamed in 64 KiB chunks, each
///   counted in [`Observed::bytes_produced`] when the connection polls it;
/// - `POST /count[?n=N]`: reads the request body without keeping it and
///   answers its length in decimal (see [`count`]).
async fn http(mut req: Request<Incoming>, observed: &Arc<Observed>) -> Response<BoxBody> {
    if req.method() != http::Method::HEAD {
        return route(req, observed).await;
    }
    // hyper's HTTP/2 server sends whatever body it is given, even for HEAD
    // (a peer then resets the stream), so HEAD is answered here: GET's head
    // with its length, and no body.
    *req.method_mut() = http::Method::GET;
    let (mut parts, body) = route(req, observed).await.into_parts();
    if let Some(n) = http_body::Body::size_hint(&body).exact() {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let empty = full(parts.status, Bytes::new()).into_body();
    Response::from_parts(parts, empty)
}

async fn route(req: Request<Incoming>, observed: &Arc<Observed>) -> Response<BoxBody> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (http::Method::GET, "/hello") => {
            let caller = req
                .headers()
                .get("x-forwarded-client-cert")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nobody")
                .to_string();
            full(
                StatusCode::OK,
                format!("hello from the example service; you are {caller}\n"),
            )
        }
        (http::Method::POST, "/echo") => {
            let body = req.into_body().map_err(BoxError::from).boxed_unsync();
            Response::new(body)
        }
        (http::Method::GET, "/headers") => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("<binary>")));
            }
            full(StatusCode::OK, out)
        }
        (http::Method::POST, "/count") => count(req).await,
        (http::Method::GET, "/bytes") => {
            let n: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let observed = observed.clone();
            let frames = futures_util::stream::unfold(n, move |left| {
                let (chunk, observed) = (chunk.clone(), observed.clone());
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    observed.bytes_produced.fetch_add(take, Ordering::SeqCst);
                    Some((
                        Ok::<_, BoxError>(http_body::Frame::data(chunk.slice(..take as usize))),
                        left - take,
                    ))
                }
            });
            Response::new(StreamBody::new(frames).boxed_unsync())
        }
        _ => full(StatusCode::NOT_FOUND, "no such endpoint\n"),
    }
}

/// `POST /count[?n=N]`, the sink of bench's `bulk` uploads: the response
/// head is sent once the first body byte has arrived (or the body ended
/// empty), so its arrival tells the caller when the upload started
/// reaching the service; the body then drains the request, counting bytes
/// without keeping them, and ends with the count in decimal and a newline.
/// With `n=N`, a body of any other length ends the response with an error
/// (the stream is reset) instead, so a truncated upload can never pass for
/// a complete one.
async fn count(req: Request<Incoming>) -> Response<BoxBody> {
    let expected: Option<u64> = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok());
    let mut body = req.into_body();
    let mut seen = 0u64;
    let mut ended = false;
    while seen == 0 {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(e)) => return full(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
            None => {
                ended = true;
                break;
            }
        }
    }
    let total = futures_util::stream::once(async move {
        let mut n = seen;
        if !ended {
            while let Some(frame) = body.frame().await {
                n += frame?.data_ref().map_or(0, |d| d.len() as u64);
            }
        }
        match expected {
            Some(want) if want != n => Err(BoxError::from(format!(
                "received {n} body bytes, expected {want}"
            ))),
            _ => Ok(http_body::Frame::data(Bytes::from(format!("{n}\n")))),
        }
    });
    Response::new(StreamBody::new(total).boxed_unsync())
}

/// A running example upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it has seen.
    pub observed: Arc<Observed>,
    cancel: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the example upstream on `addr` (use port 0 in tests).
pub async fn start(addr: SocketAddr) -> std::io::Result<Upstream> {
    start_with(addr, None).await
}

/// Starts the example upstream serving TLS (HTTP/2 or HTTP/1.1 by ALPN)
/// with the given certificate, so the client's `tls` service protocol can
/// be exercised.
pub async fn start_tls(
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Upstream> {
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(proxy::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(start_with(addr, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await?)
}

async fn start_with(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<Upstream> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let observed = Arc::new(Observed::default());
    let cancel = CancellationToken::new();
    let grpc = EchoServer::new(EchoService {
        observed: observed.clone(),
    });
    let (obs, stop) = (observed.clone(), cancel.clone());
    // Owned by the cancel token, which `Upstream` cancels on drop.
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = stop.cancelled() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (grpc, obs, stop, tls) = (grpc.clone(), obs.clone(), stop.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (grpc, obs) = (grpc.clone(), obs.clone());
                    async move {
                        obs.requests.fetch_add(1, Ordering::SeqCst);
                        obs.request_notify.notify_waiters();
                        let is_grpc = req
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                        let resp: Response<BoxBody> = if is_grpc {
                            match grpc.oneshot(req).await {
                                Ok(resp) => resp.map(|b| b.map_err(BoxError::from).boxed_unsync()),
                                Err(never) => match never {},
                            }
                        } else {
                            http(req, &obs).await
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
            });
        }
    });
    Ok(Upstream {
        addr,
        observed,
        cancel,
    })
}

/// Reads a whole body into memory (small bodies in tests only).
pub async fn collect(body: Incoming) -> Result<Bytes, hyper::Error> {
    Ok(body.collect().await?.to_bytes())
}

/// Drains a body counting bytes without keeping them (large bodies).
pub async fn count_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// A running TCP echo service.
pub struct TcpEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    /// Connections that ended with a reset from the peer.
    pub resets: Arc<AtomicU64>,
    /// Signalled on each reset.
    pub reset_notify: Arc<Notify>,
    cancel: CancellationToken,
}

impl TcpEcho {
    /// Waits until at least `n` connections were reset by their peer.
    pub async fn wait_resets(&self, n: u64) {
        loop {
            let notified = self.reset_notify.notified();
            if self.resets.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts a TCP service that echoes every byte; when the peer half-closes,
/// it writes `EOF after <n> bytes\n` and then closes its side — so a test
/// can see that a FIN one way did not cut the other. Receiving `RST!` makes
/// it reset the connection.
pub async fn start_tcp_echo(addr: SocketAddr) -> std::io::Result<TcpEcho> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(AtomicU64::new(0));
    let resets = Arc::new(AtomicU64::new(0));
    let reset_notify = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    let (count, stop) = (connections.clone(), cancel.clone());
    let (resets_seen, notify) = (resets.clone(), reset_notify.clone());
    // Owned by the cancel token, which `TcpEcho` cancels on drop.
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = stop.cancelled() => return,
            };
            count.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            let (resets_seen, notify) = (resets_seen.clone(), notify.clone());
            tokio::spawn(async move {
                let echo = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0u64;
                    loop {
                        let n = tcp.read(&mut buf).await?;
                        if n == 0 {
                            tcp.write_all(format!("EOF after {total} bytes\n").as_bytes())
                                .await?;
                            tcp.shutdown().await?;
                            return Ok::<_, std::io::Error>(());
                        }
                        if buf[..n].windows(4).any(|w| w == b"RST!") {
                            // Abortive close: the peer must see a reset, not EOF.
                            tcp.set_zero_linger()?;
                            return Ok(());
                        }
                        total += n as u64;
                        tcp.write_all(&buf[..n]).await?;
                    }
                };
                tokio::select! {
                    r = echo => {
                        if let Err(e) = r {
                            if e.kind() == std::io::ErrorKind::ConnectionReset {
                                resets_seen.fetch_add(1, Ordering::SeqCst);
                                notify.notify_waiters();
                            }
                        }
                    }
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(TcpEcho {
        addr,
        connections,
        resets,
        reset_notify,
        cancel,
    })
}

/// Like [`start_tls`], but requires a client certificate chained to
/// `client_roots`: a control-plane service that authenticates its callers.
pub async fn start_mtls(
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    client_roots: Arc<rustls::RootCertStore>,
) -> anyhow::Result<Upstream> {
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        client_roots,
        proxy::tls::provider(),
    )
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(proxy::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(start_with(addr, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await?)
}
