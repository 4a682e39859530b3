//! `bench upstream`: the example Echo service (gRPC and HTTP, from
//! tether-tests) as a process of its own. The process deployment runs
//! bench again with this subcommand, so the upstream's CPU and memory are
//! measured apart from the load generator's; it is also a convenient
//! upstream behind a real tunnel client when measuring a real edge.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use proxy::ready::ReadyTarget;

use crate::deploy::processes::UpstreamReady;

/// Serves the example upstream on `listen` until SIGINT or SIGTERM,
/// reporting the bound address to `ready_file` (`-`: one JSON line on
/// stdout) once it listens.
pub async fn serve(listen: SocketAddr, ready_file: Option<&Path>) -> anyhow::Result<()> {
    let upstream = tether_tests::upstream::start(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(path) = ready_file {
        ReadyTarget::parse(path)
            .write(&UpstreamReady {
                listen: upstream.addr,
            })
            .with_context(|| format!("cannot write --ready-file {}", path.display()))?;
    } else {
        eprintln!(
            "example upstream (gRPC Echo, HTTP) listening on {}",
            upstream.addr
        );
    }
    proxy::telemetry::shutdown_signal().await;
    drop(upstream);
    Ok(())
}
