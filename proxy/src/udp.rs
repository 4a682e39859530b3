//! The UDP socket QUIC runs on, bound with explicit buffer sizes. The
//! kernel default receive buffer (~208 KiB) overflows when dozens of
//! handshakes arrive at once: each dropped datagram costs its handshake a
//! retransmission timeout of about a second (`bench tunnels` counted
//! hundreds). The kernel caps the request at `net.core.rmem_max` /
//! `wmem_max`; the effective size is logged.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking UDP socket on `addr` asking for `buffer_bytes` of
/// receive and send buffer, for `quinn::Endpoint::new`.
pub fn bind(addr: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A refused size is not fatal: the socket keeps the kernel default.
    if let Err(e) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::warn!(error = %e, buffer_bytes, "could not set the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::warn!(error = %e, buffer_bytes, "could not set the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let recv = socket.recv_buffer_size().unwrap_or(0);
    let send = socket.send_buffer_size().unwrap_or(0);
    tracing::debug!(%addr, requested = buffer_bytes, recv, send, "UDP socket bound");
    Ok(socket.into())
}

/// A QUIC endpoint on a socket from [`bind`]: a server when `server` is
/// given, else a client endpoint (whose stateless-reset key does not need
/// to outlive the process: see [`endpoint_with`]).
pub fn endpoint(
    addr: SocketAddr,
    buffer_bytes: usize,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    endpoint_with(addr, buffer_bytes, server, quinn::EndpointConfig::default())
}

/// [`endpoint`] with an explicit endpoint configuration: the edge passes
/// one whose stateless-reset key survives restarts
/// ([`crate::reset_key`]).
pub fn endpoint_with(
    addr: SocketAddr,
    buffer_bytes: usize,
    server: Option<quinn::ServerConfig>,
    config: quinn::EndpointConfig,
) -> io::Result<quinn::Endpoint> {
    let socket = bind(addr, buffer_bytes)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_a_larger_receive_buffer_than_the_default() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let small = bind(loopback, 64 * 1024).unwrap();
        let large = bind(loopback, 1024 * 1024).unwrap();
        let size = |s: UdpSocket| Socket::from(s).recv_buffer_size().unwrap();
        assert!(size(large) > size(small));
        let ep = endpoint(loopback, 1024 * 1024, None).unwrap();
        assert_ne!(ep.local_addr().unwrap().port(), 0);
    }
}
