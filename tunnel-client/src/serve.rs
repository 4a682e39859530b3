//! Serves the streams the edge opens: the data-plane owner's decision
//! (caller as asserted by the authenticated edge × local service ×
//! method/path), then delivery to the local service through the shared
//! accepting side (`proxy::forward::accept`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderValue;
use proxy::admission::PolicyOwner;
use proxy::audit::{AuditLog, Direction};
use proxy::forward::accept::{serve_stream, Acceptor, Parties};
use proxy::forward::headers::client_cert_value;
use proxy::forward::CallError;
use proxy::policy::PolicyHandle;
use proxy::upstream::Upstream;
use proxy::wire::Open;
use proxy::Limits;

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

    fn lifecycle(&self) -> &proxy::lifecycle::Lifecycle {
        &self.0.life
    }

    fn next_stream_id(&self) -> u64 {
        self.0.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    fn direction(&self) -> Direction {
        Direction::Ingress
    }

    fn policy(&self) -> (&PolicyHandle, PolicyOwner) {
        (&self.0.config.policy, PolicyOwner::Tunnel)
    }

    fn parties<'a>(&'a self, open: &'a Open) -> Parties<'a> {
        // The caller as the authenticated edge asserts it; the admission
        // path re-validates it rather than trusting the edge to have.
        Parties {
            caller: &open.caller,
            tunnel: self.0.config.identity.id.as_str(),
            workload: None,
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

    fn client_cert(&self, open: &Open) -> Option<HeaderValue> {
        client_cert_value(self.0.config.identity.id.as_str(), &open.caller)
    }
}

/// Handles one stream the edge opened, to completion.
pub async fn handle_stream(send: quinn::SendStream, recv: quinn::RecvStream, shared: Arc<Shared>) {
    serve_stream(send, recv, &Ingress(shared)).await;
}
