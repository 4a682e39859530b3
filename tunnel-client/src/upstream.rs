//! Pooled HTTP clients for the local services, one per service, speaking
//! the protocol each was configured with.

use std::collections::HashMap;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxy::forward::TunnelBody;
use proxy::Limits;

use crate::config::{Protocol, Service};

enum Sender {
    Plain(Client<HttpConnector, TunnelBody>),
    Tls(Client<HttpsConnector<HttpConnector>, TunnelBody>),
}

/// One local service and its connection pool.
pub struct Upstream {
    /// Scheme and authority requests go to.
    pub base: Uri,
    sender: Sender,
}

impl Upstream {
    /// Sends a request and waits for the response head.
    pub async fn send(
        &self,
        req: Request<TunnelBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match &self.sender {
            Sender::Plain(c) => c.request(req).await,
            Sender::Tls(c) => c.request(req).await,
        }
    }
}

fn http_connector(limits: &Limits) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(limits.connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http
}

/// Builds a pooled client per service.
pub fn build(
    services: &std::collections::BTreeMap<String, Service>,
    limits: &Limits,
) -> Result<HashMap<String, Upstream>, proxy::tls::TlsError> {
    let mut out = HashMap::new();
    for (name, svc) in services {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .http2_initial_stream_window_size(limits.stream_window)
            .http2_initial_connection_window_size(limits.connection_window)
            .http2_max_header_list_size(limits.max_http_header_bytes)
            .http1_max_buf_size(limits.max_http_header_bytes.max(8192) as usize);
        let sender = match svc.protocol {
            Protocol::Http1 => Sender::Plain(builder.build(http_connector(limits))),
            Protocol::H2c => {
                builder.http2_only(true);
                Sender::Plain(builder.build(http_connector(limits)))
            }
            Protocol::Tls => {
                let roots = svc.ca.clone().ok_or_else(|| {
                    proxy::tls::TlsError::Config(format!("service '{name}' needs a CA bundle"))
                })?;
                let tls = rustls::ClientConfig::builder_with_provider(proxy::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| proxy::tls::TlsError::Config(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
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
