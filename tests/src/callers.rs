//! Control-plane callers for tests: a tonic gRPC channel and a hyper HTTP
//! client, each able to reach the edge over mTLS with a caller certificate
//! or over the plaintext development listener.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use certs::IssuedCert;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::tls::TlsIdentity;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::pb::echo_client::EchoClient;
use crate::topology::tls_identity;

/// A boxed request body for the HTTP callers.
pub type ReqBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A TLS client config presenting `caller` and trusting `roots`, offering
/// `alpn`.
pub fn caller_tls(
    caller: &IssuedCert,
    roots: Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ClientConfig> {
    identity_tls(tls_identity(caller)?, roots, alpn)
}

/// Like [`caller_tls`], for an identity loaded from files (a caller of an
/// edge this process did not start).
pub fn identity_tls(
    id: TlsIdentity,
    roots: Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(id.chain, id.key)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A TLS client config with no client certificate (for refusal tests).
pub fn anonymous_tls(
    roots: Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// An Echo client over the plaintext listener, addressing `host`.
pub async fn grpc_plaintext(addr: SocketAddr, host: &str) -> anyhow::Result<EchoClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .origin(format!("http://{host}").parse::<Uri>()?)
        .connect()
        .await?;
    Ok(EchoClient::new(channel))
}

/// An Echo client over mTLS with the given TLS config, addressing `host`;
/// the edge's certificate is verified for `localhost` (test edges).
pub async fn grpc_tls(
    addr: SocketAddr,
    host: &str,
    tls: rustls::ClientConfig,
) -> anyhow::Result<EchoClient<Channel>> {
    grpc_tls_named(addr, host, "localhost", tls).await
}

/// Like [`grpc_tls`], verifying the edge's certificate for `server_name`
/// (a real edge is verified by the name callers use for it).
pub async fn grpc_tls_named(
    addr: SocketAddr,
    host: &str,
    server_name: &str,
    tls: rustls::ClientConfig,
) -> anyhow::Result<EchoClient<Channel>> {
    let name = ServerName::try_from(server_name.to_string())?;
    let connector = TlsConnector::from(Arc::new(tls));
    let channel = Endpoint::from_shared(format!("https://{host}"))?
        .connect_with_connector(tower::service_fn(move |_uri: Uri| {
            let (connector, name) = (connector.clone(), name.clone());
            async move {
                let tcp = TcpStream::connect(addr).await?;
                // As tonic does for the connections it makes itself:
                // without it, small calls wait on delayed ACKs.
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(EchoClient::new(channel))
}

/// A one-connection HTTP client (HTTP/1.1 or HTTP/2 prior knowledge) over
/// plaintext.
pub struct HttpCaller {
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl HttpCaller {
    /// Connects to `addr` speaking HTTP/1.1 (or HTTP/2 when `h2`).
    pub async fn plaintext(addr: SocketAddr, h2: bool) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        Self::handshake(TokioIo::new(tcp), h2).await
    }

    /// Connects over mTLS; HTTP/2 if ALPN picks it.
    pub async fn tls(addr: SocketAddr, tls: rustls::ClientConfig) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost")?;
        let stream = TlsConnector::from(Arc::new(tls)).connect(name, tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Self::handshake(TokioIo::new(stream), h2).await
    }

    async fn handshake<IO>(io: TokioIo<IO>, h2: bool) -> anyhow::Result<Self>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let sender = if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            // Ends when the connection closes.
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(send)
        };
        Ok(Self { sender })
    }

    /// Sends a request. For HTTP/1.1 set the `Host` header; for HTTP/2 use
    /// an absolute URI.
    pub async fn send(&mut self, req: Request<ReqBody>) -> anyhow::Result<Response<Incoming>> {
        Ok(match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }
}

/// An empty request body.
pub fn empty() -> ReqBody {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|n| match n {})
        .boxed_unsync()
}

/// A request body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|n| match n {})
        .boxed_unsync()
}

/// Builds an HTTP/1.1-style request to `host` and `path`.
pub fn request(
    method: http::Method,
    host: &str,
    path: &str,
    body: ReqBody,
) -> anyhow::Result<Request<ReqBody>> {
    Ok(Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(body)?)
}

/// Builds an HTTP/2-style request (absolute URI) to `host` and `path`.
pub fn request_h2(
    method: http::Method,
    host: &str,
    path: &str,
    body: ReqBody,
) -> anyhow::Result<Request<ReqBody>> {
    Ok(Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"))
        .version(http::Version::HTTP_2)
        .body(body)?)
}

/// `CONNECT target` through an egress listener: the status and the socket,
/// with no tunnelled byte consumed (the head is read byte by byte).
pub async fn connect_via(
    egress: std::net::SocketAddr,
    target: &str,
) -> anyhow::Result<(u16, tokio::net::TcpStream)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(egress).await?;
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response head: {head:?}"))?;
    Ok((status, tcp))
}
