//! The accepting side of a stream, shared by the two places that deliver
//! streams to services: the tunnel client serving its local services
//! (ingress) and the edge serving its named upstreams (egress). What
//! differs between them — which services exist, which policy decides, what
//! the audit record and the identity header say — is the [`Acceptor`].

use bytes::BytesMut;
use http::HeaderValue;
use tracing::{debug, warn, Instrument};

use super::head::{content_length, is_grpc, request_for_open, response_frame};
use super::headers::CLIENT_CERT_HEADER;
use super::observe::AuditedBody;
use super::{
    pump_body, send_head, write_frame, CallError, FrameReader, SendGuard, Started, TunnelBody,
};
use crate::audit::stream::StreamAudit;
use crate::audit::{AuditEvent, AuditLog};
use crate::policy::{Decision, Permit};
use crate::upstream::Upstream;
use crate::wire::{self, Frame, Open, StreamKind};
use crate::Limits;

/// What one accepting end supplies.
pub trait Acceptor: Send + Sync {
    /// Bounds for this end.
    fn limits(&self) -> &Limits;
    /// Where streams are audited.
    fn audit_log(&self) -> &AuditLog;
    /// The audit fields of a stream (identities, service, ids).
    fn audit_base(&self, open: &Open) -> AuditEvent;
    /// The service named in OPEN.
    fn upstream(&self, name: &str) -> Option<&Upstream>;
    /// The refusal for a service that does not exist here.
    fn unknown(&self, name: &str) -> CallError;
    /// The decision on a stream; a refusal carries the decision when the
    /// policy made it (for the audit record).
    fn decide(&self, open: &Open) -> Result<Permit, (CallError, Option<Decision>)>;
    /// The identity header value the service receives.
    fn client_cert(&self, open: &Open) -> Option<HeaderValue>;
}

async fn refuse(mut send: SendGuard, err: &CallError, limits: &wire::WireLimits) {
    let mut buf = BytesMut::new();
    if wire::encode(&Frame::Refuse(err.to_refuse()), limits, &mut buf).is_ok()
        && send.stream().write_all(&buf).await.is_ok()
    {
        let _ = send.finish();
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

/// Reads the OPEN frame of a new stream, within the handshake timeout.
pub async fn read_open(reader: &mut FrameReader, limits: &Limits) -> Option<Box<Open>> {
    match tokio::time::timeout(limits.handshake_timeout, reader.next()).await {
        Ok(Ok(Some(Frame::Open(open)))) => Some(open),
        Ok(Ok(Some(other))) => {
            warn!(frame = %other.frame_type(), "stream did not start with OPEN");
            reader.stop(wire::codes::stream::PROTOCOL);
            None
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            warn!(error = %e, "bad stream head");
            reader.stop(e.code_for_peer());
            None
        }
        Err(_) => {
            warn!("no OPEN frame in time");
            reader.stop(wire::codes::stream::TIMEOUT);
            None
        }
    }
}

/// Serves one stream the peer opened, to completion.
pub async fn serve_stream<A: Acceptor>(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    acceptor: &A,
) {
    let limits = *acceptor.limits();
    let send = SendGuard::new(send);
    let mut reader = FrameReader::new(recv, limits.wire);
    let Some(open) = read_open(&mut reader, &limits).await else {
        return;
    };
    let span = tracing::debug_span!("stream", request_id = %open.request_id, service = %open.service, caller = %open.caller);
    let audit = StreamAudit::new(acceptor.audit_log().clone(), acceptor.audit_base(&open));
    serve_open(*open, reader, send, acceptor, audit)
        .instrument(span)
        .await;
}

async fn serve_open<A: Acceptor>(
    open: Open,
    reader: FrameReader,
    mut send: SendGuard,
    acceptor: &A,
    mut audit: StreamAudit,
) {
    let limits = *acceptor.limits();
    let grpc = is_grpc(&open.headers);
    let permit = match acceptor.decide(&open) {
        Ok(p) => p,
        Err((err, decision)) => {
            debug!(error = %err, "stream refused by policy");
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
            permit.decision().label(),
            permit.decision().rule.as_deref(),
            None,
        )
        .await
    {
        let err = CallError::Unavailable {
            reason: format!("the audit log cannot be written ({e}); refusing to forward unaudited"),
        };
        return refuse(send, &err, &limits.wire).await;
    }
    // Existence is checked only after the policy allowed the call, so a
    // caller the policy denies cannot probe which services exist.
    let Some(upstream) = acceptor.upstream(&open.service) else {
        let err = acceptor.unknown(&open.service);
        return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
    };
    if (open.kind == StreamKind::Tcp) != upstream.is_tcp() {
        let err = CallError::BadRequest {
            reason: if upstream.is_tcp() {
                format!(
                    "'{}' is a TCP service; open a TCP stream to it",
                    open.service
                )
            } else {
                format!("'{}' is an HTTP service; send it HTTP", open.service)
            },
        };
        return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
    }
    if open.kind == StreamKind::Tcp {
        return serve_tcp(&open, reader, send, upstream, &limits, audit).await;
    }
    let body = TunnelBody::new(reader, content_length(&open.headers));
    audit.count_in(body.byte_counter());
    let mut req = match request_for_open(&open, &upstream.base, body) {
        Ok(r) => r,
        Err(err) => return refuse_audited(send, &err, &limits.wire, audit, grpc).await,
    };
    if let Some(v) = acceptor.client_cert(&open) {
        req.headers_mut().insert(CLIENT_CERT_HEADER, v);
    }
    // The opener stops reading when its caller cancels or its deadline
    // passes before the service has answered. Dropping the pending request
    // then cancels it at the service (hyper resets the HTTP/2 stream or
    // closes the HTTP/1.1 connection) instead of leaving it running until
    // the response timeout.
    let sent = tokio::select! {
        sent = tokio::time::timeout(limits.response_timeout, upstream.send(req)) => match sent {
            Ok(Some(r)) => Ok(r),
            Ok(None) => {
                let err = CallError::BadRequest { reason: format!("'{}' is a TCP service; open a TCP stream to it", open.service) };
                return refuse_audited(send, &err, &limits.wire, audit, grpc).await;
            }
            Err(e) => Err(e),
        },
        stopped = send.stream().stopped() => {
            let code = stopped.ok().flatten().unwrap_or(wire::codes::stream::CANCELLED);
            debug!(%code, "peer stopped the stream before the response; cancelling the request");
            send.reset(code);
            audit.ending_mut().error = Some("cancelled by the caller before the response".into());
            audit.close().await;
            return;
        }
    };
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            // The address stays in the log; callers learn the name and the cause.
            let chain = error_chain(&e);
            debug!(service = %open.service, url = %upstream.base, error = %chain, "upstream request failed");
            let reason = format!("service '{}' is unreachable: {chain}", open.service);
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
    let mut body = AuditedBody::new(body, audit);
    // A service's body failing without an HTTP/2 reason of its own (an
    // HTTP/1.1 connection cut mid-body, a dead h2c connection) is the
    // service failing, not a cancellation.
    let source_failed = wire::codes::stream::UPSTREAM_RESET;
    match send_head(&mut send, &head, &mut body, &limits.wire, source_failed).await {
        Err(e) => {
            debug!(error = %e, "could not send response head");
            body.fail(format!("could not send the response head: {e}"));
        }
        Ok(Started::Done(outcome)) => debug!(?outcome, "response body done with its head"),
        Ok(Started::Pump) => {
            let outcome = pump_body(body, &mut send, &limits.wire, source_failed).await;
            debug!(?outcome, "response body done");
        }
    }
}

/// Connects to a TCP service, confirms with RESPONSE 200, then bridges
/// bytes both ways until each side has closed.
async fn serve_tcp(
    open: &Open,
    reader: FrameReader,
    mut send: SendGuard,
    upstream: &Upstream,
    limits: &Limits,
    mut audit: StreamAudit,
) {
    let tcp = match upstream.connect_tcp(limits.connect_timeout).await {
        Ok(tcp) => tcp,
        Err(e) => {
            debug!(service = %open.service, url = %upstream.base, error = %e, "TCP connect failed");
            let err = CallError::UpstreamUnavailable {
                reason: format!("TCP service '{}' is unreachable: {e}", open.service),
            };
            return refuse_audited(send, &err, &limits.wire, audit, false).await;
        }
    };
    let head = Frame::Response(Box::new(crate::wire::Response {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
    }));
    if let Err(e) = write_frame(send.stream(), &head, &limits.wire).await {
        audit.ending_mut().error = Some(format!("could not confirm the connection: {e}"));
        audit.close().await;
        return;
    }
    let (to_stream, from_stream) = (Default::default(), Default::default());
    audit.count_out(std::sync::Arc::clone(&to_stream));
    audit.count_in(std::sync::Arc::clone(&from_stream));
    let mut tcp = tcp;
    let outcome = super::tcp::bridge(
        &mut tcp,
        reader,
        &mut send,
        &limits.wire,
        to_stream,
        from_stream,
    )
    .await;
    if outcome.reset_local {
        // Pass the reset on: the service sees RST, not a clean close.
        let _ = tcp.set_zero_linger();
    }
    audit.ending_mut().http_status = Some(200);
    audit.ending_mut().error = outcome.error;
    audit.close().await;
}

/// An error with its causes, for messages that say what failed.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The W3C trace id inside an OPEN's traceparent, if well formed.
pub fn open_trace_id(open: &Open) -> Option<String> {
    super::head::trace_id_of(open.traceparent.as_deref()?)
}
