//! Serves the streams the edge opens: the data-plane owner's decision
//! (caller as asserted by the authenticated edge × local service ×
//! method/path), then delivery to the local service through the shared
//! accepting side (`proxy::forward::accept`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderValue;
use proxy::audit::{AuditEvent, AuditLog};
use proxy::forward::accept::{open_trace_id, serve_stream, Acceptor};
use proxy::forward::head::is_grpc;
use proxy::forward::headers::client_cert_value;
use proxy::forward::CallError;
use proxy::policy::{canonical_path, Decision, Permit, Subject};
use proxy::upstream::Upstream;
use proxy::wire::Open;
use proxy::{Limits, SpiffeId};

use crate::Shared;

/// The client as the accepting end of ingress streams.
pub struct Ingress(pub Arc<Shared>);

impl Acceptor for Ingress {
    fn limits(&self) -> &Limits {
        &self.0.config.limits
    }

    fn audit_log(&self) -> &AuditLog {
        &self.0.audit
    }

    fn audit_base(&self, open: &Open) -> AuditEvent {
        AuditEvent {
            direction: "ingress".into(),
            stream_id: self.0.next_stream.fetch_add(1, Ordering::Relaxed),
            request_id: open.request_id.clone(),
            trace_id: open_trace_id(open),
            caller: open.caller.clone(),
            tunnel: self.0.config.identity.id.to_string(),
            service: open.service.clone(),
            method: open.method.to_string(),
            path: open.path.chars().take(2048).collect(),
            ..AuditEvent::default()
        }
    }

    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.0.upstreams.get(name)
    }

    fn unknown(&self, name: &str) -> CallError {
        CallError::UnknownService {
            tunnel: self.0.config.tunnel_name().to_string(),
            service: name.to_string(),
        }
    }

    fn decide(&self, open: &Open) -> Result<Permit, (CallError, Option<Decision>)> {
        decide(open, &self.0)
    }

    fn client_cert(&self, open: &Open) -> Option<HeaderValue> {
        client_cert_value(self.0.config.identity.id.as_str(), &open.caller)
    }
}

/// The single place every incoming stream is decided on at the client.
/// Inputs are re-validated here; the client does not trust the edge to
/// have done it.
pub fn decide(open: &Open, shared: &Shared) -> Result<Permit, (CallError, Option<Decision>)> {
    let caller = SpiffeId::parse(&open.caller).map_err(|e| {
        let reason = format!("caller identity: {e}");
        (CallError::BadRequest { reason }, None)
    })?;
    let grpc = is_grpc(&open.headers);
    let path = canonical_path(&open.path, grpc).map_err(|e| {
        let reason = format!("{e}; send the path in canonical form");
        (CallError::BadRequest { reason }, None)
    })?;
    let decision = proxy::policy::decide(
        &shared.config.policy.current(),
        &Subject {
            caller: caller.as_str(),
            tunnel: shared.config.identity.id.as_str(),
            service: &open.service,
            method: open.method.as_str(),
            path,
            grpc,
            workload: None,
        },
    );
    Permit::from_decision(decision).map_err(|decision| {
        let reason = match &decision.rule {
            Some(rule) => format!("the tunnel's policy rule '{rule}' denies this call"),
            None => "the tunnel's policy allows no such call (default deny)".to_string(),
        };
        (CallError::Denied { reason }, Some(decision))
    })
}

/// Handles one stream the edge opened, to completion.
pub async fn handle_stream(send: quinn::SendStream, recv: quinn::RecvStream, shared: Arc<Shared>) {
    serve_stream(send, recv, &Ingress(shared)).await;
}
