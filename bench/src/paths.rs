//! The ways a gRPC call reaches the example upstream, and the clients for
//! each. All three end at an identical example upstream (`tether-tests`'s
//! Echo service), so the ratio of each path to `direct` is what the path
//! itself costs.

use std::fmt;

use anyhow::Context as _;
use serde::Serialize;
use tether_tests::callers::grpc_plaintext;
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::Topology;
use tonic::transport::Channel;

/// HTTP/2 connections per path, as a real client pool would use: enough
/// to spread the calls over more than one connection task, few enough that
/// connection setup is not what is measured.
pub const CONNECTIONS: usize = 4;

/// A way to reach the example upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Load generator → upstream: the baseline.
    Direct,
    /// Load generator → edge plaintext ingress → QUIC → tunnel client →
    /// data-plane upstream.
    Tunnel,
    /// Workload → tunnel client egress listener → QUIC → edge →
    /// control-plane upstream.
    Egress,
}

impl Path {
    /// Every path, baseline first.
    pub const ALL: [Path; 3] = [Path::Direct, Path::Tunnel, Path::Egress];

    /// The path's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Tunnel => "tunnel",
            Path::Egress => "egress",
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

/// Opens [`CONNECTIONS`] Echo clients (fewer when `concurrency` is lower)
/// along `path`, each warmed by one call so that connection setup and
/// first-use allocation fall outside the measurement.
pub async fn connect(
    topo: &Topology,
    path: Path,
    concurrency: usize,
) -> anyhow::Result<Vec<EchoClient<Channel>>> {
    let (addr, authority) = match path {
        // The upstream ignores the authority; keep the tunnel's for parity.
        Path::Direct => (topo.upstream.addr, topo.host("echo")),
        Path::Tunnel => (topo.plaintext_addr, topo.host("echo")),
        Path::Egress => (
            topo.egress_addr
                .context("the topology has no egress listener")?,
            "cp-echo".to_string(),
        ),
    };
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS.min(concurrency.max(1)) {
        let mut client = grpc_plaintext(addr, &authority)
            .await
            .with_context(|| format!("connecting the {path} path"))?;
        client
            .unary(EchoRequest::default())
            .await
            .with_context(|| format!("warm-up call on the {path} path"))?;
        clients.push(client);
    }
    Ok(clients)
}
