//! Egress at the edge: a stream a tunnel client opens carries a data-plane
//! workload's call to one of the edge's named upstreams. The edge decides on
//! it (tunnel identity × workload label × upstream × method/path), audits
//! it, tells the upstream which tunnel is calling, and delivers it through
//! the shared accepting side. A workload names an upstream, never an
//! address: the edge is not an open proxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderValue;
use proxy::audit::{AuditEvent, AuditLog};
use proxy::forward::accept::{open_trace_id, Acceptor};
use proxy::forward::head::is_grpc;
use proxy::forward::headers::client_cert_value;
use proxy::forward::CallError;
use proxy::policy::{canonical_path, Decision, Permit, Subject};
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

    fn audit_base(&self, open: &Open) -> AuditEvent {
        AuditEvent {
            direction: "egress".into(),
            stream_id: self.shared.next_stream.fetch_add(1, Ordering::Relaxed),
            request_id: open.request_id.clone(),
            trace_id: open_trace_id(open),
            caller: self.tunnel.to_string(),
            tunnel: self.tunnel.to_string(),
            service: open.service.clone(),
            method: open.method.to_string(),
            path: open.path.chars().take(2048).collect(),
            labels: workload(open)
                .map(|w| [("workload".to_string(), w.chars().take(63).collect())].into()),
            ..AuditEvent::default()
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

    fn decide(&self, open: &Open) -> Result<Permit, (CallError, Option<Decision>)> {
        let grpc = is_grpc(&open.headers);
        let path = canonical_path(&open.path, grpc).map_err(|e| {
            let reason = format!("{e}; send the path in canonical form");
            (CallError::BadRequest { reason }, None)
        })?;
        let decision = proxy::policy::decide(
            &self.shared.config.egress_policy.current(),
            &Subject {
                caller: self.tunnel.as_str(),
                tunnel: self.tunnel.as_str(),
                service: &open.service,
                method: open.method.as_str(),
                path,
                grpc,
                workload: workload(open),
            },
        );
        Permit::from_decision(decision).map_err(|decision| {
            let reason = match &decision.rule {
                Some(rule) => format!("the edge's egress rule '{rule}' denies this call"),
                None => "the edge's egress policy allows no such call (default deny)".to_string(),
            };
            (CallError::Denied { reason }, Some(decision))
        })
    }

    fn client_cert(&self, _open: &Open) -> Option<HeaderValue> {
        client_cert_value(
            self.shared.config.identity.id.as_str(),
            self.tunnel.as_str(),
        )
    }
}
