//! The client's connections to its edges: up to `max_edges` distinct edges
//! (distinct by the identity in the edge's certificate, not by address:
//! one address behind a load balancer can be many edges, and one edge can
//! have many addresses), `connections_per_edge` each. Each connection is
//! kept up by one dial slot (`crate::dial`); the pool is where slots
//! claim an edge before registering, where egress calls pick a connection,
//! and what the admin listener shows.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proxy::liveness::Liveness;
use proxy::SpiffeId;
use serde::Serialize;
use tokio::sync::watch;

use crate::dial::TunnelState;
use crate::resolver::Candidate;

/// One registered connection to an edge.
#[derive(Debug)]
pub struct EdgeConn {
    /// The dial slot that keeps it up.
    pub slot: usize,
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// The edge's name from WELCOME.
    pub edge_id: String,
    /// The identity in the edge's certificate: what makes edges distinct.
    pub identity: SpiffeId,
    /// The address dialed.
    pub address: SocketAddr,
    /// When it registered.
    pub since: SystemTime,
    /// When the edge sent GOAWAY: new egress calls go elsewhere.
    draining: AtomicBool,
    /// Streams in flight on it, both ways.
    in_flight: AtomicUsize,
    /// Whether the edge is still answering.
    pub liveness: Liveness,
}

impl EdgeConn {
    /// Whether the edge said it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Streams in flight on this connection.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A stream counted as in flight on a connection until dropped: held for
/// the call's whole life, so the pool balances by what is really running.
#[derive(Debug)]
pub struct InFlight(Arc<EdgeConn>);

impl InFlight {
    /// Counts one more stream on `conn`.
    pub fn new(conn: Arc<EdgeConn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl std::ops::Deref for InFlight {
    type Target = EdgeConn;
    fn deref(&self) -> &EdgeConn {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one dial slot is doing, for the admin listener.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlotStatus {
    /// The slot's number.
    pub slot: usize,
    /// The address being dialed, if it is dialing.
    pub dialing: Option<SocketAddr>,
    /// Why its last attempt or connection ended, if one did.
    pub last_error: Option<String>,
    /// The wait chosen before its next attempt after that, in
    /// milliseconds (backoff, or the edge's retry-after); `None` while it
    /// is connected or has not failed.
    pub next_attempt_after_ms: Option<u64>,
}

/// One connection as the admin listener shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnStatus {
    /// The dial slot keeping it up.
    pub slot: usize,
    /// The edge's name.
    pub edge_id: String,
    /// The edge's certificate identity.
    pub edge_identity: String,
    /// The address dialed.
    pub address: SocketAddr,
    /// QUIC's smoothed round-trip time, in milliseconds.
    pub rtt_ms: f64,
    /// Streams in flight.
    pub streams: usize,
    /// When it registered, in Unix milliseconds.
    pub since_unix_ms: u64,
    /// Whether the edge sent GOAWAY.
    pub draining: bool,
    /// How long since the edge was last heard from, in milliseconds.
    pub silent_ms: u64,
}

/// Everything the admin listener's `/connections` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    /// The tunnel's name.
    pub tunnel: String,
    /// How many distinct edges the client keeps connections to, at most.
    pub max_edges: usize,
    /// Connections per edge.
    pub connections_per_edge: usize,
    /// The registered connections.
    pub connections: Vec<ConnStatus>,
    /// Every dial slot.
    pub slots: Vec<SlotStatus>,
}

/// Why a slot may not register with the edge it reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Full {
    /// This edge already has `connections_per_edge` connections.
    Edge,
    /// Connections to `max_edges` other edges are up.
    Edges,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Edge => f.write_str("already connected to this edge as often as configured"),
            Full::Edges => f.write_str("already connected to max_edges other edges"),
        }
    }
}

#[derive(Default)]
struct Inner {
    conns: Vec<Arc<EdgeConn>>,
    /// Slots between the claim and the registration, with the edge claimed.
    reserved: Vec<(usize, SpiffeId)>,
    slots: Vec<SlotStatus>,
    /// Which edge answered at each address last (bounded by the addresses
    /// the resolver gave, which the slots dial).
    seen: HashMap<SocketAddr, SpiffeId>,
}

impl Inner {
    /// Why `identity` cannot take one more connection, if it cannot.
    /// Draining connections do not count: their edge is going away, and
    /// its replacement (maybe the same edge, restarted) must get in.
    fn full(&self, identity: &SpiffeId, max_edges: usize, per_edge: usize) -> Option<Full> {
        let live = self
            .conns
            .iter()
            .filter(|c| !c.is_draining())
            .map(|c| &c.identity)
            .chain(self.reserved.iter().map(|(_, id)| id));
        let mut edges = HashSet::new();
        let mut this = 0;
        for id in live {
            if id == identity {
                this += 1;
            }
            edges.insert(id);
        }
        if this >= per_edge {
            Some(Full::Edge)
        } else if this == 0 && edges.len() >= max_edges {
            Some(Full::Edges)
        } else {
            None
        }
    }
}

/// The connections and the slots that keep them up.
pub struct Pool {
    tunnel: String,
    max_edges: usize,
    per_edge: usize,
    silence: Duration,
    inner: Mutex<Inner>,
    state: watch::Sender<TunnelState>,
}

/// A claim on one connection to an edge, between the handshake and the
/// registration. Dropping it gives the claim back.
pub struct Reservation<'a> {
    pool: &'a Pool,
    slot: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.pool.lock().reserved.retain(|(s, _)| *s != self.slot);
    }
}

impl Pool {
    /// A pool of `max_edges × per_edge` slots. New calls avoid a
    /// connection whose edge has been silent for `silence`.
    pub fn new(
        tunnel: String,
        max_edges: usize,
        per_edge: usize,
        silence: Duration,
        state: watch::Sender<TunnelState>,
    ) -> Self {
        let slots = (0..max_edges * per_edge)
            .map(|slot| SlotStatus {
                slot,
                ..SlotStatus::default()
            })
            .collect();
        Self {
            tunnel,
            max_edges,
            per_edge,
            silence,
            inner: Mutex::new(Inner {
                slots,
                ..Inner::default()
            }),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many slots keep connections up.
    pub fn slots(&self) -> usize {
        self.max_edges * self.per_edge
    }

    /// The candidate slot `slot` should dial next: one no other
    /// connection or dial uses, whose edge (as last seen there) can take a
    /// connection; `turn` rotates through them so retries try the others.
    /// With none such (one address in front of many edges, or every edge
    /// busy) any candidate, rotating: the edge that answers decides.
    pub fn choose<'c>(
        &self,
        slot: usize,
        turn: usize,
        candidates: &'c [Candidate],
    ) -> Option<&'c Candidate> {
        if candidates.is_empty() {
            return None;
        }
        let inner = self.lock();
        let busy: HashSet<SocketAddr> = inner
            .conns
            .iter()
            .filter(|c| !c.is_draining())
            .map(|c| c.address)
            .chain(
                inner
                    .slots
                    .iter()
                    .filter(|s| s.slot != slot)
                    .filter_map(|s| s.dialing),
            )
            .collect();
        let n = candidates.len();
        let start = slot.wrapping_add(turn) % n;
        let rotation = (0..n).map(|i| &candidates[(start + i) % n]);
        let open = |c: &&Candidate| {
            !busy.contains(&c.addr)
                && inner
                    .seen
                    .get(&c.addr)
                    .is_none_or(|id| inner.full(id, self.max_edges, self.per_edge).is_none())
        };
        rotation
            .clone()
            .find(open)
            .or_else(|| rotation.into_iter().next())
    }

    /// Notes what slot `slot` is dialing (`None`: not dialing).
    pub fn dialing(&self, slot: usize, addr: Option<SocketAddr>) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.dialing = addr;
        }
    }

    /// Notes how long slot `slot` waits before its next attempt.
    pub fn waiting(&self, slot: usize, delay: Option<std::time::Duration>) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.next_attempt_after_ms =
                delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
    }

    /// Notes why slot `slot`'s last attempt or connection ended.
    pub fn failed(&self, slot: usize, why: String) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.last_error = Some(why);
        }
    }

    /// Claims a connection to the edge `identity` reached at `addr`, or
    /// says why not (the slot closes the connection before registering).
    pub fn claim(
        &self,
        slot: usize,
        identity: &SpiffeId,
        addr: SocketAddr,
    ) -> Result<Reservation<'_>, Full> {
        let mut inner = self.lock();
        inner.seen.insert(addr, identity.clone());
        if let Some(full) = inner.full(identity, self.max_edges, self.per_edge) {
            return Err(full);
        }
        inner.reserved.push((slot, identity.clone()));
        Ok(Reservation { pool: self, slot })
    }

    /// Adds a registered connection, turning its claim into it.
    pub fn add(
        &self,
        claim: Reservation<'_>,
        conn: quinn::Connection,
        edge_id: String,
        identity: SpiffeId,
        address: SocketAddr,
    ) -> Arc<EdgeConn> {
        let entry = Arc::new(EdgeConn {
            slot: claim.slot,
            conn,
            edge_id,
            identity,
            address,
            since: SystemTime::now(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            liveness: Liveness::new(Instant::now()),
        });
        {
            let mut inner = self.lock();
            inner.conns.push(entry.clone());
            if let Some(s) = inner.slots.get_mut(claim.slot) {
                s.dialing = None;
                s.last_error = None;
            }
        }
        drop(claim);
        self.publish();
        entry
    }

    /// Marks a connection's edge as draining: new calls go elsewhere.
    pub fn mark_draining(&self, entry: &EdgeConn) {
        entry.draining.store(true, Ordering::Relaxed);
        self.publish();
    }

    /// Drops a connection that closed.
    pub fn remove(&self, entry: &EdgeConn) {
        let id = entry.conn.stable_id();
        self.lock().conns.retain(|c| c.conn.stable_id() != id);
        self.publish();
    }

    /// The connection a new egress call should use: not draining and
    /// heard from lately, with the fewest streams in flight, the newest
    /// among equals. A silent or draining one only when there is no other
    /// (the call may still get through, or gets a clear refusal).
    pub fn pick(&self) -> Option<InFlight> {
        let now = Instant::now();
        let inner = self.lock();
        let rank = |c: &EdgeConn| {
            (
                c.is_draining(),
                c.liveness.silent_for(now) > self.silence,
                c.in_flight(),
            )
        };
        let mut best: Option<&Arc<EdgeConn>> = None;
        for c in &inner.conns {
            if best.is_none_or(|b| rank(c) <= rank(b)) {
                best = Some(c);
            }
        }
        best.map(|c| InFlight::new(c.clone()))
    }

    /// How long an edge may be silent before its connection is avoided.
    pub fn silence(&self) -> Duration {
        self.silence
    }

    /// Every registered connection (tests and status).
    pub fn connections(&self) -> Vec<Arc<EdgeConn>> {
        self.lock().conns.clone()
    }

    /// What the admin listener shows.
    pub fn status(&self) -> PoolStatus {
        let now = Instant::now();
        let inner = self.lock();
        let connections = inner
            .conns
            .iter()
            .map(|c| ConnStatus {
                slot: c.slot,
                edge_id: c.edge_id.clone(),
                edge_identity: c.identity.to_string(),
                address: c.address,
                rtt_ms: c.conn.rtt().as_secs_f64() * 1000.0,
                streams: c.in_flight(),
                since_unix_ms: c
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0),
                draining: c.is_draining(),
                silent_ms: u64::try_from(c.liveness.silent_for(now).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect();
        PoolStatus {
            tunnel: self.tunnel.clone(),
            max_edges: self.max_edges,
            connections_per_edge: self.per_edge,
            connections,
            slots: inner.slots.clone(),
        }
    }

    /// The tunnel is connected while one connection is not draining: a
    /// client whose every edge is going away is not ready.
    fn publish(&self) {
        let state = {
            let inner = self.lock();
            inner
                .conns
                .iter()
                .rev()
                .find(|c| !c.is_draining())
                .map(|c| TunnelState::Connected {
                    edge_id: c.edge_id.clone(),
                })
                .unwrap_or(TunnelState::Connecting)
        };
        self.state.send_if_modified(|s| {
            if *s == TunnelState::Stopped || *s == state {
                false
            } else {
                *s = state;
                true
            }
        });
    }

    /// Every slot has stopped.
    pub fn stopped(&self) {
        let _ = self.state.send(TunnelState::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_edges: usize, per_edge: usize) -> Pool {
        let (tx, _rx) = watch::channel(TunnelState::Connecting);
        Pool::new(
            "demo".into(),
            max_edges,
            per_edge,
            Duration::from_secs(3),
            tx,
        )
    }

    fn edge(name: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://tether.local/edge/{name}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn candidate(port: u16) -> Candidate {
        Candidate {
            addr: addr(port),
            server_name: "localhost".into(),
        }
    }

    #[test]
    fn an_edge_takes_connections_per_edge_and_edges_are_capped_at_max_edges() {
        let p = pool(2, 2);
        let a1 = p.claim(0, &edge("a"), addr(1)).ok();
        let a2 = p.claim(1, &edge("a"), addr(1)).ok();
        assert!(a1.is_some() && a2.is_some());
        assert_eq!(p.claim(2, &edge("a"), addr(1)).err(), Some(Full::Edge));
        let b = p.claim(2, &edge("b"), addr(2)).ok();
        assert!(b.is_some());
        assert_eq!(p.claim(3, &edge("c"), addr(3)).err(), Some(Full::Edges));
        // A claim given back (the registration failed) frees its place.
        drop(a2);
        assert!(p.claim(3, &edge("a"), addr(1)).is_ok());
    }

    #[test]
    fn a_slot_avoids_addresses_in_use_and_edges_that_are_full() {
        let p = pool(2, 1);
        let all = [candidate(1), candidate(2)];
        // Slot 1 dials the first address: slot 0 gets the other.
        p.dialing(1, Some(addr(1)));
        assert_eq!(p.choose(0, 0, &all).map(|c| c.addr), Some(addr(2)));
        p.dialing(1, None);
        // Address 1 led to edge a, which slot 1 holds a claim on: slot 0
        // tries address 2 whatever its turn.
        let _held = p.claim(1, &edge("a"), addr(1)).ok();
        for turn in 0..4 {
            assert_eq!(p.choose(0, turn, &all).map(|c| c.addr), Some(addr(2)));
        }
        // With nothing better, any candidate: the edge that answers decides.
        let one = [candidate(1)];
        assert_eq!(p.choose(0, 0, &one).map(|c| c.addr), Some(addr(1)));
        assert!(p.choose(0, 0, &[]).is_none());
    }

    #[test]
    fn the_status_lists_every_slot() {
        let p = pool(2, 2);
        p.failed(3, "connecting to edge: timed out".into());
        let s = p.status();
        assert_eq!(s.slots.len(), 4);
        assert_eq!(
            s.slots[3].last_error.as_deref(),
            Some("connecting to edge: timed out")
        );
        assert!(s.connections.is_empty());
    }
}
