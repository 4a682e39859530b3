//! The accepting side of a stream, shared by the two places that deliver
//! streams to services: the tunnel client serving its local services
//! (ingress) and the edge serving its named upstreams (egress). What
//! differs between them — which services exist, which policy decides, who
//! the parties are, what the identity header says — is the [`Acceptor`];
//! admission itself is the one path of [`crate::admission`].

use bytes::BytesMut;
use http::HeaderValue;
use tracing::{debug, warn, Instrument};

use super::head::{content_length, is_grpc, request_for_open, response_frame};
use super::headers::CLIENT_CERT_HEADER;
use super::observe::AuditedBody;
use super::tcp::{Socket, TunnelStream};
use super::{
    pump_body, send_head, write_frame, CallError, FrameReader, PumpOutcome, SendGuard, Started,
    TunnelBody,
};
use crate::admission::{validate, Admitted, Pending, PolicyOwner, Refusal, StreamFields};
use crate::audit::{AuditLog, Direction};
use crate::lifecycle::Lifecycle;
use crate::policy::{PolicyHandle, Subject};
use crate::probes::stages::Step;
use crate::upstream::Upstream;
use crate::wire::{self, Frame, Open, StreamKind};
use crate::{Limits, SpiffeId};

/// Who a stream is between, as the accepting end knows them.
#[derive(Debug, Clone, Copy)]
pub struct Parties<'a> {
    /// The caller the policy decides on (a SPIFFE ID; validated by the
    /// admission path).
    pub caller: &'a str,
    /// The tunnel the stream came through (a SPIFFE ID).
    pub tunnel: &'a str,
    /// The egress workload label, if any.
    pub workload: Option<&'a str>,
}

/// What one accepting end supplies.
pub trait Acceptor: Send + Sync {
    /// Bounds for this end.
    fn limits(&self) -> &Limits;
    /// Where streams are audited.
    fn audit_log(&self) -> &AuditLog;
    /// The process's lifecycle: once it drains, streams are refused.
    fn lifecycle(&self) -> &Lifecycle;
    /// A fresh process-local stream number, for audit records and spans.
    fn next_stream_id(&self) -> u64;
    /// Which way streams accepted here go.
    fn direction(&self) -> Direction;
    /// The policy that decides streams accepted here, and whose it is.
    fn policy(&self) -> (&PolicyHandle, PolicyOwner);
    /// The parties of a stream.
    fn parties<'a>(&'a self, open: &'a Open) -> Parties<'a>;
    /// The service named in OPEN.
    fn upstream(&self, name: &str) -> Option<&Upstream>;
    /// The refusal for a service that does not exist here.
    fn unknown(&self, name: &str) -> CallError;
    /// The identity header value the service receives.
    fn client_cert(&self, open: &Open) -> Option<HeaderValue>;
}

async fn refuse(mut send: SendGuard, err: &CallError, limits: &wire::WireLimits) {
    let mut buf = BytesMut::new();
    if wire::encode(&Frame::Refuse(err.to_refuse()), limits, &mut buf).is_ok()
        && send.stream().write_all(&buf).await.is_ok()
    {
        // Acknowledged before the handler ends: a drain's refusal must
        // reach the edge before the connection closes.
        let _ = send.finish_acked().await;
    }
}

/// Answers a refused stream with REFUSE (its audit trail is already closed).
async fn send_refusal(send: SendGuard, refusal: Refusal, limits: &wire::WireLimits) {
    debug!(error = %refusal.error(), "stream refused");
    refuse(send, refusal.error(), limits).await;
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
    let stream_id = acceptor.next_stream_id();
    let span = {
        let parties = acceptor.parties(&open);
        let trace_id = open_trace_id(&open);
        StreamFields {
            direction: acceptor.direction(),
            stream_id,
            request_id: &open.request_id,
            trace_id: trace_id.as_deref(),
            caller: parties.caller,
            tunnel: parties.tunnel,
            service: &open.service,
            method: open.method.as_str(),
            path: &open.path,
            workload: parties.workload,
        }
        .span()
    };
    serve_open(*open, stream_id, reader, send, acceptor)
        .instrument(span)
        .await;
}

/// The accepting end's admission: the caller and path validated (the far
/// end is not trusted to have done it), then the policy, then the durable
/// open record.
async fn admit<A: Acceptor>(
    open: &Open,
    stream_id: u64,
    acceptor: &A,
) -> Result<Admitted, Refusal> {
    let grpc = is_grpc(&open.headers);
    let parties = acceptor.parties(open);
    let trace_id = open_trace_id(open);
    let pending = Pending::new(
        acceptor.audit_log(),
        acceptor.lifecycle(),
        grpc,
        StreamFields {
            direction: acceptor.direction(),
            stream_id,
            request_id: &open.request_id,
            trace_id: trace_id.as_deref(),
            caller: parties.caller,
            tunnel: parties.tunnel,
            service: &open.service,
            method: open.method.as_str(),
            path: &open.path,
            workload: parties.workload,
        },
    );
    if let Err(e) = SpiffeId::parse(parties.caller) {
        let reason = format!("caller identity: {e}");
        return Err(pending.refuse(CallError::BadRequest { reason }).await);
    }
    let path = match validate::path(&open.path, grpc) {
        Ok(p) => p,
        Err(e) => return Err(pending.refuse(e).await),
    };
    let (policy, owner) = acceptor.policy();
    let subject = Subject {
        caller: parties.caller,
        tunnel: parties.tunnel,
        service: &open.service,
        method: open.method.as_str(),
        path,
        grpc,
        workload: parties.workload,
    };
    pending.decide(policy, &subject, owner).await
}

async fn serve_open<A: Acceptor>(
    open: Open,
    stream_id: u64,
    reader: FrameReader,
    mut send: SendGuard,
    acceptor: &A,
) {
    let limits = *acceptor.limits();
    let admitted = match admit(&open, stream_id, acceptor).await {
        Ok(a) => a,
        Err(refusal) => return send_refusal(send, refusal, &limits.wire).await,
    };
    // Existence is checked only after the policy allowed the call, so a
    // caller the policy denies cannot probe which services exist.
    let Some(upstream) = acceptor.upstream(admitted.permit().service()) else {
        let err = acceptor.unknown(&open.service);
        return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
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
        return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
    }
    let mut reader = reader;
    let Some(admitted) = opener_recorded(&mut reader, admitted, &limits).await else {
        return;
    };
    if open.kind == StreamKind::Tcp {
        return serve_tcp(&open, reader, send, upstream, &limits, admitted).await;
    }
    let mut admitted = admitted;
    let body = TunnelBody::new(reader, content_length(&open.headers));
    admitted.count_in(body.byte_counter());
    let mut req = match request_for_open(&open, &upstream.base, body) {
        Ok(r) => r,
        Err(err) => return send_refusal(send, admitted.refuse(err).await, &limits.wire).await,
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
        sent = tokio::time::timeout(limits.response_timeout, upstream.send(req, &admitted)) => sent,
        stopped = send.stream().stopped() => {
            let code = stopped.ok().flatten().unwrap_or(wire::codes::stream::CANCELLED);
            debug!(%code, "peer stopped the stream before the response; cancelling the request");
            send.reset(code);
            admitted.ending_mut().error = Some("cancelled by the caller before the response".into());
            admitted.close().await;
            return;
        }
    };
    let resp = match sent {
        Ok(Some(Ok(resp))) => resp,
        Ok(None) => {
            let err = CallError::BadRequest {
                reason: format!(
                    "'{}' is a TCP service; open a TCP stream to it",
                    open.service
                ),
            };
            return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
        }
        Ok(Some(Err(e))) if e.is_connect() => {
            // The address stays in the log; callers learn the name and the cause.
            let chain = error_chain(&e);
            debug!(service = %open.service, url = %upstream.base, error = %chain, "upstream unreachable");
            let reason = format!("service '{}' is unreachable: {chain}", open.service);
            let err = CallError::UpstreamUnavailable { reason };
            return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
        }
        Ok(Some(Err(e))) if service_reset(&e) => {
            // Reached, and it reset the stream before answering: pass the
            // reset on with the service's HTTP/2 reason, as a caller
            // without the tunnel would see it.
            let chain = error_chain(&e);
            let code = super::error::reset_code_for(&e, wire::codes::stream::UPSTREAM_RESET);
            debug!(service = %open.service, error = %chain, %code, "service reset the request before answering");
            send.reset(code);
            admitted.ending_mut().error = Some(format!(
                "service '{}' reset the stream before answering: {chain}",
                open.service
            ));
            admitted.close().await;
            return;
        }
        Ok(Some(Err(e))) => {
            // Reached, but it refused or dropped the request before an
            // answer (a TLS alert, a connection closed early).
            let chain = error_chain(&e);
            debug!(service = %open.service, url = %upstream.base, error = %chain, "upstream failed before answering");
            let reason = format!(
                "service '{}' refused or dropped the request before answering: {chain}",
                open.service
            );
            let err = CallError::UpstreamUnavailable { reason };
            return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
        }
        Err(_) => {
            let err = CallError::UpstreamTimeout {
                reason: format!(
                    "service '{}' sent no response within {:?}",
                    open.service, limits.response_timeout
                ),
            };
            return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
        }
    };
    admitted.mark(Step::Service);
    let (parts, body) = resp.into_parts();
    let ending = admitted.ending_mut();
    ending.http_status = Some(parts.status.as_u16());
    ending.grpc_status = parts
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let head = Frame::Response(Box::new(response_frame(&parts)));
    let mut body = AuditedBody::new(body, admitted);
    // A service's body failing without an HTTP/2 reason of its own (an
    // HTTP/1.1 connection cut mid-body, a dead h2c connection) is the
    // service failing, not a cancellation.
    let source_failed = wire::codes::stream::UPSTREAM_RESET;
    let started = send_head(
        &mut send,
        std::slice::from_ref(&head),
        &mut body,
        &limits.wire,
        source_failed,
    )
    .await;
    if started.is_ok() {
        body.mark(Step::ResponseSent);
    }
    match started {
        Err(e) => {
            debug!(error = %e, "could not send response head");
            body.fail(format!("could not send the response head: {e}"));
        }
        Ok(Started::Done(outcome)) => debug!(?outcome, "response body done with its head"),
        Ok(Started::Finished { bytes }) => {
            // The call is over once the opener has all of the response
            // (see `SendGuard::finish_acked`); only this task waits.
            let outcome = match send.acked().await {
                Ok(()) => PumpOutcome::Done { bytes },
                Err(error) => PumpOutcome::ConnectionLost { error, bytes },
            };
            debug!(?outcome, "response body done with its head");
        }
        Ok(Started::Pump) => {
            let outcome = pump_body(body, &mut send, &limits.wire, source_failed).await;
            debug!(?outcome, "response body done");
        }
    }
}

/// Waits for the opener's AUDITED: its open record is durable too. Both
/// ends' records are then durable before the service sees anything; the
/// two were made durable at the same time (docs/protocol.md, "AUDITED").
/// `None`: the opener reset the stream instead (its record could not be
/// written, or its caller went away), sent something else, or sent
/// nothing in time; the stream's close record says which, and the
/// service is never contacted.
async fn opener_recorded(
    reader: &mut FrameReader,
    mut admitted: Admitted,
    limits: &Limits,
) -> Option<Admitted> {
    let error = match tokio::time::timeout(limits.handshake_timeout, reader.next()).await {
        Ok(Ok(Some(Frame::Audited))) => {
            admitted.mark(Step::PeerAudited);
            return Some(admitted);
        }
        Ok(Ok(Some(other))) => {
            reader.stop(wire::codes::stream::PROTOCOL);
            format!("the opener sent {} before AUDITED", other.frame_type())
        }
        Ok(Ok(None)) => "the opener finished the stream before AUDITED".to_string(),
        Ok(Err(e @ super::StreamError::Reset { .. })) => {
            format!("the opener reset the stream before its open record was durable ({e})")
        }
        Ok(Err(e)) => {
            reader.stop(e.code_for_peer());
            format!("bad frame where AUDITED was due: {e}")
        }
        Err(_) => {
            reader.stop(wire::codes::stream::TIMEOUT);
            format!(
                "no AUDITED from the opener within {:?}",
                limits.handshake_timeout
            )
        }
    };
    debug!(%error, "stream ended before the service was contacted");
    admitted.ending_mut().error = Some(error);
    admitted.close().await;
    None
}

/// Connects to a TCP service, confirms with RESPONSE 200, then bridges
/// bytes both ways until each side has closed.
async fn serve_tcp(
    open: &Open,
    reader: FrameReader,
    mut send: SendGuard,
    upstream: &Upstream,
    limits: &Limits,
    mut admitted: Admitted,
) {
    let tcp = match upstream
        .connect_tcp(limits.connect_timeout, &admitted)
        .await
    {
        Ok(tcp) => {
            admitted.mark(Step::Service);
            tcp
        }
        Err(e) => {
            debug!(service = %open.service, url = %upstream.base, error = %e, "TCP connect failed");
            let err = CallError::UpstreamUnavailable {
                reason: format!("TCP service '{}' is unreachable: {e}", open.service),
            };
            return send_refusal(send, admitted.refuse(err).await, &limits.wire).await;
        }
    };
    let head = Frame::Response(Box::new(crate::wire::Response {
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
    }));
    if let Err(e) = write_frame(send.stream(), &head, &limits.wire).await {
        admitted.ending_mut().error = Some(format!("could not confirm the connection: {e}"));
        admitted.close().await;
        return;
    }
    admitted.mark(Step::ResponseSent);
    let mut tcp = tcp;
    let stream = TunnelStream { reader, send };
    let outcome = super::tcp::bridge(
        &mut tcp,
        stream,
        &limits.wire,
        &mut admitted,
        Socket::Service,
    )
    .await;
    if outcome.reset_local {
        // Pass the reset on: the service sees RST, not a clean close.
        let _ = tcp.set_zero_linger();
    }
    admitted.ending_mut().http_status = Some(200);
    admitted.ending_mut().error = outcome.error;
    admitted.mark(Step::Finished);
    admitted.close().await;
}

/// True when the service itself reset the HTTP/2 stream (RST_STREAM),
/// as opposed to a connection that failed or closed.
fn service_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return h2e.is_reset() && h2e.is_remote();
        }
        cur = err.source();
    }
    false
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
