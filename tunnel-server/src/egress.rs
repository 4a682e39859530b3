//! Egress at the edge: a stream a tunnel client opens carries a data-plane
//! workload's call to one of the edge's named upstreams. The edge decides on
//! it (tunnel identity × workload label × upstream × method/path), audits
//! it, tells the upstream which tunnel is calling, and delivers it through
//! the shared accepting side. A workload names an upstream, never an
//! address: the edge is not an open proxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderValue;
use proxy::admission::PolicyOwner;
use proxy::audit::{AuditLog, Direction};
use proxy::forward::accept::{Acceptor, Parties};
use proxy::forward::headers::client_cert_value;
use proxy::forward::CallError;
use proxy::policy::PolicyHandle;
use proxy::upstream::Upstream;
use proxy::wire::Open;
use proxy::{Limits, SpiffeId};

use crate::Shared;

/// The edge as the accepting end of one tunnel's egress streams.
pub struct Egress {
    /// Edge state.
    pub shared: Arc<Shared>,
    /// The tunnel's verified identity (from its certificate).
    pub tunnel: SpiffeId,
}

/// The workload label an egress OPEN carries in its caller field.
fn workload(open: &Open) -> Option<&str> {
    (!open.caller.is_empty()).then_some(open.caller.as_str())
}

impl Acceptor for Egress {
    fn limits(&self) -> &Limits {
        &self.shared.config.limits
    }

    fn audit_log(&self) -> &AuditLog {
        &self.shared.audit
    }

    fn lifecycle(&self) -> &proxy::lifecycle::Lifecycle {
        &self.shared.life
    }

    fn next_stream_id(&self) -> u64 {
        self.shared.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    fn direction(&self) -> Direction {
        Direction::Egress
    }

    fn policy(&self) -> (&PolicyHandle, PolicyOwner) {
        (&self.shared.config.egress_policy, PolicyOwner::EdgeEgress)
    }

    fn parties<'a>(&'a self, open: &'a Open) -> Parties<'a> {
        // The tunnel calls on its own identity, from its certificate; the
        // workload label only narrows which of its workloads.
        Parties {
            caller: self.tunnel.as_str(),
            tunnel: self.tunnel.as_str(),
            workload: workload(open),
        }
    }

    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.shared.egress_upstreams.get(name)
    }

    fn unknown(&self, name: &str) -> CallError {
        CallError::UnknownUpstream {
            name: name.to_string(),
        }
    }

    fn client_cert(&self, _open: &Open) -> Option<HeaderValue> {
        client_cert_value(
            self.shared.config.identity.id.as_str(),
            self.tunnel.as_str(),
        )
    }
}
