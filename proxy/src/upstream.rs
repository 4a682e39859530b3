//! The services a stream is finally delivered to — a tunnel client's local
//! services (ingress) and an edge's named upstreams (egress) — with the
//! configuration that names them and a pooled HTTP client for each.

use crate::admission::Admitted;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::RootCertStore;
use serde::Deserialize;

use crate::config::ConfigErrors;
use crate::forward::TunnelBody;
use crate::lifecycle::Lifecycle;
use crate::tls::{load_identity, load_trust_bundle, TlsError, TlsIdentity};
use crate::Limits;

/// How a service is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 over TCP.
    Http1,
    /// HTTP/2 over TCP with prior knowledge (gRPC servers).
    H2c,
    /// TLS, HTTP/2 or HTTP/1.1 by ALPN.
    Tls,
    /// A raw TCP byte stream (`tcp://host:port`): SSH, PostgreSQL…
    Tcp,
}

/// One validated service.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Scheme and authority requests are sent to.
    pub url: Uri,
    /// How to speak to it.
    pub protocol: Protocol,
    /// CAs for `Tls` services.
    pub ca: Option<Arc<RootCertStore>>,
    /// Client certificate presented to `Tls` services that want one.
    pub client_identity: Option<TlsIdentity>,
}

/// A service as written in a config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port`, `https://host:port` or `tcp://host:port`.
    pub url: String,
    /// `http1`, `h2c`, `tls` (HTTP/2 or 1.1 by ALPN) or `tcp`; default from
    /// the URL scheme (`http` → `http1`, `https` → `tls`, `tcp` → `tcp`).
    pub protocol: Option<String>,
    /// PEM CA bundle for `tls` services.
    pub ca: Option<PathBuf>,
    /// PEM client certificate for `tls` services that require one.
    pub client_cert: Option<PathBuf>,
    /// PEM key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// Service names are DNS labels (they are host labels at the edge and the
/// host a workload names in egress): 1–63 of `a-z 0-9 -`.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err("may hold only a-z, 0-9 and - (not at either end)");
    }
    Ok(())
}

impl RawUpstream {
    /// Validates one entry; problems are recorded under `key`.
    pub fn into_spec(
        self,
        key: &str,
        base: &Path,
        errors: &mut ConfigErrors,
    ) -> Option<UpstreamSpec> {
        let raw = self;
        let url: Uri = match raw.url.parse() {
            Ok(u) => u,
            Err(e) => {
                errors.push(&format!("{key}.url"), format!("'{}': {e}", raw.url));
                return None;
            }
        };
        let scheme = url.scheme_str().unwrap_or("");
        if url.authority().is_none() || !matches!(scheme, "http" | "https") {
            errors.push(
                &format!("{key}.url"),
                format!(
                    "'{}' must be http://host:port or https://host:port",
                    raw.url
                ),
            );
            return None;
        }
        if url.path() != "/" && !url.path().is_empty() {
            errors.push(
                &format!("{key}.url"),
                "paths are not supported; callers' paths are forwarded as they are",
            );
        }
        let protocol = match raw.protocol.as_deref() {
            None if scheme == "https" => Protocol::Tls,
            None if scheme == "tcp" => Protocol::Tcp,
            Some("tcp") => Protocol::Tcp,
            None | Some("http1") => Protocol::Http1,
            Some("h2c") => Protocol::H2c,
            Some("tls") => Protocol::Tls,
            Some(other) => {
                errors.push(
                    &format!("{key}.protocol"),
                    format!("'{other}' is not one of http1, h2c, tls"),
                );
                return None;
            }
        };
        if (protocol == Protocol::Tls) != (scheme == "https") {
            errors.push(
                &format!("{key}.protocol"),
                "use https:// URLs with protocol tls, and http:// with http1 or h2c",
            );
        }
        let ca = match (&raw.ca, protocol) {
            (Some(path), _) => load_trust_bundle(&base.join(path))
                .map_err(|e| errors.push(&format!("{key}.ca"), e))
                .ok(),
            (None, Protocol::Tls) => {
                errors.push(
                    &format!("{key}.ca"),
                    "tls services need a CA bundle (ca = \"path/to/ca.pem\")",
                );
                None
            }
            (None, _) => None,
        };
        let client_identity = match (&raw.client_cert, &raw.client_key) {
            (Some(c), Some(k)) => load_identity(&base.join(c), &base.join(k))
                .map_err(|e| errors.push(&format!("{key}.client_cert"), e))
                .ok(),
            (None, None) => None,
            _ => {
                errors.push(
                    &format!("{key}.client_cert"),
                    "client_cert and client_key go together",
                );
                None
            }
        };
        Some(UpstreamSpec {
            url,
            protocol,
            ca,
            client_identity,
        })
    }
}

/// Validates a `[<table>.<name>]` map of services.
pub fn specs_from_raw(
    table: &str,
    raw: BTreeMap<String, RawUpstream>,
    base: &Path,
    errors: &mut ConfigErrors,
) -> BTreeMap<String, UpstreamSpec> {
    let mut out = BTreeMap::new();
    for (name, svc) in raw {
        let key = format!("{table}.{name}");
        if let Err(e) = validate_name(&name) {
            errors.push(&key, format!("name {e}"));
        }
        if let Some(s) = svc.into_spec(&key, base, errors) {
            out.insert(name, s);
        }
    }
    out
}

enum Sender {
    Plain(Client<HttpConnector, TunnelBody>),
    Tls(Client<HttpsConnector<HttpConnector>, TunnelBody>),
    Tcp(String),
}

/// One service and its connection pool.
pub struct Upstream {
    /// Scheme and authority requests go to.
    pub base: Uri,
    sender: Sender,
}

impl Upstream {
    /// True for raw TCP services.
    pub fn is_tcp(&self) -> bool {
        matches!(self.sender, Sender::Tcp(_))
    }

    /// Sends a request and waits for the response head. `None` for a TCP
    /// service, which takes no HTTP request. Only an admitted stream may
    /// send (`_admitted` is the proof, borrowed for the call).
    pub async fn send(
        &self,
        req: Request<TunnelBody>,
        _admitted: &Admitted,
    ) -> Option<Result<Response<Incoming>, hyper_util::client::legacy::Error>> {
        Some(match &self.sender {
            Sender::Plain(c) => c.request(req).await,
            Sender::Tls(c) => c.request(req).await,
            Sender::Tcp(_) => return None,
        })
    }

    /// Connects to a TCP service within `timeout`.
    pub async fn connect_tcp(
        &self,
        timeout: std::time::Duration,
        _admitted: &Admitted,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let Sender::Tcp(addr) = &self.sender else {
            return Err(std::io::Error::other("not a TCP service"));
        };
        let connect = tokio::net::TcpStream::connect(addr.as_str());
        let tcp = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out"),
            )
        })??;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

fn http_connector(limits: &Limits) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(limits.connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http
}

/// Builds a pooled client per service. Its connections' tasks belong to
/// `life` and end when the pool is dropped.
pub fn build(
    services: &BTreeMap<String, UpstreamSpec>,
    limits: &Limits,
    life: &Lifecycle,
) -> Result<HashMap<String, Upstream>, TlsError> {
    let mut out = HashMap::new();
    for (name, svc) in services {
        let mut builder = Client::builder(life.task_executor());
        builder
            .http2_initial_stream_window_size(limits.stream_window)
            .http2_initial_connection_window_size(limits.connection_window)
            .http2_max_header_list_size(limits.max_http_header_bytes)
            .http1_max_buf_size(limits.max_http_header_bytes.max(8192) as usize);
        let sender = match svc.protocol {
            Protocol::Tcp => Sender::Tcp(
                svc.url
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
            Protocol::Http1 => Sender::Plain(builder.build(http_connector(limits))),
            Protocol::H2c => {
                builder.http2_only(true);
                Sender::Plain(builder.build(http_connector(limits)))
            }
            Protocol::Tls => {
                let roots = svc.ca.clone().ok_or_else(|| {
                    TlsError::Config(format!("service '{name}' needs a CA bundle"))
                })?;
                let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsError::Config(e.to_string()))?
                    .with_root_certificates(roots);
                let tls = match &svc.client_identity {
                    Some(id) => tls
                        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                        .map_err(|e| TlsError::Config(e.to_string()))?,
                    None => tls.with_no_client_auth(),
                };
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http_connector(limits));
                Sender::Tls(builder.build(https))
            }
        };
        out.insert(
            name.clone(),
            Upstream {
                base: svc.url.clone(),
                sender,
            },
        );
    }
    Ok(out)
}
