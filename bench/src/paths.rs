//! The ways a call reaches an echo, and where each one ends. `direct`,
//! `tunnel` and `egress` are gRPC calls ending at an identical example
//! upstream (`tether-tests`'s Echo service), so the ratio of each path to
//! `direct` is what the path itself costs. `ceiling` is no gRPC at all: a
//! raw QUIC stream echoed by a bare quinn endpoint with Tether's TLS and
//! transport settings, the most any design on this QUIC stack could carry
//! (its callers and echo are [`load::echo`](crate::load::echo)'s).
//!
//! A [`Deployment`](crate::deploy::deployment::Deployment) says where each
//! path ends: an [`Endpoint`] for the gRPC paths, [`CeilingKeys`] for the
//! ceiling.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use proxy::tls::TlsIdentity;
use serde::Serialize;
use tether_tests::callers::{grpc_plaintext, grpc_tls_named};
use tether_tests::pb::echo_client::EchoClient;
use tonic::transport::Channel;

/// A way to reach the example upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Load generator → upstream: the baseline.
    Direct,
    /// Load generator → edge plaintext ingress (the mTLS ingress against
    /// `--target`) → QUIC → tunnel client → data-plane upstream.
    Tunnel,
    /// Workload → tunnel client egress listener → QUIC → edge →
    /// control-plane upstream.
    Egress,
    /// Load generator → one QUIC connection (Tether's TLS, ALPN and
    /// transport settings) → a bare stream echo: one stream per call, no
    /// gRPC, no frames, no policy or audit. The physical limit of the
    /// design, measured on the same machine in the same run.
    Ceiling,
}

impl Path {
    /// Every path, baseline first.
    pub const ALL: [Path; 4] = [Path::Direct, Path::Tunnel, Path::Egress, Path::Ceiling];

    /// The path's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Tunnel => "tunnel",
            Path::Egress => "egress",
            Path::Ceiling => "ceiling",
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Puts `direct` first (it is the baseline of every ratio) and drops
/// repeats, keeping the caller's order otherwise.
pub fn normalise(paths: &[Path]) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::new();
    if paths.contains(&Path::Direct) {
        out.push(Path::Direct);
    }
    for p in paths {
        if !out.contains(p) {
            out.push(*p);
        }
    }
    out
}

/// Where one gRPC path sends its calls.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `:authority` calls carry (the routing host, or the upstream's
    /// name at the egress listener).
    pub authority: String,
    /// mTLS, and the name the server's certificate is verified for; `None`
    /// for plaintext h2c.
    pub tls: Option<(rustls::ClientConfig, String)>,
}

/// What the `ceiling` path's bare QUIC endpoints present and trust.
pub struct CeilingKeys {
    /// The CA every identity chains to.
    pub roots: Arc<rustls::RootCertStore>,
    /// The identity the echo server presents (the edge's).
    pub edge: TlsIdentity,
    /// The identity the client presents (a tunnel's).
    pub tunnel: TlsIdentity,
    /// The trust domain both must belong to.
    pub trust_domain: String,
}

/// A gRPC Echo client for `endpoint`: plaintext h2c, or mTLS when the
/// endpoint says so.
pub async fn grpc(endpoint: &Endpoint) -> anyhow::Result<EchoClient<Channel>> {
    match &endpoint.tls {
        None => grpc_plaintext(endpoint.addr, &endpoint.authority).await,
        Some((tls, server_name)) => {
            grpc_tls_named(endpoint.addr, &endpoint.authority, server_name, tls.clone()).await
        }
    }
}
