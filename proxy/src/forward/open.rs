//! The opening side of a stream, shared by the two places that carry a
//! caller's request into the tunnel: the edge for control-plane callers
//! (ingress) and the tunnel client for data-plane workloads (egress). The
//! caller has been routed, decided on and audited before this runs.

use std::time::Duration;

use bytes::Bytes;
use http::{request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tracing::{debug, Instrument};

use super::head::{content_length, open_for_request, response_for_frame};
use super::observe::Counted;
use super::{
    pump_body, send_head, write_frame, AbortOnDrop, BoxError, CallError, FrameReader, HttpBody,
    SendGuard, Started, StreamError, TunnelBody,
};
use crate::audit::stream::StreamAudit;
use crate::policy::Permit;
use crate::wire::{codes, Frame};
use crate::Limits;

/// Why a call through the tunnel did not produce a response.
#[derive(Debug)]
pub enum OpenFailure {
    /// Refused (by the far end or here) before a response: answer with a status.
    Refused(CallError),
    /// The far end reset the stream before its response head: reset the caller.
    Reset(StreamError),
}

impl From<CallError> for OpenFailure {
    fn from(e: CallError) -> Self {
        OpenFailure::Refused(e)
    }
}

/// What the opened stream is for.
pub struct Target<'a> {
    /// Service (ingress) or upstream (egress) name at the far end.
    pub service: &'a str,
    /// The caller as the far end should know it: a verified SPIFFE ID for
    /// ingress, the workload label for egress.
    pub caller: &'a str,
    /// The request id shared by both ends' logs.
    pub request_id: &'a str,
    /// Names the far end in messages (tunnel name, or "edge").
    pub peer: &'a str,
    /// A gRPC deadline: the response head is awaited this long instead of
    /// the configured response timeout.
    pub deadline: Option<Duration>,
}

/// Opens one stream on `conn`, sends OPEN and the body (concurrently with
/// reading the answer), and returns the response whose body streams from the
/// tunnel. The `Permit` proves the call was decided on and audited.
pub async fn open_call<B>(
    conn: &quinn::Connection,
    parts: &request::Parts,
    body: B,
    target: Target<'_>,
    limits: &Limits,
    audit: &mut StreamAudit,
    _permit: &Permit,
) -> Result<Response<HttpBody>, OpenFailure>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let span = tracing::debug_span!("call", request_id = %target.request_id, peer = %target.peer, service = %target.service);
    let (send, recv) = match tokio::time::timeout(limits.handshake_timeout, conn.open_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(CallError::TunnelFailure {
                reason: e.to_string(),
            }
            .into())
        }
        Err(_) => {
            return Err(CallError::Overloaded {
                reason: format!("the tunnel to '{}' has no free stream", target.peer),
            }
            .into())
        }
    };
    let mut send = SendGuard::new(send);
    let body_empty = body.is_end_stream();
    let open = open_for_request(
        parts,
        target.service,
        target.caller,
        target.request_id,
        body_empty,
    );
    let (mut body, bytes_in) = Counted::new(body);
    audit.count_in(bytes_in);
    // A caller's body failing means the caller gave up.
    let started = send_head(
        &mut send,
        &Frame::Open(Box::new(open)),
        &mut body,
        &limits.wire,
        codes::stream::CANCELLED,
    )
    .await;
    let pump = match started {
        Err(e) => {
            return Err(CallError::TunnelFailure {
                reason: e.to_string(),
            }
            .into())
        }
        Ok(Started::Done(outcome)) => {
            debug!(parent: &span, ?outcome, "request body done with its head");
            None
        }
        Ok(Started::Pump) => {
            let wire = limits.wire;
            let task = tokio::spawn(
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
    let head_timeout = target.deadline.unwrap_or(limits.response_timeout);
    let head = match tokio::time::timeout(head_timeout, reader.next()).await {
        Ok(head) => head,
        Err(_) => {
            reader.stop(codes::stream::TIMEOUT);
            return Err(CallError::UpstreamTimeout {
                reason: format!(
                    "no response from '{}' within {head_timeout:?}",
                    target.service
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
        other => Err(head_failure(other, &mut reader, &target, "a response")),
    }
}

/// Why a stream did not start: any answer other than RESPONSE where one
/// was awaited (`awaited` names it, for messages). A REFUSE becomes the far
/// end's refusal; another frame is a protocol violation, stopped with
/// PROTOCOL (docs/protocol.md) rather than the NO_ERROR of a plain drop; a
/// reset passes on; a malformed or oversized frame is stopped with the code
/// that tells the far end why.
fn head_failure(
    head: Result<Option<Frame>, StreamError>,
    reader: &mut FrameReader,
    target: &Target<'_>,
    awaited: &str,
) -> OpenFailure {
    match head {
        Ok(Some(Frame::Refuse(r))) => CallError::from_refuse(r, target.peer, target.service).into(),
        Ok(Some(other)) => {
            reader.stop(codes::stream::PROTOCOL);
            CallError::TunnelFailure {
                reason: format!("the far end sent {} before {awaited}", other.frame_type()),
            }
            .into()
        }
        Ok(None) => CallError::TunnelFailure {
            reason: format!("tunnel stream closed before {awaited}"),
        }
        .into(),
        Err(e @ StreamError::Reset { .. }) => OpenFailure::Reset(e),
        Err(e) => {
            reader.stop(e.code_for_peer());
            CallError::TunnelFailure {
                reason: e.to_string(),
            }
            .into()
        }
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

/// Turns the outcome of a call into what the caller receives, and closes
/// the call's audit trail accordingly: a response streams on (its close
/// record is written when its body ends); a refusal becomes a status (and
/// is audited even when refused before any decision); a reset before the
/// response head resets an HTTP/2 caller with the same reason (`Err`) and
/// answers an HTTP/1.1 caller with 502.
pub async fn respond(
    result: Result<Response<HttpBody>, OpenFailure>,
    mut audit: StreamAudit,
    grpc: bool,
    h2_caller: bool,
) -> Result<Response<HttpBody>, BoxError> {
    match result {
        Ok(resp) => {
            let ending = audit.ending_mut();
            ending.http_status = Some(resp.status().as_u16());
            ending.grpc_status = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            Ok(resp.map(|body| super::observe::AuditedBody::new(body, audit).boxed_unsync()))
        }
        Err(OpenFailure::Refused(e)) => {
            debug!(error = %e, code = e.code(), "call refused");
            if !audit.is_open() {
                let _ = audit.open("refuse", None, Some(e.code().to_string())).await;
            }
            let resp = e.to_response(grpc);
            let ending = audit.ending_mut();
            // The status of the outcome (a gRPC caller saw 200 carrying
            // grpc-status); both ends record the same value for one refusal.
            ending.http_status = Some(e.http_status().as_u16());
            ending.grpc_status = grpc.then(|| e.grpc_code());
            ending.error = Some(e.to_string());
            audit.close().await;
            Ok(resp)
        }
        Err(OpenFailure::Reset(e)) => {
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

/// Opens a raw TCP stream to `target.service` and waits until the far end
/// has connected to it (RESPONSE) or refused (REFUSE). The caller then
/// bridges bytes with [`super::tcp::bridge`].
pub async fn open_tcp(
    conn: &quinn::Connection,
    target: Target<'_>,
    limits: &Limits,
    _permit: &Permit,
) -> Result<(FrameReader, SendGuard), OpenFailure> {
    let (send, recv) = match tokio::time::timeout(limits.handshake_timeout, conn.open_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(CallError::TunnelFailure {
                reason: e.to_string(),
            }
            .into())
        }
        Err(_) => {
            return Err(CallError::Overloaded {
                reason: format!("the tunnel to '{}' has no free stream", target.peer),
            }
            .into())
        }
    };
    let mut send = SendGuard::new(send);
    let open = crate::wire::Open {
        kind: crate::wire::StreamKind::Tcp,
        service: target.service.to_string(),
        request_id: target.request_id.to_string(),
        caller: target.caller.to_string(),
        traceparent: None,
        method: http::Method::CONNECT,
        scheme: "tcp".into(),
        authority: target.service.to_string(),
        path: "/".into(),
        headers: http::HeaderMap::new(),
    };
    if let Err(e) = write_frame(send.stream(), &Frame::Open(Box::new(open)), &limits.wire).await {
        return Err(CallError::TunnelFailure {
            reason: e.to_string(),
        }
        .into());
    }
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
            return Err(CallError::UpstreamTimeout {
                reason: format!("'{}' did not accept the connection in time", target.service),
            }
            .into());
        }
    };
    match head {
        Ok(Some(Frame::Response(_))) => Ok((reader, send)),
        other => Err(head_failure(
            other,
            &mut reader,
            &target,
            "the connection was accepted",
        )),
    }
}
