//! The scenarios, one per subcommand: each runs its load against a
//! deployment and returns its report.
//!
//! - [`unary`]: closed loop at a fixed concurrency.
//! - [`rate`]: open loop at a fixed rate, with latency measured from each
//!   call's intended start (coordinated-omission correction).
//! - [`audit`]: unary over the tunnel, once per audit durability mode.
//! - [`fairness`]: one caller floods while another's latency is compared
//!   with its latency alone, with and without per-caller limits.
//! - [`recovery`]: SIGKILL and restart of the only edge, timed until the
//!   tunnel serves again.
//! - [`fleet`]: three edges and many real tunnel clients, each connected
//!   to every edge; one edge killed under load: calls failed, time back to
//!   full strength, memory per edge.
//! - [`bulk`]: large transfers each way, one stream or many.
//! - [`tunnels`]: many emulated tunnels registered at one edge beside a
//!   bare handshake ceiling: handshakes per second, memory and idle CPU
//!   per tunnel.

pub mod audit;
pub mod bulk;
pub mod fairness;
pub mod fleet;
pub mod rate;
pub mod recovery;
pub mod tunnels;
pub mod unary;
