//! Revocation of live connections.
//!
//! Policies carry a `[revoked]` list of identities and certificate serials
//! ([`crate::policy::Revoked`]). New streams of a revoked identity are
//! denied by policy evaluation; this module handles what is already
//! connected. Every authenticated connection (a tunnel at the edge, a
//! caller at the ingress, an edge at the client) is admitted through
//! [`LiveSessions::admit`], which refuses a revoked peer at once, and holds
//! a [`Session`] whose token fires when a later policy revokes it:
//! [`enforce`] sweeps every live session the moment a reload swaps a
//! policy in, so a revoked connection closes within milliseconds of the
//! reload, with an audit record (`event: revoke`) for each.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::audit::{AuditDecision, AuditEvent, AuditLog, Event};
use crate::policy::{PolicyHandle, REVOKED_RULE};

/// What kind of connection a session is, for logs and audit records.
pub type ConnectionKind = &'static str;

struct Entry {
    identity: String,
    serial: Option<Vec<u8>>,
    kind: ConnectionKind,
    tunnel: String,
    revoked: CancellationToken,
}

/// The authenticated connections of a process, by who they authenticate.
pub struct LiveSessions {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    policies: Vec<Arc<PolicyHandle>>,
    audit: AuditLog,
    closed: AtomicU64,
}

/// Who a connection authenticates, as admitted.
#[derive(Debug, Clone)]
pub struct Peer<'a> {
    /// The verified SPIFFE ID.
    pub identity: &'a str,
    /// The leaf's serial, when a certificate was presented (not on the
    /// plaintext development listener).
    pub serial: Option<&'a [u8]>,
    /// `tunnel`, `caller`, `edge`…
    pub kind: ConnectionKind,
    /// The tunnel the connection belongs to, if any (audit records).
    pub tunnel: &'a str,
}

/// A live connection's registration. Its token fires when the connection
/// is revoked; dropping it removes the registration.
pub struct Session {
    id: u64,
    sessions: Arc<LiveSessions>,
    revoked: CancellationToken,
}

impl Session {
    /// Resolves when a reloaded policy revokes this connection.
    pub async fn revoked(&self) {
        self.revoked.cancelled().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut e) = self.sessions.entries.lock() {
            e.remove(&self.id);
        }
    }
}

impl LiveSessions {
    /// Sessions judged by the `[revoked]` lists of `policies`, audited to
    /// `audit`.
    pub fn new(policies: Vec<Arc<PolicyHandle>>, audit: AuditLog) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            policies,
            audit,
            closed: AtomicU64::new(0),
        })
    }

    fn reason(&self, identity: &str, serial: Option<&[u8]>) -> Option<String> {
        self.policies
            .iter()
            .find_map(|p| p.current().revoked.reason(identity, serial))
    }

    /// Registers a newly authenticated connection, or refuses it (audited)
    /// with the reason when its peer is already revoked.
    pub fn admit(self: &Arc<Self>, peer: &Peer<'_>) -> Result<Session, String> {
        if let Some(reason) = self.reason(peer.identity, peer.serial) {
            self.record(peer.identity, peer.kind, peer.tunnel, &reason, "refused");
            return Err(reason);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let revoked = CancellationToken::new();
        if let Ok(mut e) = self.entries.lock() {
            e.insert(
                id,
                Entry {
                    identity: peer.identity.to_string(),
                    serial: peer.serial.map(<[u8]>::to_vec),
                    kind: peer.kind,
                    tunnel: peer.tunnel.to_string(),
                    revoked: revoked.clone(),
                },
            );
        }
        Ok(Session {
            id,
            sessions: self.clone(),
            revoked,
        })
    }

    /// Fires the token of every live session the current policies revoke;
    /// returns how many.
    pub fn sweep(&self) -> usize {
        let mut hits = Vec::new();
        if let Ok(entries) = self.entries.lock() {
            for e in entries.values() {
                if e.revoked.is_cancelled() {
                    continue;
                }
                if let Some(reason) = self.reason(&e.identity, e.serial.as_deref()) {
                    e.revoked.cancel();
                    hits.push((e.identity.clone(), e.kind, e.tunnel.clone(), reason));
                }
            }
        }
        for (identity, kind, tunnel, reason) in &hits {
            warn!(%identity, connection = kind, %reason, "closing a revoked connection");
            self.record(identity, kind, tunnel, reason, "closed");
        }
        self.closed.fetch_add(hits.len() as u64, Ordering::Relaxed);
        hits.len()
    }

    /// Connections closed by revocation so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// No connection registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, identity: &str, kind: ConnectionKind, tunnel: &str, reason: &str, what: &str) {
        let mut labels = BTreeMap::new();
        labels.insert("connection".to_string(), kind.to_string());
        labels.insert("action".to_string(), what.to_string());
        self.audit.append_detached(&AuditEvent {
            event: Event::Revoke,
            caller: identity.to_string(),
            tunnel: tunnel.to_string(),
            decision: Some(AuditDecision::Deny),
            rule: Some(REVOKED_RULE.to_string()),
            reason: Some(reason.to_string()),
            labels: Some(labels),
            ..Default::default()
        });
    }
}

/// Why [`guard`] cut a connection short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A reloaded policy revoked the peer.
    Revoked,
    /// The peer's certificate reached its `not_after`.
    Expired,
}

impl Cut {
    /// For logs and close reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Revoked => "the peer's identity or certificate was revoked",
            Cut::Expired => "the peer's certificate expired",
        }
    }
}

/// Time left until `not_after` (zero once passed).
pub fn until(not_after: SystemTime) -> Duration {
    not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Runs `work` (a connection's whole life) unless the session is revoked
/// or the peer's certificate expires first; then `work` is dropped, which
/// closes the connection and every stream on it.
pub async fn guard<F: std::future::Future>(
    session: &Session,
    not_after: Option<SystemTime>,
    work: F,
) -> Result<F::Output, Cut> {
    let expiry = async {
        match not_after {
            Some(t) => tokio::time::sleep(until(t)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        out = work => Ok(out),
        _ = session.revoked() => Err(Cut::Revoked),
        _ = expiry => Err(Cut::Expired),
    }
}

/// Runs until `cancel`: sweeps every live session each time `policy` is
/// swapped (a reload), so a revocation takes effect at once.
pub async fn enforce(
    sessions: Arc<LiveSessions>,
    policy: Arc<PolicyHandle>,
    cancel: CancellationToken,
) {
    let mut generation = policy.subscribe();
    // A swap between start-up and the subscription is not missed.
    sessions.sweep();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = generation.changed() => {
                if changed.is_err() {
                    return;
                }
                sessions.sweep();
            }
        }
    }
}

#[cfg(test)]
mod tests;
