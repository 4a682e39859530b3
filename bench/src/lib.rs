//! `bench`: Tether's load-test harness, as a library so the smoke test can
//! run the same code the binary does.
//!
//! Everything runs in this process today, on the in-process
//! [`Topology`](tether_tests::topology::Topology) (edge, tunnel client and
//! example upstreams on loopback); separate processes per component are a
//! later step.
//!
//! - [`cli`]: the command line, and [`cli::run`] which dispatches to a
//!   scenario and prints its report.
//! - [`paths`]: the ways a call can reach the example upstream (`direct`,
//!   `tunnel`, `egress`) and the gRPC clients for each, and `ceiling`:
//!   raw QUIC streams to a bare echo with Tether's TLS and transport.
//! - [`scenario_unary`]: closed loop at a fixed concurrency.
//! - [`scenario_rate`]: open loop at a fixed rate, with latency measured
//!   from each call's intended start (coordinated-omission correction).
//! - [`scenario_audit`]: unary over the tunnel, once per audit durability
//!   mode.
//! - [`measurement`]: one measurement's raw figures (HDR histogram, counts,
//!   CPU, RSS) and the `/proc` readers behind them.
//! - [`report`]: turns measurements into the summary table and the JSON
//!   document.
//! - [`progress`]: the live progress line on stderr.

pub mod cli;
pub mod measurement;
pub mod paths;
pub mod progress;
pub mod report;
pub mod scenario_audit;
pub mod scenario_rate;
pub mod scenario_unary;
