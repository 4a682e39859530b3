//! Whether a QUIC connection's peer is still answering, judged from the
//! datagrams it sends. With keepalives every `keepalive` interval a live
//! peer sends something (an acknowledgement at least) that often; a peer
//! that crashed, or a path that went black, goes silent at once, while
//! QUIC itself declares the connection lost only after the idle timeout.
//! Routing new calls away from a silent connection is what lets calls that
//! start after a crash succeed at once on another connection.
//!
//! Sans-IO: the caller samples the count of datagrams received (quinn's
//! `ConnectionStats::udp_rx.datagrams`) and the time, and asks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The last time the received-datagram count was seen to move.
#[derive(Debug)]
pub struct Liveness {
    seen: Mutex<(u64, Instant)>,
}

impl Liveness {
    /// Starts as heard from now (the handshake just completed).
    pub fn new(now: Instant) -> Self {
        Self {
            seen: Mutex::new((0, now)),
        }
    }

    /// Records a sample of the received-datagram count taken at `now`.
    pub fn observe(&self, received: u64, now: Instant) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if received != seen.0 {
            *seen = (received, now);
        }
    }

    /// How long the peer has been silent at least, as of `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        now.saturating_duration_since(seen.1)
    }

    /// Samples `conn` now.
    pub fn observe_connection(&self, conn: &quinn::Connection) {
        self.observe(conn.stats().udp_rx.datagrams, Instant::now());
    }
}

/// How long a peer may be silent before new calls avoid its connection:
/// three keepalive intervals (one lost keepalive and its retransmission
/// are normal), but never less than 1 s.
pub fn silence_bound(keepalive: Duration) -> Duration {
    keepalive.saturating_mul(3).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_change_of_the_count() {
        let t0 = Instant::now();
        let l = Liveness::new(t0);
        assert_eq!(l.silent_for(t0), Duration::ZERO);
        l.observe(5, t0 + Duration::from_secs(1));
        // The same count again is no news.
        l.observe(5, t0 + Duration::from_secs(3));
        assert_eq!(
            l.silent_for(t0 + Duration::from_secs(4)),
            Duration::from_secs(3)
        );
        l.observe(6, t0 + Duration::from_secs(4));
        assert_eq!(l.silent_for(t0 + Duration::from_secs(4)), Duration::ZERO);
    }

    #[test]
    fn the_bound_is_three_keepalives_and_at_least_a_second() {
        assert_eq!(
            silence_bound(Duration::from_secs(1)),
            Duration::from_secs(3)
        );
        assert_eq!(
            silence_bound(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }
}
