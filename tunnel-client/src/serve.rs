//! Serves one stream the edge opened: read OPEN, decide, forward to the
//! local service, stream the response back.

use std::sync::Arc;

use bytes::BytesMut;
use http_body_util::BodyExt;
use proxy::audit::stream::StreamAudit;
use proxy::audit::AuditEvent;
use proxy::forward::head::{content_length, is_grpc, request_for_open, response_frame};
use proxy::forward::headers::{client_cert_value, CLIENT_CERT_HEADER};
use proxy::forward::observe::AuditedBody;
use proxy::forward::{pump_body, write_frame, CallError, FrameReader, SendGuard, TunnelBody};
use proxy::policy::{canonical_path, Decision, Subject};
use proxy::wire::{self, Frame, Open, StreamKind};
use proxy::SpiffeId;
use std::sync::atomic::Ordering;
use tracing::{debug, warn, Instrument};

use crate::Shared;

/// Proof the client decided on a stream before forwarding it, carrying the
/// decision. Forwarding takes one, so skipping the decision cannot compile.
#[derive(Debug)]
pub struct Permit {
    /// The decision that allowed it and its rule.
    pub decision: Decision,
}

/// The single place every incoming stream is decided on at the client: the
/// data-plane owner's veto over caller (as asserted by the authenticated
/// edge) × local service × method/path. Inputs are re-validated here; the
/// client does not trust the edge to have done it.
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
        },
    );
    if decision.permits() {
        Ok(Permit { decision })
    } else {
        let reason = match &decision.rule {
            Some(rule) => format!("the tunnel's policy rule '{rule}' denies this call"),
            None => "the tunnel's policy allows no such call (default deny)".to_string(),
        };
        Err((CallError::Denied { reason }, Some(decision)))
    }
}

/// Refuses a stream and closes its audit trail; a stream refused before its
/// decision is recorded as `refuse` with the error's code.
async fn refuse_audited(
    send: SendGuard,
    err: &CallError,
    limits: &wire::WireLimits,
    mut audit: StreamAudit,
    grpc: bool,
) {
    if !audit.is_open() {
        let _ = audit
            .open("refuse", None, Some(err.code().to_string()))
            .await;
    }
    let ending = audit.ending_mut();
    ending.http_status = Some(err.http_status().as_u16());
    ending.grpc_status = grpc.then(|| err.grpc_code());
    ending.error = Some(err.to_string());
    refuse(send, err, limits).await;
    audit.close().await;
}

async fn refuse(mut send: SendGuard, err: &CallError, limits: &wire::WireLimits) {
    let mut buf = BytesMut::new();
    if wire::encode(&Frame::Refuse(err.to_refuse()), limits, &mut buf).is_ok()
        && send.stream().write_all(&buf).await.is_ok()
    {
        let _ = send.finish();
    }
}

/// Handles one incoming stream to completion.
pub async fn handle_stream(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    shared: Arc<Shared>,
    edge: SpiffeId,
) {
    let limits = shared.config.limits;
    let send = SendGuard::new(send);
    let mut reader = FrameReader::new(recv, limits.wire);
    let open = match tokio::time::timeout(limits.handshake_timeout, reader.next()).await {
        Ok(Ok(Some(Frame::Open(open)))) => open,
        Ok(Ok(Some(other))) => {
            warn!(frame = %other.frame_type(), "stream did not start with OPEN");
            reader.stop(wire::codes::stream::PROTOCOL);
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(error = %e, "bad stream head");
            reader.stop(e.code_for_peer());
            return;
        }
        Err(_) => {
            warn!("no OPEN frame in time");
            reader.stop(wire::codes::stream::TIMEOUT);
            return;
        }
    };
    let span = tracing::debug_span!("stream", request_id = %open.request_id, service = %open.service, caller = %open.caller);
    let audit = StreamAudit::new(
        shared.audit.clone(),
        AuditEvent {
            direction: "ingress".into(),
            stream_id: shared.next_stream.fetch_add(1, Ordering::Relaxed),
            request_id: open.request_id.clone(),
            trace_id: open
                .traceparent
                .as_deref()
                .and_then(|t| t.split('-').nth(1))
                .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase),
            caller: open.caller.clone(),
            tunnel: shared.config.identity.id.to_string(),
            service: open.service.clone(),
            method: open.method.to_string(),
            path: open.path.chars().take(2048).collect(),
            ..AuditEvent::default()
        },
    );
    forward(*open, reader, send, shared, edge, audit)
        .instrument(span)
        .await;
}

async fn forward(
    open: Open,
    reader: FrameReader,
    mut send: SendGuard,
    shared: Arc<Shared>,
    _edge: SpiffeId,
    mut audit: StreamAudit,
) {
    let limits = shared.config.limits;
    let grpc = is_grpc(&open.headers);
    if open.kind != StreamKind::Http {
        let err = CallError::BadRequest {
            reason: "only HTTP streams are served by this client".into(),
        };
        return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
    }
    let Some(upstream) = shared.upstreams.get(&open.service) else {
        let err = CallError::UnknownService {
            tunnel: shared.config.tunnel_name().to_string(),
            service: open.service.clone(),
        };
        return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
    };
    let permit: Permit = match decide(&open, &shared) {
        Ok(p) => p,
        Err((err, decision)) => {
            debug!(error = %err, "stream refused by the tunnel's policy");
            if let Some(d) = decision {
                let _ = audit
                    .open(d.label(), d.rule.as_deref(), Some(err.to_string()))
                    .await;
            }
            return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
        }
    };
    // Durable before the first byte is forwarded, or nothing is forwarded.
    if let Err(e) = audit
        .open(
            permit.decision.label(),
            permit.decision.rule.as_deref(),
            None,
        )
        .await
    {
        let err = CallError::Unavailable {
            reason: format!(
                "the tunnel's audit log cannot be written ({e}); refusing to forward unaudited"
            ),
        };
        return refuse(send, &err, &limits.wire).await;
    }
    let body = TunnelBody::new(reader, content_length(&open.headers));
    audit.count_in(body.byte_counter());
    let mut req = match request_for_open(&open, &upstream.base, body) {
        Ok(r) => r,
        Err(err) => return refuse_audited(send, &err, &limits.wire, audit, grpc).await,
    };
    if let Some(v) = client_cert_value(shared.config.identity.id.as_str(), &open.caller) {
        req.headers_mut().insert(CLIENT_CERT_HEADER, v);
    }
    // The edge stops reading when its caller cancels or its deadline passes
    // before the service has answered. Dropping the pending request then
    // cancels it at the service (hyper resets the HTTP/2 stream or closes
    // the HTTP/1.1 connection) instead of leaving it running until the
    // response timeout.
    let sent = tokio::select! {
        sent = tokio::time::timeout(limits.response_timeout, upstream.send(req)) => sent,
        stopped = send.stream().stopped() => {
            let code = stopped.ok().flatten().unwrap_or(wire::codes::stream::CANCELLED);
            debug!(%code, "edge stopped the stream before the response; cancelling the request");
            send.reset(code);
            audit.ending_mut().error = Some("cancelled by the caller before the response".into());
            audit.close().await;
            return;
        }
    };
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let reason = format!(
                "service '{}' at {}: {}",
                open.service,
                upstream.base,
                error_chain(&e)
            );
            debug!(%reason, "upstream request failed");
            let err = CallError::UpstreamUnavailable { reason };
            return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
        }
        Err(_) => {
            let err = CallError::UpstreamTimeout {
                reason: format!(
                    "service '{}' sent no response within {:?}",
                    open.service, limits.response_timeout
                ),
            };
            return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
        }
    };
    let (parts, body) = resp.into_parts();
    let ending = audit.ending_mut();
    ending.http_status = Some(parts.status.as_u16());
    ending.grpc_status = parts
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let head = Frame::Response(Box::new(response_frame(&parts)));
    if let Err(e) = write_frame(send.stream(), &head, &limits.wire).await {
        debug!(error = %e, "could not send response head");
        audit.ending_mut().error = Some(format!("could not send the response head: {e}"));
        audit.close().await;
        return;
    }
    let body = AuditedBody::new(body, audit);
    // A service's body failing without an HTTP/2 reason of its own (an
    // HTTP/1.1 connection cut mid-body, a dead h2c connection) is the
    // service failing, not a cancellation.
    let outcome = pump_body(
        body.map_err(proxy::forward::BoxError::from),
        &mut send,
        &limits.wire,
        wire::codes::stream::UPSTREAM_RESET,
    )
    .await;
    debug!(?outcome, "response body done");
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
