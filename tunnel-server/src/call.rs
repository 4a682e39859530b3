//! Forwards one caller request over a tunnel: validate, route, admit
//! (`crate::admit` and `proxy::admission`), open a QUIC stream, send OPEN
//! and the body, and turn the answer back into an HTTP response whose body
//! streams from the tunnel. A call whose whole request has arrived is
//! retried on another connection of the tunnel when its connection
//! refuses it as draining, or no stream can be opened on it: in both
//! cases nothing reached the service (docs/operations.md lists which
//! refusals are retried).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use proxy::admission::validate::{self, HostRule};
use proxy::admission::{Pending, Recording, Refusal, StreamFields};
use proxy::audit::Direction;
use proxy::forward::head::{is_grpc, request_id, trace_id};
use proxy::forward::open::{
    answer, attempt_call, grpc_timeout, open_call, Failed, Unanswered, Via,
};
use proxy::forward::replay::{prefetch, Prefetched};
use proxy::forward::{BoxError, HttpBody};
use proxy::SpiffeId;
use tracing::{debug, Instrument};

use crate::admit::{admit, Ask};
use crate::registry::Routed;
use crate::route::route_for_host;
use crate::Shared;

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
    let trace = trace_id(req.headers());
    let stream_id = shared.next_stream.fetch_add(1, Ordering::Relaxed);
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let fields = StreamFields {
        direction: Direction::Ingress,
        stream_id,
        request_id: &rid,
        trace_id: trace.as_deref(),
        caller: caller.as_str(),
        tunnel: "",
        service: "",
        method: req.method().as_str(),
        path: &target,
        workload: None,
    };
    let span = fields.span();
    let pending = Pending::new(&shared.audit, &shared.life, grpc, fields);
    let result = forward(req, pending, &caller, &shared, &target)
        .instrument(span)
        .await;
    answer(result, grpc, h2_caller)
}

async fn forward<B>(
    req: Request<B>,
    pending: Pending,
    caller: &SpiffeId,
    shared: &Shared,
    target: &str,
) -> Result<Response<HttpBody>, Unanswered>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let refused = |r: Refusal| Unanswered::Refused(r);
    let (parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    let checked = validate::check_header_size(&parts, &shared.config.limits)
        .and_then(|()| validate::authority(&parts, "request has no host", HostRule::MustAgree))
        .and_then(|host| route_for_host(&host, &shared.config.domain))
        .and_then(|route| Ok((validate::path(target, grpc)?, route)));
    let (path, route) = match checked {
        Ok(c) => c,
        Err(e) => return Err(refused(pending.refuse(e).await)),
    };
    let ask = Ask {
        caller,
        tunnel: &route.tunnel,
        service: &route.service,
        method: parts.method.as_str(),
        path,
        grpc,
    };
    let (mut recording, tunnel) = admit(pending, &ask, shared).await.map_err(refused)?;
    let via = Via {
        peer: &route.tunnel,
        deadline: grpc_timeout(&parts.headers),
    };
    let limits = &shared.config.limits;
    let replay = match prefetch(body, limits.retry_buffer_bytes as usize) {
        Prefetched::Complete(replay) if limits.retry_buffer_bytes > 0 => replay,
        Prefetched::Complete(replay) => {
            return once(tunnel, recording, &parts, replay, via, limits).await
        }
        Prefetched::Streaming(body) => {
            return once(tunnel, recording, &parts, body, via, limits).await
        }
    };
    // The whole request is here: a call the far end refuses as draining,
    // or that no stream could be opened for, goes to another connection
    // of the tunnel. Nothing had reached the service, and the call keeps
    // its one audit trail.
    let mut tunnel = tunnel;
    // Allocated only when a call is retried.
    let mut tried = Vec::new();
    loop {
        let (conn, id) = (tunnel.conn.clone(), tunnel.id);
        // In flight on this connection until the call's last byte.
        recording.hold(tunnel);
        let attempt = attempt_call(&conn, &parts, replay.again(), via, limits, recording, true);
        let (back, error) = match attempt.await {
            Ok(resp) => return Ok(resp),
            Err(Failed::Final(u)) => return Err(u),
            Err(Failed::Retry(back, error)) => (back, error),
        };
        recording = Recording::from(*back);
        if error.code() == "draining" {
            // The client said so before its GOAWAY arrived.
            shared.registry.mark_draining(&route.tunnel, id);
        }
        tried.push(id);
        let next = (tried.len() < MAX_ATTEMPTS)
            .then(|| {
                shared
                    .registry
                    .lookup_other(&route.tunnel, &tried, &route.service)
            })
            .flatten();
        match next {
            Some(next) => {
                debug!(error = %error, attempt = tried.len() + 1, "retrying the call on another connection of the tunnel");
                tunnel = next;
            }
            None => return Err(Unanswered::Refused(recording.refuse(error).await)),
        }
    }
}

/// Attempts per call: the first connection and up to two others.
pub const MAX_ATTEMPTS: usize = 3;

/// Sends a call on `tunnel` once, with no retry.
async fn once<B>(
    tunnel: Routed,
    mut recording: Recording,
    parts: &http::request::Parts,
    body: B,
    via: Via<'_>,
    limits: &proxy::Limits,
) -> Result<Response<HttpBody>, Unanswered>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let conn = tunnel.conn.clone();
    // In flight on this connection until the call's last byte.
    recording.hold(tunnel);
    open_call(&conn, parts, body, via, limits, recording).await
}
