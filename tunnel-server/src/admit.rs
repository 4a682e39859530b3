//! What the edge's two opening flows (ingress HTTP/gRPC in [`crate::call`],
//! raw TCP in [`crate::tcp_ingress`]) do alike before the shared admission
//! path decides: look the tunnel up and check it offers the service. Each
//! refusal goes through `proxy::admission`, so it is audited and answered
//! from the one status table.

use std::time::Instant;

use proxy::admission::{Pending, PolicyOwner, Recording, Refusal};
use proxy::forward::CallError;
use proxy::policy::Subject;
use proxy::SpiffeId;
use tracing::debug;

use crate::registry::{Lookup, Routed};
use crate::Shared;

/// A routed stream's target and request, as the edge policy sees it.
pub struct Ask<'a> {
    /// The verified caller.
    pub caller: &'a SpiffeId,
    /// Tunnel name, from the route.
    pub tunnel: &'a str,
    /// Service name, from the route.
    pub service: &'a str,
    /// HTTP method (`CONNECT` for raw TCP).
    pub method: &'a str,
    /// Canonical path (`/` for raw TCP).
    pub path: &'a str,
    /// gRPC call?
    pub grpc: bool,
}

/// The SPIFFE ID a tunnel of this name has (its certificate's
/// `/tunnel/<name>` in the edge's trust domain): every record names the
/// tunnel the same way, routed to a live connection or not.
pub fn tunnel_id(shared: &Shared, name: &str) -> String {
    format!(
        "spiffe://{}/tunnel/{name}",
        shared.config.identity.id.trust_domain()
    )
}

/// Finds the tunnel's live connection, takes the call's fair share
/// (`proxy::quota`: calls in flight per tunnel and per caller, the
/// caller's rate), then has the edge policy decide: a [`Recording`] (the
/// open record queued; OPEN may go while it is made durable) with the
/// connection to open the stream on, or an audited refusal (unknown
/// tunnel, offline, unknown service, over a limit, denied, audit down).
/// The share is checked before the policy so a flood is refused at the
/// least cost; it is held until the call's last byte.
pub async fn admit(
    mut pending: Pending,
    ask: &Ask<'_>,
    shared: &Shared,
) -> Result<(Recording, Routed), Refusal> {
    pending.set_service(ask.service);
    pending.set_tunnel(&tunnel_id(shared, ask.tunnel));
    let tunnel = match shared.registry.lookup(ask.tunnel) {
        Lookup::Live(t) => t,
        Lookup::Offline => {
            let tunnel = ask.tunnel.to_string();
            return Err(pending.refuse(CallError::TunnelOffline { tunnel }).await);
        }
        Lookup::Unknown => {
            let tunnel = ask.tunnel.to_string();
            return Err(pending.refuse(CallError::UnknownTunnel { tunnel }).await);
        }
    };
    if !tunnel.services.contains(ask.service) {
        let err = CallError::UnknownService {
            tunnel: ask.tunnel.to_string(),
            service: ask.service.to_string(),
        };
        return Err(pending.refuse(err).await);
    }
    match shared
        .quotas
        .acquire(ask.tunnel, ask.caller.as_str(), Instant::now())
    {
        Ok(share) => pending.keep(share),
        Err(over) => {
            debug!(caller = %ask.caller, tunnel = ask.tunnel, limit = over.limit_name(), "call refused: over a limit");
            let err = CallError::OverLimit {
                reason: over.to_string(),
                retry_after: over.retry_after(),
            };
            return Err(pending.refuse(err).await);
        }
    }
    let subject = Subject {
        caller: ask.caller.as_str(),
        tunnel: tunnel.identity.as_str(),
        service: ask.service,
        method: ask.method,
        path: ask.path,
        grpc: ask.grpc,
        workload: None,
    };
    let recording = pending
        .decide_early(&shared.config.policy, &subject, PolicyOwner::Edge)
        .await?;
    Ok((recording, tunnel))
}
