//! The ceiling of `bench tunnels`: a bare quinn server endpoint in the
//! bench process with Tether's TLS (`proxy::tls::server_config`: the
//! deployment's edge identity, admitting only `tunnel` identities of the
//! trust domain, TLS 1.3, ALPN `tether/1`) and `Limits::default()`'s
//! transport, which completes handshakes and holds the connections and
//! does nothing else: no HELLO, no registry, no policy. The same tunnels
//! dialing it, with the same handshakes in flight, give the most
//! connections per second any design on this QUIC and TLS stack could
//! accept; the edge's registrations per second are divided by it.
//!
//! Like the edge, it completes each handshake in a task of its own, never
//! in the accept loop, and that task holds the connection until it closes.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use proxy::identity::IdentityRule;
use proxy::tls::server_config;
use proxy::wire::ALPN;
use proxy::Limits;
use tokio::task::JoinHandle;
use tunnel_server::config::DEFAULT_MAX_EGRESS_STREAMS;

use crate::paths::CeilingKeys;

/// The running endpoint; dropping it closes every connection and stops
/// accepting.
pub struct HandshakeServer {
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
    /// Where it listens (loopback, any free port).
    pub addr: SocketAddr,
}

impl HandshakeServer {
    /// Binds the endpoint on loopback and starts accepting.
    pub fn start(keys: &CeilingKeys) -> anyhow::Result<Self> {
        let rule = IdentityRule {
            trust_domain: keys.trust_domain.clone(),
            kind: Some("tunnel"),
        };
        let tls = server_config(&keys.edge, keys.roots.clone(), rule, &[ALPN])?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
        ));
        // The edge's transport and socket: the streams a tunnel may open
        // (`[tunnels] max_egress_streams`, which sizes quinn's
        // per-connection state) and the UDP buffers.
        let limits = Limits::default();
        cfg.transport_config(limits.transport_config_for(DEFAULT_MAX_EGRESS_STREAMS));
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let endpoint = proxy::udp::endpoint(loopback, limits.udp_buffer_bytes as usize, Some(cfg))
            .context("binding the handshake ceiling")?;
        let addr = endpoint.local_addr()?;
        // Aborted on drop; each connection task ends with its connection,
        // and closing the endpoint closes them all.
        let accept = tokio::spawn(accept_loop(endpoint.clone()));
        Ok(Self {
            endpoint,
            accept,
            addr,
        })
    }
}

impl Drop for HandshakeServer {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"done");
        self.accept.abort();
    }
}

async fn accept_loop(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                conn.closed().await;
            }
        });
    }
}
