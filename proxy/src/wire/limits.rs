//! Size limits the codec enforces on both directions.

use super::frame::PeerLimits;

/// Bounds on what a peer may make us buffer or allocate for one frame.
///
/// The decoder checks a frame's announced length against these as soon as
/// the frame header is readable, before any of the payload arrives; the
/// encoder refuses to write a frame the peer would reject under the same
/// limits. Both ends must therefore agree on them: WELCOME carries the edge's
/// `max_header_bytes` and `max_data_frame`; `max_headers` is not negotiated,
/// so both ends use the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest payload of any frame other than DATA (HELLO, WELCOME, GOAWAY,
    /// ERROR, OPEN, RESPONSE, REFUSE, TRAILERS).
    ///
    /// Default 64 KiB: at or above the header-block limits of common HTTP
    /// servers and proxies (nginx 4 × 8 KiB, Envoy 60 KiB), so any request a
    /// real server would accept fits, while a peer cannot make us buffer more
    /// than 64 KiB for one head.
    pub max_header_bytes: usize,
    /// Largest DATA payload.
    ///
    /// Default 1 MiB: large enough that per-frame overhead (2–5 header
    /// bytes) is negligible at bulk throughput and that one frame can carry a
    /// typical read from a socket or body chunk, small enough that a stream's
    /// fully buffered frame stays a modest, bounded allocation.
    pub max_data_frame: usize,
    /// Largest number of fields in one header map (OPEN, RESPONSE, TRAILERS).
    ///
    /// Default 256: well above what real requests carry (a few dozen) and
    /// above common server limits (Envoy and hyper default to 100), while
    /// bounding the per-field allocations an adversarial header block can
    /// cause, independently of its byte size.
    pub max_headers: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_data_frame: 1024 * 1024,
            max_headers: 256,
        }
    }
}

impl WireLimits {
    /// These limits with the byte limits replaced by those a peer announced
    /// in WELCOME (`max_headers` is kept: it is not negotiated). Use the
    /// result to encode frames towards that peer.
    pub fn with_peer_limits(self, peer: &PeerLimits) -> Self {
        Self {
            max_header_bytes: usize::try_from(peer.max_header_bytes).unwrap_or(usize::MAX),
            max_data_frame: usize::try_from(peer.max_data_frame).unwrap_or(usize::MAX),
            max_headers: self.max_headers,
        }
    }
}
