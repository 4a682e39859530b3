//! Forwards one caller request over a tunnel: route, decide, open a QUIC
//! stream, send OPEN and the body, and turn the answer back into an HTTP
//! response whose body streams from the tunnel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use proxy::audit::stream::StreamAudit;
use proxy::audit::AuditEvent;
use proxy::forward::head::{
    content_length, is_grpc, open_for_request, request_authority, request_id, response_for_frame,
};
use proxy::forward::observe::{AuditedBody, Counted};
use proxy::forward::{
    pump_body, write_frame, AbortOnDrop, BoxError, CallError, FrameReader, HttpBody, SendGuard,
    StreamError, TunnelBody,
};
use proxy::policy::{canonical_authority, canonical_path, Decision, PolicyHandle, Subject};
use proxy::wire::Frame;
use proxy::SpiffeId;
use std::sync::atomic::Ordering;
use tracing::{debug, Instrument};

use crate::registry::Lookup;
use crate::route::route_for_host;
use crate::Shared;

/// Proof that a call was decided on and allowed, carrying the decision.
/// Forwarding takes one, so a path that skips the decision does not compile.
#[derive(Debug)]
pub struct Permit {
    /// The decision that allowed it (allow or would-deny) and its rule.
    pub decision: Decision,
}

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
        },
    );
    if decision.permits() {
        Ok(Permit { decision })
    } else {
        let reason = match &decision.rule {
            Some(rule) => format!("rule '{rule}' denies this call"),
            None => "no rule allows this call (default deny)".to_string(),
        };
        Err((CallError::Denied { reason }, decision))
    }
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
    match forward(req, &caller, &shared, &rid, &mut audit).await {
        Ok(resp) => {
            let ending = audit.ending_mut();
            ending.http_status = Some(resp.status().as_u16());
            ending.grpc_status = grpc_status(resp.headers());
            Ok(resp.map(|body| AuditedBody::new(body, audit).boxed_unsync()))
        }
        Err(Failure::Refused(e)) => {
            debug!(error = %e, code = e.code(), "call refused");
            if !audit.is_open() {
                let _ = audit.open("refuse", None, Some(e.code().to_string())).await;
            }
            let resp = e.to_response(grpc);
            let ending = audit.ending_mut();
            ending.http_status = Some(resp.status().as_u16());
            ending.grpc_status = grpc.then(|| e.grpc_code());
            ending.error = Some(e.to_string());
            audit.close().await;
            Ok(resp)
        }
        Err(Failure::Reset(e)) => {
            audit.ending_mut().error = Some(e.to_string());
            audit.close().await;
            if h2_caller {
                Err(Box::new(e))
            } else {
                Ok(CallError::TunnelFailure {
                    reason: e.to_string(),
                }
                .to_response(grpc))
            }
        }
    }
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

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let id = v.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

enum Failure {
    Refused(CallError),
    Reset(StreamError),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Failure::Refused(e)
    }
}

/// Parses a gRPC `grpc-timeout` header (`<digits><unit>`).
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

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
            permit.decision.label(),
            permit.decision.rule.as_deref(),
            None,
        )
        .await
        .map_err(|e| CallError::Unavailable {
            reason: format!("audit log cannot be written ({e}); refusing to forward unaudited"),
        })?;
    let span = tracing::debug_span!("call", request_id = %rid, tunnel = %route.tunnel, service = %route.service);
    let deadline = grpc_timeout(&parts.headers);

    let (send, recv) =
        match tokio::time::timeout(limits.handshake_timeout, tunnel.conn.open_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(CallError::TunnelFailure {
                    reason: e.to_string(),
                }
                .into())
            }
            Err(_) => {
                return Err(CallError::Overloaded {
                    reason: format!("tunnel '{}' has no free stream", route.tunnel),
                }
                .into())
            }
        };
    let mut send = SendGuard::new(send);
    let body_empty = body.is_end_stream();
    let open = open_for_request(&parts, &route.service, caller.as_str(), rid, body_empty);
    if let Err(e) = write_frame(send.stream(), &Frame::Open(Box::new(open)), &limits.wire).await {
        return Err(CallError::TunnelFailure {
            reason: e.to_string(),
        }
        .into());
    }
    let pump = if body_empty {
        let _ = send.finish();
        None
    } else {
        let (body, bytes_in) = Counted::new(body);
        audit.count_in(bytes_in);
        let wire = limits.wire;
        let task = tokio::spawn(
            async move {
                // A caller's body failing means the caller gave up.
                let outcome = pump_body(
                    body,
                    &mut send,
                    &wire,
                    proxy::wire::codes::stream::CANCELLED,
                )
                .await;
                debug!(?outcome, "request body done");
            }
            .instrument(span.clone()),
        );
        Some(AbortOnDrop(task))
    };

    let mut reader = FrameReader::new(recv, limits.wire);
    let head_timeout = deadline.unwrap_or(limits.response_timeout);
    let head = match tokio::time::timeout(head_timeout, reader.next()).await {
        Ok(head) => head,
        Err(_) => {
            reader.stop(proxy::wire::codes::stream::TIMEOUT);
            return Err(CallError::UpstreamTimeout {
                reason: format!(
                    "no response from '{}' within {head_timeout:?}",
                    route.service
                ),
            }
            .into());
        }
    };
    match head {
        Ok(Some(Frame::Response(resp))) => {
            let mut body = TunnelBody::new(reader, content_length(&resp.headers));
            if let Some(pump) = pump {
                body = body.tie(pump);
            }
            let body = body.map_err(BoxError::from).boxed_unsync();
            Ok(response_for_frame(*resp, body))
        }
        Ok(Some(Frame::Refuse(r))) => {
            Err(CallError::from_refuse(r, &route.tunnel, &route.service).into())
        }
        Ok(Some(other)) => {
            // A protocol violation on a data stream: stop it with PROTOCOL
            // (docs/protocol.md) rather than the NO_ERROR of a plain drop.
            reader.stop(proxy::wire::codes::stream::PROTOCOL);
            Err(CallError::TunnelFailure {
                reason: format!(
                    "tunnel client sent {} before a response",
                    other.frame_type()
                ),
            }
            .into())
        }
        Ok(None) => Err(CallError::TunnelFailure {
            reason: "tunnel stream closed before a response".into(),
        }
        .into()),
        Err(e @ StreamError::Reset { .. }) => Err(Failure::Reset(e)),
        Err(e) => {
            // Malformed or oversized frame: tell the tunnel why (PROTOCOL).
            reader.stop(e.code_for_peer());
            Err(CallError::TunnelFailure {
                reason: e.to_string(),
            }
            .into())
        }
    }
}
