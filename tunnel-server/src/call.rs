//! Forwards one caller request over a tunnel: route, decide, open a QUIC
//! stream, send OPEN and the body, and turn the answer back into an HTTP
//! response whose body streams from the tunnel.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use proxy::audit::stream::StreamAudit;
use proxy::audit::AuditEvent;
use proxy::forward::head::{is_grpc, request_authority, request_id, trace_id};
use proxy::forward::open::{grpc_timeout, open_call, respond, OpenFailure, Target};
use proxy::forward::{BoxError, CallError, HttpBody};
use proxy::policy::{canonical_authority, canonical_path, Decision, Permit, PolicyHandle, Subject};
use proxy::SpiffeId;

use crate::registry::Lookup;
use crate::route::route_for_host;
use crate::Shared;

/// What a call is, once its inputs have been validated strictly.
pub struct CallTarget<'a> {
    /// The verified caller.
    pub caller: &'a SpiffeId,
    /// The tunnel's verified identity.
    pub tunnel: &'a SpiffeId,
    /// Service name.
    pub service: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Canonical path (no query).
    pub path: &'a str,
    /// gRPC call?
    pub grpc: bool,
}

/// The single place every ingress call is decided on before a byte is
/// forwarded: the edge policy over caller × tunnel × service × method/path.
/// Default deny; a refusal names the rule and nothing internal.
pub fn decide(policy: &PolicyHandle, t: &CallTarget<'_>) -> Result<Permit, (CallError, Decision)> {
    let decision = proxy::policy::decide(
        &policy.current(),
        &Subject {
            caller: t.caller.as_str(),
            tunnel: t.tunnel.as_str(),
            service: t.service,
            method: t.method,
            path: t.path,
            grpc: t.grpc,
            workload: None,
        },
    );
    Permit::from_decision(decision).map_err(|decision| {
        let reason = match &decision.rule {
            Some(rule) => format!("rule '{rule}' denies this call"),
            None => "no rule allows this call (default deny)".to_string(),
        };
        (CallError::Denied { reason }, decision)
    })
}

/// Handles one request; refusals become HTTP/gRPC error responses. An `Err`
/// makes hyper reset the caller's HTTP/2 stream with the reason inside, which
/// is how a service's reset before its response head reaches the caller.
/// Every request is audited: an `open` record before anything is forwarded
/// (refusals included) and a `close` record when it ends.
pub async fn handle<B>(
    req: Request<B>,
    caller: SpiffeId,
    shared: Arc<Shared>,
) -> Result<Response<HttpBody>, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let grpc = is_grpc(req.headers());
    let h2_caller = req.version() == http::Version::HTTP_2;
    let rid = request_id(req.headers());
    let mut audit = StreamAudit::new(
        shared.audit.clone(),
        audit_base(
            &req,
            &caller,
            &rid,
            shared.next_stream.fetch_add(1, Ordering::Relaxed),
        ),
    );
    let result = forward(req, &caller, &shared, &rid, &mut audit).await;
    respond(result, audit, grpc, h2_caller).await
}

/// Longest path kept in an audit record; longer ones are cut (and marked).
const MAX_AUDIT_PATH: usize = 2048;

/// The identity part of a call's audit records.
fn audit_base<B>(req: &Request<B>, caller: &SpiffeId, rid: &str, stream_id: u64) -> AuditEvent {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = if target.len() > MAX_AUDIT_PATH {
        let cut = (0..=MAX_AUDIT_PATH)
            .rev()
            .find(|&i| target.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &target[..cut])
    } else {
        target.to_string()
    };
    AuditEvent {
        direction: "ingress".into(),
        stream_id,
        request_id: rid.to_string(),
        trace_id: trace_id(req.headers()),
        caller: caller.to_string(),
        method: req.method().to_string(),
        path,
        ..AuditEvent::default()
    }
}

type Failure = OpenFailure;

async fn forward<B>(
    req: Request<B>,
    caller: &SpiffeId,
    shared: &Shared,
    rid: &str,
    audit: &mut StreamAudit,
) -> Result<Response<HttpBody>, Failure>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let limits = shared.config.limits;
    let (parts, body) = req.into_parts();
    let authority = request_authority(&parts).ok_or_else(|| CallError::BadRequest {
        reason: "request has no host".into(),
    })?;
    if let (Some(uri_auth), Some(host)) =
        (parts.uri.authority(), parts.headers.get(http::header::HOST))
    {
        if !host
            .as_bytes()
            .eq_ignore_ascii_case(uri_auth.as_str().as_bytes())
        {
            return Err(CallError::BadRequest {
                reason: "Host header and request authority disagree".into(),
            }
            .into());
        }
    }
    canonical_authority(&authority).map_err(|e| CallError::BadRequest {
        reason: format!("authority: {e}"),
    })?;
    let route = route_for_host(&authority, &shared.config.domain)?;
    audit.base_mut().service = route.service.clone();
    audit.base_mut().tunnel = route.tunnel.clone();
    let grpc = is_grpc(&parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = canonical_path(target, grpc).map_err(|e| CallError::BadRequest {
        reason: format!("{e}; send the path in canonical form"),
    })?;
    let tunnel = match shared.registry.lookup(&route.tunnel) {
        Lookup::Live(t) => t,
        Lookup::Offline => {
            return Err(CallError::TunnelOffline {
                tunnel: route.tunnel,
            }
            .into())
        }
        Lookup::Unknown => {
            return Err(CallError::UnknownTunnel {
                tunnel: route.tunnel,
            }
            .into())
        }
    };
    if !tunnel.services.contains(&route.service) {
        return Err(CallError::UnknownService {
            tunnel: route.tunnel,
            service: route.service,
        }
        .into());
    }
    let call = CallTarget {
        caller,
        tunnel: &tunnel.identity,
        service: &route.service,
        method: parts.method.as_str(),
        path,
        grpc,
    };
    audit.base_mut().tunnel = tunnel.identity.to_string();
    let permit: Permit = match decide(&shared.config.policy, &call) {
        Ok(p) => p,
        Err((e, d)) => {
            // Denied streams are audited too; fail closed either way.
            let _ = audit
                .open(d.label(), d.rule.as_deref(), Some(e.to_string()))
                .await;
            return Err(e.into());
        }
    };
    // Durable before the first byte is forwarded, or nothing is forwarded.
    audit
        .open(
            permit.decision().label(),
            permit.decision().rule.as_deref(),
            None,
        )
        .await
        .map_err(|e| CallError::Unavailable {
            reason: format!("audit log cannot be written ({e}); refusing to forward unaudited"),
        })?;
    let target = Target {
        service: &route.service,
        caller: caller.as_str(),
        request_id: rid,
        peer: &route.tunnel,
        deadline: grpc_timeout(&parts.headers),
    };
    open_call(&tunnel.conn, &parts, body, target, &limits, audit, &permit).await
}
