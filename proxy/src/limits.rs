//! Every bound Tether enforces, in one place, with the reason for each
//! default. Both binaries expose these as configuration keys.

use std::sync::Arc;
use std::time::Duration;

use crate::quota::QuotaLimits;
use crate::wire::WireLimits;

/// Bounds for one process. Defaults suit a tunnel carrying many concurrent
/// RPCs over a path of up to ~100 ms RTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Frame and header-block bounds of the wire protocol.
    pub wire: WireLimits,
    /// Concurrent streams the peer may open on one QUIC connection. 4096
    /// keeps a thousand in-flight calls well clear of the ceiling while
    /// capping per-connection state.
    pub max_streams: u32,
    /// QUIC receive window per stream: 2 MiB fills ~160 Mbit/s per stream at
    /// 100 ms RTT while bounding what one slow reader can pin.
    pub stream_window: u32,
    /// QUIC receive window per connection. At least 4× the stream window so
    /// one stalled stream cannot starve the rest (ztunnel's deadlock lesson).
    pub connection_window: u32,
    /// How long a peer may take between opening a stream and sending OPEN,
    /// and how long a TLS/QUIC handshake or registration may take.
    pub handshake_timeout: Duration,
    /// How long to wait for a service's response head once a request is sent.
    /// Streaming calls are not bounded by this after the head arrives.
    pub response_timeout: Duration,
    /// Connecting to a local service or upstream.
    pub connect_timeout: Duration,
    /// A QUIC connection with no traffic (keepalives included) for this long
    /// is dead. 15 s rides out a short outage of the path (a blackhole of a
    /// few seconds, a NAT rebinding) while a dead edge is found well before
    /// the 30 s a caller would wait.
    pub idle_timeout: Duration,
    /// Keepalive interval. 1 s bounds how long a client takes to learn its
    /// edge restarted: its next packet draws a stateless reset
    /// ([`crate::reset_key`]) and it redials at once. Each keepalive is one
    /// ~40-byte packet and its acknowledgement.
    pub keepalive: Duration,
    /// Largest HTTP request or response head accepted from callers and
    /// services (HTTP/1 buffer, HTTP/2 header list).
    pub max_http_header_bytes: u32,
    /// How long a shutdown waits for the calls in flight before it cuts
    /// them. 30 s is Kubernetes' default termination grace period too, so
    /// with both defaults SIGKILL can land as the wait ends: set the
    /// orchestrator's grace above this (docs/operations.md).
    pub shutdown_grace: Duration,
    /// Largest request body the edge holds so that a call refused by a
    /// draining connection (or one that could not open a stream) can be
    /// sent again on another: only what the caller has already delivered
    /// when the call is routed is held, never waited for. 64 KiB covers
    /// unary gRPC and small POSTs; 0 turns retries off.
    pub retry_buffer_bytes: u32,
    /// Receive and send buffer asked for the QUIC UDP socket. 4 MiB holds
    /// a burst of handshakes and a few round trips of bulk data; the
    /// kernel caps it at `net.core.rmem_max`/`wmem_max`.
    pub udp_buffer_bytes: u32,
    /// Fair shares at the edge's ingress: calls in flight per tunnel and
    /// per caller, and each caller's rate ([`crate::quota`]).
    pub quota: QuotaLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wire: WireLimits::default(),
            max_streams: 4096,
            stream_window: 2 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(1),
            max_http_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            udp_buffer_bytes: 4 * 1024 * 1024,
            retry_buffer_bytes: 64 * 1024,
            quota: QuotaLimits::default(),
        }
    }
}

/// How much larger than `max_http_header_bytes` a head the HTTP parsers
/// accept. Heads between the limit and this ceiling reach the admission
/// path, which refuses them with 431, a `tether-error` and an audit record;
/// only heads beyond it are cut off by the parser itself (HTTP/1.1: a bare
/// 431; HTTP/2: a bare 431 and REFUSED_STREAM). Four times bounds the
/// memory a hostile head can take while leaving room for honest mistakes.
pub const HEADER_PARSER_FACTOR: u32 = 4;

impl Limits {
    /// The head size given to the HTTP/1.1 and HTTP/2 parsers of the
    /// listeners (see [`HEADER_PARSER_FACTOR`]).
    pub fn http_parser_header_bytes(&self) -> u32 {
        self.max_http_header_bytes
            .saturating_mul(HEADER_PARSER_FACTOR)
            .max(8192)
    }

    /// Checks relations between limits that single values cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if u64::from(self.connection_window) < 4 * u64::from(self.stream_window) {
            return Err(format!(
                "connection_window ({}) must be at least 4 × stream_window ({})",
                self.connection_window, self.stream_window
            ));
        }
        if self.keepalive >= self.idle_timeout {
            return Err("keepalive must be shorter than idle_timeout".into());
        }
        if self.udp_buffer_bytes < 64 * 1024 {
            return Err("udp_buffer_bytes must be at least 65536".into());
        }
        self.quota.validate()?;
        if self.max_streams == 0 {
            return Err("max_streams must be at least 1".into());
        }
        if self.wire.max_data_frame == 0 || self.wire.max_header_bytes < 1024 {
            return Err("max_data_frame must be > 0 and max_header_bytes ≥ 1024".into());
        }
        Ok(())
    }

    /// The QUIC transport settings these limits imply.
    pub fn transport_config(&self) -> Arc<quinn::TransportConfig> {
        self.transport_config_for(self.max_streams)
    }

    /// [`Limits::transport_config`] letting the peer open `peer_streams`
    /// streams at once instead of `max_streams`. quinn sizes two tables per
    /// connection by this number up front (~84 bytes per stream allowed,
    /// ~340 KiB at 4096), so an edge holding thousands of tunnels allows
    /// each only the streams it needs (see `[tunnels] max_egress_streams`).
    pub fn transport_config_for(&self, peer_streams: u32) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(peer_streams.into());
        // Unidirectional streams are not part of the protocol.
        t.max_concurrent_uni_streams(0u32.into());
        t.stream_receive_window(self.stream_window.into());
        t.receive_window(self.connection_window.into());
        t.send_window(u64::from(self.connection_window));
        t.keep_alive_interval(Some(self.keepalive));
        if let Ok(idle) = quinn::IdleTimeout::try_from(self.idle_timeout) {
            t.max_idle_timeout(Some(idle));
        }
        Arc::new(t)
    }
}
