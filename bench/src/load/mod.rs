//! What generates the load.
//!
//! - [`echo`]: the Echo callers of the small-call scenarios, and the
//!   `ceiling`'s bare QUIC echo.
//! - [`bulk`]: large transfers along a path, HTTP/2 bodies or raw QUIC
//!   streams.
//! - [`tunnels`]: many emulated tunnels registering at one edge, and the
//!   bare handshake ceiling beside them.

pub mod bulk;
pub mod echo;
pub mod tunnels;
