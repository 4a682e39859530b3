//! Serves one stream the edge opened: read OPEN, decide, forward to the
//! local service, stream the response back.

use std::sync::Arc;

use bytes::BytesMut;
use http_body_util::BodyExt;
use proxy::forward::head::{content_length, is_grpc, request_for_open, response_frame};
use proxy::forward::headers::{client_cert_value, CLIENT_CERT_HEADER};
use proxy::forward::{pump_body, write_frame, CallError, FrameReader, SendGuard, TunnelBody};
use proxy::policy::{canonical_path, Decision, Subject};
use proxy::wire::{self, Frame, Open, StreamKind};
use proxy::SpiffeId;
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
pub fn decide(open: &Open, shared: &Shared) -> Result<Permit, CallError> {
    let caller = SpiffeId::parse(&open.caller).map_err(|e| CallError::BadRequest {
        reason: format!("caller identity: {e}"),
    })?;
    let grpc = is_grpc(&open.headers);
    let path = canonical_path(&open.path, grpc).map_err(|e| CallError::BadRequest {
        reason: format!("{e}; send the path in canonical form"),
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
        Err(CallError::Denied {
            reason: match &decision.rule {
                Some(rule) => format!("the tunnel's policy rule '{rule}' denies this call"),
                None => "the tunnel's policy allows no such call (default deny)".to_string(),
            },
        })
    }
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
    forward(*open, reader, send, shared, edge)
        .instrument(span)
        .await;
}

async fn forward(
    open: Open,
    reader: FrameReader,
    mut send: SendGuard,
    shared: Arc<Shared>,
    _edge: SpiffeId,
) {
    let limits = shared.config.limits;
    if open.kind != StreamKind::Http {
        let err = CallError::BadRequest {
            reason: "only HTTP streams are served by this client".into(),
        };
        return refuse(send, &err, &limits.wire).await;
    }
    let Some(upstream) = shared.upstreams.get(&open.service) else {
        let err = CallError::UnknownService {
            tunnel: shared.config.tunnel_name().to_string(),
            service: open.service.clone(),
        };
        return refuse(send, &err, &limits.wire).await;
    };
    let _permit: Permit = match decide(&open, &shared) {
        Ok(p) => p,
        Err(err) => {
            debug!(error = %err, "stream refused by the tunnel's policy");
            return refuse(send, &err, &limits.wire).await;
        }
    };
    let body = TunnelBody::new(reader, content_length(&open.headers));
    let mut req = match request_for_open(&open, &upstream.base, body) {
        Ok(r) => r,
        Err(err) => return refuse(send, &err, &limits.wire).await,
    };
    if let Some(v) = client_cert_value(shared.config.identity.id.as_str(), &open.caller) {
        req.headers_mut().insert(CLIENT_CERT_HEADER, v);
    }
    let resp = match tokio::time::timeout(limits.response_timeout, upstream.send(req)).await {
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
            return refuse(send, &err, &limits.wire).await;
        }
        Err(_) => {
            let err = CallError::UpstreamTimeout {
                reason: format!(
                    "service '{}' sent no response within {:?}",
                    open.service, limits.response_timeout
                ),
            };
            return refuse(send, &err, &limits.wire).await;
        }
    };
    let (parts, body) = resp.into_parts();
    let head = Frame::Response(Box::new(response_frame(&parts)));
    if let Err(e) = write_frame(send.stream(), &head, &limits.wire).await {
        debug!(error = %e, "could not send response head");
        return;
    }
    let outcome = pump_body(
        body.map_err(proxy::forward::BoxError::from),
        &mut send,
        &limits.wire,
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
