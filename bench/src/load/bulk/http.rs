//! Bulk transfers as HTTP/2 bodies, the way the tunnel carries them: an
//! upload is a `POST /count?n=N` whose body is N bytes, answered with the
//! count the upstream read; a download is a `GET /bytes?n=N`, counted as
//! it arrives. Both are plain HTTP on the example upstream
//! (`tether_tests::upstream`), not gRPC: the tunnel forwards HTTP/2 body
//! frames whatever they hold, and protobuf framing would only add the same
//! encoding work at both ends of every path, diluting what the path
//! itself costs.
//!
//! The generator's HTTP/2 windows are Tether's QUIC windows
//! ([`proxy::Limits`]), so the generator never throttles a path below what
//! the tunnel itself allows; frames stay at HTTP/2's default 16 KiB, as
//! real callers send them.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::load::bulk::transfer::{chunk, Transfer};
use crate::paths::Endpoint;

/// The most bytes of an answer read besides the payload (the upload's
/// count, an error page): bounds a misbehaving upstream.
const SMALL_BODY: usize = 4096;

/// An HTTP/2 connection (h2c, or TLS with ALPN `h2`) to the example
/// upstream's bulk endpoints, directly or through a path; clones share it.
#[derive(Clone)]
pub struct HttpBulk {
    sender: http2::SendRequest<Upload>,
    /// `http://<authority>` or `https://<authority>`.
    base: String,
    chunk: Bytes,
    _conn: Arc<ConnTask>,
}

impl fmt::Debug for HttpBulk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBulk")
            .field("base", &self.base)
            .finish()
    }
}

/// The task driving the connection, aborted when the last clone of the
/// caller is dropped.
struct ConnTask(JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HttpBulk {
    /// Connects to `endpoint` (plaintext h2c, or mTLS when it says so).
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(endpoint.addr).await?;
        tcp.set_nodelay(true)?;
        match &endpoint.tls {
            None => {
                Self::handshake(TokioIo::new(tcp), format!("http://{}", endpoint.authority)).await
            }
            Some((tls, server_name)) => {
                let name = ServerName::try_from(server_name.clone())
                    .with_context(|| format!("{server_name:?} is not a server name"))?;
                let stream = TlsConnector::from(Arc::new(tls.clone()))
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                anyhow::ensure!(
                    stream.get_ref().1.alpn_protocol() == Some(b"h2"),
                    "the server did not negotiate HTTP/2 (ALPN h2)"
                );
                Self::handshake(
                    TokioIo::new(stream),
                    format!("https://{}", endpoint.authority),
                )
                .await
            }
        }
    }

    async fn handshake<IO>(io: TokioIo<IO>, base: String) -> anyhow::Result<Self>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = proxy::Limits::default();
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(limits.stream_window)
            .initial_connection_window_size(limits.connection_window)
            .handshake(io)
            .await
            .context("HTTP/2 handshake")?;
        // Owned by `ConnTask`, aborted with the last clone of the caller;
        // it also ends by itself when the connection closes.
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            base,
            chunk: chunk(),
            _conn: Arc::new(ConnTask(task)),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Upload,
    ) -> anyhow::Result<Response<Incoming>> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .version(http::Version::HTTP_2)
            .body(body)?;
        let mut sender = self.sender.clone();
        sender.ready().await.context("the connection closed")?;
        let resp = sender.send_request(req).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let text = small_body(resp.into_body()).await.unwrap_or_default();
            anyhow::bail!(
                "{path}: the upstream answered {status}: {} (bulk needs the example upstream's \
                 POST /count and GET /bytes, as `bench upstream` serves them)",
                text.trim()
            );
        }
        Ok(resp)
    }

    /// `POST /count?n=<bytes>` with a body of `bytes` bytes in
    /// [`CHUNK`](crate::load::bulk::transfer::CHUNK)-byte frames; the upstream's
    /// count must equal `bytes` (it checks too, and resets the stream
    /// otherwise).
    pub async fn upload(&self, bytes: u64, moved: &Arc<AtomicU64>) -> anyhow::Result<Transfer> {
        let started = Instant::now();
        let body = Upload {
            left: bytes,
            chunk: self.chunk.clone(),
            moved: Some(moved.clone()),
        };
        let resp = self
            .send(Method::POST, &format!("/count?n={bytes}"), body)
            .await?;
        let ttfb = started.elapsed();
        let text = small_body(resp.into_body())
            .await
            .context("upload cut short: the upstream's count did not arrive")?;
        let count: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("the upstream answered {text:?}, not a byte count"))?;
        anyhow::ensure!(
            count == bytes,
            "the upstream received {count} of {bytes} bytes"
        );
        Ok(Transfer { bytes, ttfb })
    }

    /// `GET /bytes?n=<bytes>`, counting the body as it arrives; fewer (or
    /// more) bytes than asked is an error.
    pub async fn download(&self, bytes: u64, moved: &AtomicU64) -> anyhow::Result<Transfer> {
        let started = Instant::now();
        let resp = self
            .send(Method::GET, &format!("/bytes?n={bytes}"), Upload::empty())
            .await?;
        let mut body = resp.into_body();
        let (mut got, mut ttfb) = (0u64, None);
        while let Some(frame) = body.frame().await {
            let frame =
                frame.with_context(|| format!("download cut after {got} of {bytes} bytes"))?;
            if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                ttfb.get_or_insert_with(|| started.elapsed());
                got += data.len() as u64;
                moved.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        anyhow::ensure!(got == bytes, "download ended after {got} of {bytes} bytes");
        Ok(Transfer {
            bytes,
            ttfb: ttfb.unwrap_or_else(|| started.elapsed()),
        })
    }
}

/// A whole small body as text; more than [`SMALL_BODY`] bytes is an error.
async fn small_body(mut body: Incoming) -> anyhow::Result<String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            out.extend_from_slice(data);
            anyhow::ensure!(
                out.len() <= SMALL_BODY,
                "answer longer than {SMALL_BODY} bytes"
            );
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A request body of `left` bytes produced on demand from one shared
/// chunk: no copy and no allocation per frame, and hyper pulls the next
/// frame only as HTTP/2 flow control lets it send, so nothing piles up.
/// Each frame is added to `moved` as hyper takes it.
struct Upload {
    left: u64,
    chunk: Bytes,
    moved: Option<Arc<AtomicU64>>,
}

impl Upload {
    /// No body (a `GET`).
    fn empty() -> Self {
        Self {
            left: 0,
            chunk: Bytes::new(),
            moved: None,
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 || self.chunk.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len() as u64);
        self.left -= take;
        if let Some(moved) = &self.moved {
            moved.fetch_add(take, Ordering::Relaxed);
        }
        // `take` ≤ the chunk's length, a usize.
        let data = self.chunk.slice(..usize::try_from(take).unwrap_or(0));
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
