//! Bounds on the tunnel listener: how many QUIC handshakes (and
//! registrations) may be in progress at once, and how many tunnel
//! connections the edge holds. A connection over either bound is refused
//! at its first packet (QUIC CONNECTION_REFUSED), before any TLS work, so
//! a flood of Initials or of tunnels cannot exhaust the edge; the client
//! backs off and redials (or reaches another edge).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The two counts and their bounds.
#[derive(Debug)]
pub struct Bounds {
    max_connections: usize,
    max_handshakes: usize,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    refused: AtomicU64,
}

/// One unit of a count, given back when dropped.
#[derive(Debug)]
pub struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// `[tunnels] max_connections` reached.
    Connections,
    /// `[tunnels] max_handshakes` reached.
    Handshakes,
}

impl Over {
    /// The outcome label of `tether_registrations_total`.
    pub fn outcome(self) -> &'static str {
        match self {
            Over::Connections => "refused_max_connections",
            Over::Handshakes => "refused_max_handshakes",
        }
    }

    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Over::Connections => "max_connections tunnel connections are open",
            Over::Handshakes => "max_handshakes handshakes are in progress",
        }
    }
}

fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Held> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Held(count.clone()))
}

impl Bounds {
    /// Bounds of `max_connections` connections and `max_handshakes`
    /// handshakes in progress.
    pub fn new(max_connections: usize, max_handshakes: usize) -> Self {
        Self {
            max_connections,
            max_handshakes,
            connections: Arc::default(),
            handshakes: Arc::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a connection and a handshake, or says which bound is full.
    /// Drop the handshake once registered, the connection when it ends.
    pub fn admit(&self) -> Result<(Held, Held), Over> {
        let refuse = |over| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            over
        };
        let conn = take(&self.connections, self.max_connections)
            .ok_or_else(|| refuse(Over::Connections))?;
        let handshake =
            take(&self.handshakes, self.max_handshakes).ok_or_else(|| refuse(Over::Handshakes))?;
        Ok((conn, handshake))
    }

    /// Connections held now (registered or handshaking).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Handshakes and registrations in progress now.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Acquire)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_holds_and_frees_on_drop() {
        let b = Bounds::new(2, 1);
        let first = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err(), Over::Handshakes);
        assert_eq!(
            b.connections(),
            1,
            "a refused handshake gives its connection back"
        );
        drop(first.1);
        let second = b.admit().unwrap();
        drop(second.1);
        assert_eq!(b.admit().unwrap_err(), Over::Connections);
        drop(first.0);
        assert!(b.admit().is_ok());
        assert_eq!(b.refused(), 2);
        drop(second.0);
    }
}
