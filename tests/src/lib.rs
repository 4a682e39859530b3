//! In-process topologies (CA, edge, clients, upstreams) for Tether's
//! end-to-end tests, the quick start and bench.
//!
//! - [`audit_trail`]: reading audit logs back and checking open/close pairs.
//! - [`files`]: a dev PKI and edge/client configuration files, for what
//!   starts Tether from files (the quick start, bench's process mode).
//! - [`netns`]: a network namespace joined by a veth pair, with nftables
//!   faults (blackhole, loss) on its UDP, for the fault tests.
//! - [`process`]: the binaries as processes (start, ready report, log,
//!   SIGTERM, SIGKILL), for the shutdown and recovery tests.
//! - [`small_fs`]: a tmpfs to fill, for the fail-closed tests.
//! - [`topology`]: starts everything on ephemeral loopback ports.
//! - [`upstream`]: the example service (gRPC Echo plus HTTP endpoints).
//! - [`callers`]: gRPC and HTTP clients that reach the edge over mTLS or
//!   the plaintext development listener.
//! - [`pb`]: the generated Echo protobuf types.

pub mod audit_trail;
pub mod callers;
pub mod files;
pub mod netns;
pub mod process;
pub mod small_fs;
pub mod topology;
pub mod upstream;

/// Generated protobuf and tonic code for `tether.echo.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("tether.echo.v1");
}
