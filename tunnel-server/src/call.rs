//! Forwards one caller request over a tunnel: validate, route, admit
//! (`crate::admit` and `proxy::admission`), open a QUIC stream, send OPEN
//! and the body, and turn the answer back into an HTTP response whose body
//! streams from the tunnel.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use proxy::admission::validate::{self, HostRule};
use proxy::admission::{Pending, Refusal, StreamFields};
use proxy::audit::Direction;
use proxy::forward::head::{is_grpc, request_id, trace_id};
use proxy::forward::open::{answer, grpc_timeout, open_call, Unanswered, Via};
use proxy::forward::{BoxError, HttpBody};
use proxy::SpiffeId;
use tracing::Instrument;

use crate::admit::{admit, Ask};
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
    let pending = Pending::new(
        &shared.audit,
        &shared.life,
        grpc,
        StreamFields {
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
        },
    );
    let span = tracing::debug_span!("ingress", stream_id, request_id = %rid, caller = %caller);
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
    let (mut admitted, tunnel) = admit(pending, &ask, shared).await.map_err(refused)?;
    let via = Via {
        peer: &route.tunnel,
        deadline: grpc_timeout(&parts.headers),
    };
    let conn = tunnel.conn.clone();
    // In flight on this connection until the call's last byte.
    admitted.hold(tunnel);
    open_call(&conn, &parts, body, via, &shared.config.limits, admitted).await
}
