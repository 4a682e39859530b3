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
//! - [`cli`]: the command line, and [`cli::run`] which dispatches to a
//!   scenario and prints its report; [`deploy_args`] are the flags that
//!   choose the deployment.
//! - [`paths`]: the ways a call can reach the example upstream (`direct`,
//!   `tunnel`, `egress`) and the gRPC clients for each, and `ceiling`:
//!   raw QUIC streams to a bare echo with Tether's TLS and transport.
//! - [`scenario_unary`]: closed loop at a fixed concurrency.
//! - [`scenario_rate`]: open loop at a fixed rate, with latency measured
//!   from each call's intended start (coordinated-omission correction).
//! - [`scenario_audit`]: unary over the tunnel, once per audit durability
//!   mode.
//! - [`scenario_fairness`]: one caller floods while another's latency is
//!   compared with its latency alone, with and without per-caller limits.
//! - [`scenario_recovery`]: SIGKILL and restart of the only edge, timed
//!   until the tunnel serves again.
//! - [`scenario_fleet`]: three edges and many real tunnel clients, each
//!   connected to every edge; one edge killed under load: calls failed,
//!   time back to full strength, memory per edge.
//! - [`scenario_bulk`]: large transfers each way, one stream or many:
//!   [`bulk_caller`]s move HTTP/2 bodies ([`bulk_http`]) or raw QUIC
//!   streams for the ceiling ([`bulk_quic`]), sized by [`byte_size`],
//!   with a [`bulk_progress`] line; figures in [`bulk_report`], written
//!   with `--report` by [`bulk_report_dir`].
//! - [`scenario_tunnels`]: many emulated tunnels registered at one edge
//!   ([`fleet`] of [`registration`]s with identities from
//!   [`tunnel_identities`]) beside a bare handshake [`handshake_ceiling`]:
//!   handshakes per second, memory and idle CPU per tunnel; its document is
//!   [`tunnels_report`], its table [`tunnels_table`]; [`nofile`] checks
//!   `ulimit -n` first, [`udp_drops`] reads the sockets' dropped datagrams.
//! - [`deployment`]: where the components run, behind one interface:
//!   [`processes`] (children started from [`child`]), in process, or a
//!   [`target`] edge; [`upstream`] is the `bench upstream` subcommand.
//! - [`measurement`]: one measurement's raw figures (HDR histogram, counts,
//!   CPU, RSS).
//! - [`procfs`]: a process's CPU and memory from `/proc`; [`usage`]: each
//!   measured process's use over a measurement window, with what its
//!   [`probes`] (stage timing, heap counts) read from its `/metrics`.
//! - [`report`]: turns measurements into the summary table and the JSON
//!   document; [`per_process`] is the table's per-process part.
//! - [`progress`]: the live progress line on stderr.
//! - [`timeline`]: successful calls per 250 ms interval during each
//!   measurement (throughput over time).
//! - [`report_dir`]: `--report DIR`, the report as files: [`markdown`]
//!   (`report.md`, with the machine from [`provenance`]), the JSON, and
//!   [`charts`] drawn by the hand-written [`svg`] line chart.

pub mod bulk_caller;
pub mod bulk_http;
pub mod bulk_progress;
pub mod bulk_quic;
pub mod bulk_report;
pub mod bulk_report_dir;
pub mod byte_size;
pub mod charts;
pub mod child;
pub mod cli;
pub mod deploy_args;
pub mod deployment;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod handshake_ceiling;
pub mod markdown;
pub mod measurement;
pub mod nofile;
pub mod paths;
pub mod per_process;
pub mod probes;
pub mod processes;
pub mod procfs;
pub mod progress;
pub mod provenance;
pub mod registration;
pub mod report;
pub mod report_dir;
pub mod scenario_audit;
pub mod scenario_bulk;
pub mod scenario_fairness;
pub mod scenario_fleet;
pub mod scenario_rate;
pub mod scenario_recovery;
pub mod scenario_tunnels;
pub mod scenario_unary;
pub mod svg;
pub mod target;
pub mod timeline;
pub mod tunnel_identities;
pub mod tunnels_report;
pub mod tunnels_table;
pub mod udp_drops;
pub mod upstream;
pub mod usage;
