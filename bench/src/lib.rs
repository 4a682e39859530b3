//! `bench`: Tether's load-test harness, as a library so the smoke test can
//! run the same code the binary does.
//!
//! By default the edge, the tunnel client and the example upstream run as
//! separate processes on loopback (the release binaries, and bench itself
//! as `bench upstream`), so each one's CPU and memory are read from
//! `/proc` on its own; `--in-process` runs everything in this process on
//! the test [`Topology`](tether_tests::topology::Topology), and `--target`
//! measures an existing edge over mTLS.
//!
//! The modules, by job:
//!
//! - [`cli`]: the command line, and [`cli::run`] which dispatches to a
//!   scenario and prints its report.
//! - [`scenarios`]: one module per subcommand (`unary`, `rate`, `audit`,
//!   `fairness`, `recovery`, `fleet`, `bulk`, `tunnels`), each running its
//!   load against a deployment and returning its report.
//! - [`paths`]: the ways a call can reach the example upstream (`direct`,
//!   `tunnel`, `egress`, `ceiling`).
//! - [`load`]: what generates the load: the Echo callers and the
//!   `ceiling`'s bare QUIC echo, the [`load::bulk`] transfers and the
//!   emulated tunnels of [`load::tunnels`].
//! - [`deploy`]: where the components run, behind one interface:
//!   child processes, in process, or a `--target` edge.
//! - [`measure`]: what is read during a measurement: latency histograms
//!   and counts, each process's CPU and memory from `/proc` and its probes
//!   from `/metrics`, the throughput timeline, the progress lines.
//! - [`report`]: measurements turned into figures, and the figures into
//!   the terminal table, the JSON document and `--report DIR`.
//! - [`byte_size`]: sizes such as `1GiB` on the command line.

pub mod byte_size;
pub mod cli;
pub mod deploy;
pub mod load;
pub mod measure;
pub mod paths;
pub mod report;
pub mod scenarios;
