//! Live tunnels by name. A tunnel's name comes from its certificate; a name
//! may have several live connections (one per client replica or HA link),
//! and calls go to the newest.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
}

/// What the registry knows about a name.
#[derive(Debug)]
pub enum Lookup {
    /// Connected; use this connection.
    Live(TunnelConn),
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
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    changed: Notify,
}

impl Registry {
    /// A registry that already knows the configured tunnel names.
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        let reg = Self::default();
        if let Ok(mut inner) = reg.inner.lock() {
            inner.known.extend(known);
        }
        reg
    }

    /// Adds a live connection and returns its registration id.
    pub fn register(
        &self,
        name: &str,
        conn: quinn::Connection,
        identity: SpiffeId,
        services: HashSet<String>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut inner) = self.inner.lock() {
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
                });
        }
        self.changed.notify_waiters();
        id
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

    /// Finds the connection to use for `name`.
    pub fn lookup(&self, name: &str) -> Lookup {
        let Ok(inner) = self.inner.lock() else {
            return Lookup::Unknown;
        };
        match inner.live.get(name).and_then(|c| c.last()) {
            Some(c) => Lookup::Live(c.clone()),
            None if inner.known.contains(name) => Lookup::Offline,
            None => Lookup::Unknown,
        }
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
