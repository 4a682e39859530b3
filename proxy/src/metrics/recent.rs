//! The last refusals and denials, for the status page: who was turned
//! away, from what, and why. Fed by the same audit events as the metrics;
//! bounded to [`KEPT`] entries (the oldest goes first).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audit::{AuditDecision, AuditEvent};

/// Refusals kept.
pub const KEPT: usize = 50;

/// One refused or denied stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// When, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// `ingress` or `egress`.
    pub direction: &'static str,
    /// `refuse` or `deny`.
    pub decision: &'static str,
    /// The `tether-error` code (refusals) or the rule (denials).
    pub cause: String,
    /// The caller identity.
    pub caller: String,
    /// The tunnel, as far as known.
    pub tunnel: String,
    /// The service or upstream, as far as known.
    pub service: String,
    /// Pairs it with the audit records and logs.
    pub request_id: String,
}

/// The ring of recent refusals.
#[derive(Debug, Default)]
pub struct Recent {
    ring: Mutex<VecDeque<Refusal>>,
}

impl Recent {
    /// Keeps `event` if it is the open record of a refused or denied
    /// stream.
    pub fn observe(&self, event: &AuditEvent) {
        let decision = match event.decision {
            Some(AuditDecision::Refuse) => "refuse",
            Some(AuditDecision::Deny) => "deny",
            _ => return,
        };
        let cause = match event.decision {
            Some(AuditDecision::Deny) => super::labels::rule(event).to_string(),
            _ => super::labels::cause(event).to_string(),
        };
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let entry = Refusal {
            at_unix_ms,
            direction: event.direction.as_str(),
            decision,
            cause,
            caller: event.caller.clone(),
            tunnel: event.tunnel.clone(),
            service: event.service.clone(),
            request_id: event.request_id.clone(),
        };
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(entry);
        }
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Refusal> {
        self.ring
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_refusals_only() {
        let recent = Recent::default();
        for i in 0..(KEPT + 5) {
            recent.observe(&AuditEvent {
                decision: Some(AuditDecision::Refuse),
                reason: Some("unknown-tunnel".into()),
                request_id: format!("r{i}"),
                ..AuditEvent::default()
            });
        }
        recent.observe(&AuditEvent {
            decision: Some(AuditDecision::Allow),
            ..AuditEvent::default()
        });
        let list = recent.list();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].request_id, format!("r{}", KEPT + 4));
        assert_eq!(list[0].cause, "unknown-tunnel");
    }
}
