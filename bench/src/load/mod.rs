//! What generates the load.
//!
//! - [`bulk`]: large transfers along a path, HTTP/2 bodies or raw QUIC
//!   streams.
//! - [`tunnels`]: many emulated tunnels registering at one edge, and the
//!   bare handshake ceiling beside them.

pub mod bulk;
pub mod tunnels;
