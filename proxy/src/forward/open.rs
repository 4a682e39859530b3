//! The opening side of a stream, shared by the two places that carry a
//! caller's request into the tunnel: the edge for control-plane callers
//! (ingress) and the tunnel client for data-plane workloads (egress). Every
//! entry point takes an [`Admitted`]: the caller has been decided on and
//! its open record is durable, and the stream goes exactly where the
//! permit says.

use std::time::Duration;

use bytes::Bytes;
use http::{request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tracing::{debug, Instrument};

use super::head::{content_length, open_for_request, response_for_frame};
use super::observe::{AuditedBody, Counted};
use super::tcp::TunnelStream;
use super::{
    pump_body, send_head, write_frame, write_frames, AbortOnDrop, BoxError, CallError, FrameReader,
    HttpBody, SendGuard, Started, StreamError, TunnelBody,
};
use crate::admission::{Admitted, Recording, Refusal};
use crate::audit::Direction;
use crate::probes::stages::Step;
use crate::wire::{codes, Frame, RefuseCode};
use crate::Limits;

/// Why a call through the tunnel did not produce a response. Both are
/// already audited (the stream's close record says why).
#[derive(Debug)]
pub enum Unanswered {
    /// Refused (by the far end or here) before a response: answer with its status.
    Refused(Refusal),
    /// The far end reset the stream before its response head: reset the caller.
    Reset(StreamError),
}

/// What the opening flow knows of the far end beyond what was decided.
#[derive(Debug, Clone, Copy)]
pub struct Via<'a> {
    /// Names the far end in messages (tunnel name, or "edge").
    pub peer: &'a str,
    /// A gRPC deadline: the response head is awaited this long instead of
    /// the configured response timeout.
    pub deadline: Option<Duration>,
}

/// The OPEN frame's caller field: the verified caller for ingress, the
/// workload label for egress (the far end knows the tunnel from its
/// certificate).
fn open_caller(recording: &Recording) -> String {
    match recording.direction() {
        Direction::Ingress => recording.permit().caller().to_string(),
        Direction::Egress => recording.permit().workload().unwrap_or("").to_string(),
    }
}

/// How sending OPEN went.
enum OpenSent {
    /// The open record is durable: send these frames (AUDITED, and OPEN
    /// itself if it has not gone yet), then the body.
    Ready(Admitted, Vec<Frame>),
    /// The stream failed under OPEN; nothing reached the far end's service.
    Lost(Admitted, CallError),
    /// The open record could not be written: refused, and the stream is
    /// reset so the far end never reaches its service.
    Unrecorded(Refusal),
}

/// Sends OPEN at once, even while the open record is still being made
/// durable (the far end decides and records meanwhile, so the two fsyncs
/// overlap), and AUDITED only once it is durable.
async fn send_open(
    send: &mut SendGuard,
    open: Frame,
    mut recording: Recording,
    limits: &Limits,
) -> OpenSent {
    if recording.is_durable() {
        return match recording.durable().await {
            Ok(a) => OpenSent::Ready(a, vec![open, Frame::Audited]),
            Err(refusal) => OpenSent::Unrecorded(refusal),
        };
    }
    let written = write_frame(send.stream(), &open, &limits.wire).await;
    recording.mark(Step::OpenSent);
    let admitted = match recording.durable().await {
        Ok(a) => a,
        Err(refusal) => {
            send.reset(codes::stream::INTERNAL);
            return OpenSent::Unrecorded(refusal);
        }
    };
    match written {
        Ok(()) => OpenSent::Ready(admitted, vec![Frame::Audited]),
        Err(e) => OpenSent::Lost(
            admitted,
            CallError::TunnelFailure {
                reason: e.to_string(),
            },
        ),
    }
}

/// Opens a stream on `conn` within the handshake timeout, or says why not.
async fn open_stream(
    conn: &quinn::Connection,
    via: &Via<'_>,
    limits: &Limits,
) -> Result<(quinn::SendStream, quinn::RecvStream), CallError> {
    match tokio::time::timeout(limits.handshake_timeout, conn.open_bi()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(CallError::TunnelFailure {
            reason: e.to_string(),
        }),
        Err(_) => Err(CallError::Overloaded {
            reason: format!("the tunnel to '{}' has no free stream", via.peer),
        }),
    }
}

/// Why one attempt of a call produced no response.
pub enum Failed {
    /// Final: already audited, answer the caller with it.
    Final(Unanswered),
    /// Nothing reached the service: no stream could be opened on the
    /// connection, or the far end refused the call with `draining` before
    /// reading it. The call may be sent again on another connection with
    /// the same `Admitted` (its audit trail is still open); if it is not,
    /// refuse it with the error.
    Retry(Box<Admitted>, CallError),
}

/// Opens one stream on `conn` to exactly the service `admitted` allows,
/// sends OPEN and the body (concurrently with reading the answer), and
/// returns the response whose body streams from the tunnel and owns the
/// stream's close record.
pub async fn open_call<B>(
    conn: &quinn::Connection,
    parts: &request::Parts,
    body: B,
    via: Via<'_>,
    limits: &Limits,
    recording: impl Into<Recording>,
) -> Result<Response<HttpBody>, Unanswered>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    match attempt_call(conn, parts, body, via, limits, recording, false).await {
        Ok(resp) => Ok(resp),
        Err(Failed::Final(u)) => Err(u),
        Err(Failed::Retry(admitted, e)) => Err(Unanswered::Refused(admitted.refuse(e).await)),
    }
}

/// [`open_call`] as one attempt: with `retryable`, a failure that left
/// the service untouched comes back as [`Failed::Retry`] instead of being
/// refused, so the caller can try another connection. Only a body the
/// caller can send again (`super::replay`) should be attempted so.
pub async fn attempt_call<B>(
    conn: &quinn::Connection,
    parts: &request::Parts,
    body: B,
    via: Via<'_>,
    limits: &Limits,
    recording: impl Into<Recording>,
    retryable: bool,
) -> Result<Response<HttpBody>, Failed>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let mut recording = recording.into();
    let fin = |u| Failed::Final(u);
    let span = tracing::debug_span!("call", stream_id = recording.stream_id(), request_id = %recording.request_id(), peer = %via.peer, service = %recording.permit().service());
    let (send, recv) = match open_stream(conn, &via, limits).await {
        Ok(s) => s,
        Err(e) if retryable => {
            return match recording.durable().await {
                Ok(admitted) => Err(Failed::Retry(Box::new(admitted), e)),
                Err(refusal) => Err(fin(Unanswered::Refused(refusal))),
            }
        }
        Err(e) => return Err(fin(Unanswered::Refused(recording.refuse(e).await))),
    };
    recording.mark(Step::Stream);
    let mut send = SendGuard::new(send);
    let open = open_for_request(
        parts,
        recording.permit().service(),
        &open_caller(&recording),
        recording.request_id(),
        body.is_end_stream(),
    );
    let (mut admitted, heads) =
        match send_open(&mut send, Frame::Open(Box::new(open)), recording, limits).await {
            OpenSent::Ready(admitted, heads) => (admitted, heads),
            OpenSent::Lost(admitted, e) if retryable => {
                return Err(Failed::Retry(Box::new(admitted), e))
            }
            OpenSent::Lost(admitted, e) => {
                return Err(fin(Unanswered::Refused(admitted.refuse(e).await)))
            }
            OpenSent::Unrecorded(refusal) => return Err(fin(Unanswered::Refused(refusal))),
        };
    let mut body = Counted::request(body, &mut admitted);
    // A caller's body failing means the caller gave up.
    let started = send_head(
        &mut send,
        &heads,
        &mut body,
        &limits.wire,
        codes::stream::CANCELLED,
    )
    .await;
    admitted.mark(Step::RequestSent);
    let pump = match started {
        // The far end stopped reading before it had the request (it
        // refused the call as soon as it had OPEN): its answer says why.
        Err(e) if peer_stopped(e.as_ref()) => None,
        Err(e) => {
            let e = CallError::TunnelFailure {
                reason: e.to_string(),
            };
            return Err(fin(Unanswered::Refused(admitted.refuse(e).await)));
        }
        Ok(Started::Done(outcome)) => {
            debug!(parent: &span, ?outcome, "request body done with its head");
            None
        }
        // The whole request went out and the stream is finished. Nobody
        // waits for its acknowledgement: the response comes no sooner for
        // it (before, waiting for it here was most of `request_sent`),
        // and quinn keeps retransmitting the finished stream until it is
        // acknowledged; a shutdown closes the connection only once this
        // call's response is over, and the far end answers after it had
        // the request.
        Ok(Started::Finished { bytes }) => {
            debug!(parent: &span, bytes, "request sent with its head");
            None
        }
        Ok(Started::Pump) => {
            let wire = limits.wire;
            // Owned by the response body (`tie`), or aborted with it; one
            // of the lifecycle's calls until then.
            let task = admitted.lifecycle().spawn_call(
                async move {
                    let outcome = pump_body(body, &mut send, &wire, codes::stream::CANCELLED).await;
                    debug!(?outcome, "request body done");
                }
                .instrument(span),
            );
            Some(AbortOnDrop(task))
        }
    };

    let mut reader = FrameReader::new(recv, limits.wire);
    let head_timeout = via.deadline.unwrap_or(limits.response_timeout);
    let head = match tokio::time::timeout(head_timeout, reader.next()).await {
        Ok(head) => head,
        Err(_) => {
            reader.stop(codes::stream::TIMEOUT);
            let e = CallError::UpstreamTimeout {
                reason: format!(
                    "no response from '{}' within {head_timeout:?}",
                    admitted.permit().service()
                ),
            };
            return Err(fin(Unanswered::Refused(admitted.refuse(e).await)));
        }
    };
    match head {
        Ok(Some(Frame::Response(resp))) => {
            admitted.mark(Step::Response);
            let mut body = TunnelBody::new(reader, content_length(&resp.headers));
            if let Some(pump) = pump {
                body = body.tie(pump);
            }
            let body = body.map_err(BoxError::from).boxed_unsync();
            let resp = response_for_frame(*resp, body);
            let ending = admitted.ending_mut();
            ending.http_status = Some(resp.status().as_u16());
            ending.grpc_status = grpc_status(resp.headers());
            Ok(resp.map(|body| AuditedBody::new(body, admitted).boxed_unsync()))
        }
        Ok(Some(Frame::Refuse(r))) if retryable && r.code == RefuseCode::Draining => {
            // The far end refused before reading: nothing reached the
            // service. The request body task, if any, stops with `pump`.
            drop(pump);
            let e = CallError::from_refuse(r, via.peer, admitted.permit().service());
            Err(Failed::Retry(Box::new(admitted), e))
        }
        other => Err(fin(head_failure(
            other,
            &mut reader,
            &via,
            admitted,
            "a response",
        )
        .await)),
    }
}

/// True when a write failed because the far end stopped the stream.
fn peer_stopped(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<quinn::WriteError>(),
        Some(quinn::WriteError::Stopped(_))
    )
}

/// The `grpc-status` of a trailers-only response, if any.
fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Why a stream did not start: any answer other than RESPONSE where one
/// was awaited (`awaited` names it, for messages). A REFUSE becomes the far
/// end's refusal; another frame is a protocol violation, stopped with
/// PROTOCOL (docs/protocol.md) rather than the NO_ERROR of a plain drop; a
/// reset passes on; a malformed or oversized frame is stopped with the code
/// that tells the far end why. Closes the stream's audit trail either way.
async fn head_failure(
    head: Result<Option<Frame>, StreamError>,
    reader: &mut FrameReader,
    via: &Via<'_>,
    mut admitted: Admitted,
    awaited: &str,
) -> Unanswered {
    let error = match head {
        Ok(Some(Frame::Refuse(r))) => {
            let e = CallError::from_refuse(r, via.peer, admitted.permit().service());
            match (admitted.direction(), e) {
                // The edge says "unknown service": for a workload that is
                // an unknown upstream.
                (Direction::Egress, CallError::UnknownService { service, .. }) => {
                    CallError::UnknownUpstream { name: service }
                }
                (_, e) => e,
            }
        }
        Ok(Some(other)) => {
            reader.stop(codes::stream::PROTOCOL);
            CallError::TunnelFailure {
                reason: format!("the far end sent {} before {awaited}", other.frame_type()),
            }
        }
        Ok(None) => CallError::TunnelFailure {
            reason: format!("tunnel stream closed before {awaited}"),
        },
        Err(e @ StreamError::Reset { .. }) => {
            admitted.ending_mut().error = Some(e.to_string());
            admitted.close().await;
            return Unanswered::Reset(e);
        }
        Err(e) => {
            reader.stop(e.code_for_peer());
            CallError::TunnelFailure {
                reason: e.to_string(),
            }
        }
    };
    Unanswered::Refused(admitted.refuse(error).await)
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

/// What the caller receives for the outcome of a call: a response streams
/// on; a refusal becomes its status; a reset before the response head
/// resets an HTTP/2 caller with the same reason (`Err`) and answers an
/// HTTP/1.1 caller with 502 (`upstream-reset` when the service reset it,
/// else `tunnel-failure`). Every outcome is already audited.
pub fn answer(
    result: Result<Response<HttpBody>, Unanswered>,
    grpc: bool,
    h2_caller: bool,
) -> Result<Response<HttpBody>, BoxError> {
    match result {
        Ok(resp) => Ok(resp),
        Err(Unanswered::Refused(refusal)) => {
            debug!(error = %refusal.error(), code = refusal.error().code(), "call refused");
            Ok(refusal.to_response())
        }
        Err(Unanswered::Reset(e)) if h2_caller => Err(Box::new(e)),
        Err(Unanswered::Reset(e)) => {
            let by_service = matches!(&e, StreamError::Reset { code, .. }
                if *code == codes::stream::UPSTREAM_RESET
                    || code.into_inner() >= u64::from(codes::stream::H2_REASON_BASE));
            let error = if by_service {
                CallError::UpstreamReset {
                    reason: format!("the service reset the stream before answering ({e})"),
                }
            } else {
                CallError::TunnelFailure {
                    reason: e.to_string(),
                }
            };
            Ok(error.to_response(grpc))
        }
    }
}

/// Opens a raw TCP stream to the service `admitted` allows and waits until
/// the far end has connected to it (RESPONSE) or refused (REFUSE). The
/// caller then bridges bytes with [`super::tcp::bridge`].
pub async fn open_tcp(
    conn: &quinn::Connection,
    via: Via<'_>,
    limits: &Limits,
    recording: impl Into<Recording>,
) -> Result<(TunnelStream, Admitted), Unanswered> {
    let mut recording = recording.into();
    let (send, recv) = match open_stream(conn, &via, limits).await {
        Ok(s) => s,
        Err(e) => return Err(Unanswered::Refused(recording.refuse(e).await)),
    };
    recording.mark(Step::Stream);
    let mut send = SendGuard::new(send);
    let service = recording.permit().service().to_string();
    let open = crate::wire::Open {
        kind: crate::wire::StreamKind::Tcp,
        service: service.clone(),
        request_id: recording.request_id().to_string(),
        caller: open_caller(&recording),
        traceparent: None,
        method: http::Method::CONNECT,
        scheme: "tcp".into(),
        authority: service.clone(),
        path: "/".into(),
        headers: http::HeaderMap::new(),
    };
    let admitted = match send_open(&mut send, Frame::Open(Box::new(open)), recording, limits).await
    {
        OpenSent::Ready(admitted, heads) => {
            let written = write_frames(send.stream(), &heads, &limits.wire).await;
            let mut admitted = admitted;
            admitted.mark(Step::RequestSent);
            if let Err(e) = written {
                let e = CallError::TunnelFailure {
                    reason: e.to_string(),
                };
                return Err(Unanswered::Refused(admitted.refuse(e).await));
            }
            admitted
        }
        OpenSent::Lost(admitted, e) => return Err(Unanswered::Refused(admitted.refuse(e).await)),
        OpenSent::Unrecorded(refusal) => return Err(Unanswered::Refused(refusal)),
    };
    let mut reader = FrameReader::new(recv, limits.wire);
    let head = match tokio::time::timeout(
        limits.connect_timeout + limits.handshake_timeout,
        reader.next(),
    )
    .await
    {
        Ok(head) => head,
        Err(_) => {
            reader.stop(codes::stream::TIMEOUT);
            let e = CallError::UpstreamTimeout {
                reason: format!("'{service}' did not accept the connection in time"),
            };
            return Err(Unanswered::Refused(admitted.refuse(e).await));
        }
    };
    match head {
        Ok(Some(Frame::Response(_))) => {
            let mut admitted = admitted;
            admitted.mark(Step::Response);
            Ok((TunnelStream { reader, send }, admitted))
        }
        other => Err(head_failure(
            other,
            &mut reader,
            &via,
            admitted,
            "the connection was accepted",
        )
        .await),
    }
}
