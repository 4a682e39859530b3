//! What is read while the load runs.
//!
//! - [`measurement`]: one measurement's raw figures (HDR histogram,
//!   counts, CPU, RSS).
//! - [`procfs`]: a process's CPU and memory from `/proc`; [`usage`]: each
//!   measured process's use over a measurement window, with what its
//!   [`probes`] (stage timing, heap counts) read from its `/metrics`.
//! - [`timeline`]: successful calls per 250 ms interval during each
//!   measurement (throughput over time).
//! - [`transfers`]: the `bulk` scenario's raw figures.
//! - [`udp_drops`]: the UDP sockets' dropped datagrams.
//! - [`progress`]: the live progress line on stderr; [`byte_progress`]:
//!   the `bulk` scenario's, in bytes.

pub mod byte_progress;
pub mod measurement;
pub mod probes;
pub mod procfs;
pub mod progress;
pub mod timeline;
pub mod transfers;
pub mod udp_drops;
pub mod usage;
