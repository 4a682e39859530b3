//! Live tunnels by name. A tunnel's name comes from its certificate; a name
//! may have several live connections (one per client replica or HA link).
//! Each call goes to the connection that is not draining and not silent
//! with the fewest calls in flight (the newest among equals); only when
//! every connection of the tunnel drains does a call go to a draining one,
//! whose client refuses it with the retryable `draining`.
//!
//! Silent: a connection whose client has sent nothing (not even the
//! acknowledgement of a keepalive) for `silence` ([`proxy::liveness`]) —
//! a crashed replica, or a path gone black, that QUIC will only declare
//! lost at the idle timeout. A tunnel's connections are sampled when a
//! call chooses among two or more, so a tunnel with one connection costs
//! nothing, and a silent replica stops getting new calls within `silence`
//! of the first call that finds it so.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use proxy::liveness::Liveness;
use proxy::SpiffeId;
use tokio::sync::Notify;

/// One registered connection of a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelConn {
    /// Unique per registration, so the right one is removed on close.
    pub id: u64,
    /// The QUIC connection calls are opened on.
    pub conn: quinn::Connection,
    /// The tunnel's verified identity.
    pub identity: SpiffeId,
    /// Services the client offered in HELLO.
    pub services: Arc<HashSet<String>>,
    /// Calls routed to this connection and not yet ended.
    in_flight: Arc<AtomicUsize>,
    /// Set when the client said (GOAWAY) it is draining.
    draining: Arc<AtomicBool>,
    /// When the client was last heard from.
    liveness: Arc<Liveness>,
    /// When it registered (status page).
    pub since: std::time::SystemTime,
}

impl TunnelConn {
    /// Calls routed to this connection that have not ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the client said it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// How long the client has been silent at least, as last sampled.
    pub fn silent_for(&self, now: Instant) -> Duration {
        self.liveness.silent_for(now)
    }

    /// Samples the connection's received datagrams, then says how long
    /// the client has been silent (status: a lone connection is not
    /// sampled by routing).
    pub fn sample_silence(&self, now: Instant) -> Duration {
        self.liveness.observe_connection(&self.conn);
        self.liveness.silent_for(now)
    }
}

/// A connection chosen for one call: counts as in flight on it until
/// dropped, which is what the next choice balances on.
#[derive(Debug)]
pub struct Routed {
    tunnel: TunnelConn,
}

impl Routed {
    fn new(tunnel: TunnelConn) -> Self {
        tunnel.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { tunnel }
    }
}

impl std::ops::Deref for Routed {
    type Target = TunnelConn;
    fn deref(&self) -> &TunnelConn {
        &self.tunnel
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.tunnel.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the registry knows about a name.
#[derive(Debug)]
pub enum Lookup {
    /// Connected; use this connection (held for the call's life).
    Live(Routed),
    /// Known (configured or seen before) but not connected now.
    Offline,
    /// Never heard of.
    Unknown,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Vec<TunnelConn>>,
    known: HashSet<String>,
}

/// The table of tunnels, shared by the QUIC listener and ingress.
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    changed: Notify,
    silence: Duration,
    /// Until then an unknown name is answered as offline, not unknown.
    warm_until: Instant,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(
            [],
            proxy::liveness::silence_bound(proxy::Limits::default().keepalive),
            Duration::ZERO,
        )
    }
}

impl Registry {
    /// A registry that already knows the configured tunnel names; a
    /// connection silent for `silence` gets no new call while another of
    /// its tunnel is heard from. For `warmup` from now every name counts
    /// as known: a restarted edge does not yet know the tunnels whose
    /// clients are reconnecting to it, and calls to them must get a
    /// retryable "offline", not a final "unknown".
    pub fn new(
        known: impl IntoIterator<Item = String>,
        silence: Duration,
        warmup: Duration,
    ) -> Self {
        let now = Instant::now();
        let reg = Self {
            inner: Mutex::default(),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            silence,
            warm_until: now.checked_add(warmup).unwrap_or(now),
        };
        if let Ok(mut inner) = reg.inner.lock() {
            inner.known.extend(known);
        }
        reg
    }

    /// Adds a live connection and returns its registration id, unless the
    /// tunnel already holds `max_per_tunnel` connections here: then the
    /// count it holds (checked and added under one lock, so concurrent
    /// registrations of one name cannot overshoot).
    pub fn register(
        &self,
        name: &str,
        conn: quinn::Connection,
        identity: SpiffeId,
        services: HashSet<String>,
        max_per_tunnel: usize,
    ) -> Result<u64, usize> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut inner) = self.inner.lock() {
            let held = inner.live.get(name).map_or(0, Vec::len);
            if held >= max_per_tunnel {
                return Err(held);
            }
            inner.known.insert(name.to_string());
            inner
                .live
                .entry(name.to_string())
                .or_default()
                .push(TunnelConn {
                    id,
                    conn,
                    identity,
                    services: Arc::new(services),
                    in_flight: Arc::default(),
                    draining: Arc::default(),
                    liveness: Arc::new(Liveness::new(Instant::now())),
                    since: std::time::SystemTime::now(),
                });
        }
        self.changed.notify_waiters();
        Ok(id)
    }

    /// Removes a registration when its connection ends.
    pub fn deregister(&self, name: &str, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(conns) = inner.live.get_mut(name) {
                conns.retain(|c| c.id != id);
                if conns.is_empty() {
                    inner.live.remove(name);
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Marks a registration as draining: no new call goes to it while
    /// another connection of the tunnel is not draining.
    pub fn mark_draining(&self, name: &str, id: u64) {
        if let Ok(inner) = self.inner.lock() {
            if let Some(c) = inner
                .live
                .get(name)
                .into_iter()
                .flatten()
                .find(|c| c.id == id)
            {
                c.draining.store(true, Ordering::Relaxed);
            }
        }
        self.changed.notify_waiters();
    }

    /// Whether `c`, one of `of` connections of its tunnel, has been
    /// silent for `silence`. Sampled only when there is a choice to make:
    /// a lone connection is never judged.
    fn silent(&self, c: &TunnelConn, of: usize, now: Instant) -> bool {
        if of < 2 {
            return false;
        }
        c.liveness.observe_connection(&c.conn);
        c.silent_for(now) > self.silence
    }

    /// Chooses the connection for one call to `name`: not draining before
    /// draining, heard from before silent, then the fewest calls in
    /// flight, then the newest.
    pub fn lookup(&self, name: &str) -> Lookup {
        let Ok(inner) = self.inner.lock() else {
            return Lookup::Unknown;
        };
        let now = Instant::now();
        let best = inner.live.get(name).and_then(|conns| {
            conns
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| {
                    (
                        c.is_draining(),
                        self.silent(c, conns.len(), now),
                        c.in_flight(),
                        std::cmp::Reverse(*i),
                    )
                })
                .map(|(_, c)| c.clone())
        });
        match best {
            Some(c) => Lookup::Live(Routed::new(c)),
            None if inner.known.contains(name) || now < self.warm_until => Lookup::Offline,
            None => Lookup::Unknown,
        }
    }

    /// Another connection of `name` for a retried call: not one of
    /// `tried`, not draining, offering `service`; heard from before
    /// silent, the fewest calls in flight, then the newest.
    pub fn lookup_other(&self, name: &str, tried: &[u64], service: &str) -> Option<Routed> {
        let inner = self.inner.lock().ok()?;
        let conns = inner.live.get(name)?;
        let now = Instant::now();
        conns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !tried.contains(&c.id) && !c.is_draining() && c.services.contains(service)
            })
            .min_by_key(|(i, c)| {
                (
                    self.silent(c, conns.len(), now),
                    c.in_flight(),
                    std::cmp::Reverse(*i),
                )
            })
            .map(|(_, c)| Routed::new(c.clone()))
    }

    /// The live connections of `name` (status and tests).
    pub fn connections(&self, name: &str) -> Vec<TunnelConn> {
        self.inner
            .lock()
            .map(|i| i.live.get(name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Names with at least one live connection.
    pub fn live_tunnels(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|i| i.live.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until `name` has a live connection (tests, quick start).
    pub async fn wait_live(&self, name: &str) {
        loop {
            let notified = self.changed.notified();
            if matches!(self.lookup(name), Lookup::Live(_)) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `name`'s live connections satisfy `ready` (tests).
    pub async fn wait_connections(&self, name: &str, ready: impl Fn(&[TunnelConn]) -> bool) {
        loop {
            let notified = self.changed.notified();
            if ready(&self.connections(name)) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `name` has no live connection.
    pub async fn wait_offline(&self, name: &str) {
        loop {
            let notified = self.changed.notified();
            if !matches!(self.lookup(name), Lookup::Live(_)) {
                return;
            }
            notified.await;
        }
    }
}
