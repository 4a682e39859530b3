//! The sidecar's local egress proxy: data-plane workloads reach named
//! control-plane upstreams through the tunnel's one outbound connection.
//!
//! Accepted on each listener (HTTP/1.1 and h2c on one port):
//! - absolute-form requests, as any client configured with `HTTP_PROXY`
//!   sends them (`GET http://<upstream>/path`);
//! - origin-form requests with `Host: <upstream>`;
//! - HTTP/2 cleartext (gRPC clients dialing the listener with the
//!   upstream's name as authority).
//!
//! The upstream is named by the host; its port, if any, is ignored: the
//! edge maps names to addresses, a workload never picks one. Each call is
//! decided by the client's own egress policy and audited before it leaves,
//! then decided and audited again at the edge. When the client drains, the
//! listeners close and workload connections are closed gracefully; calls
//! still arriving on them are refused with `draining`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use proxy::admission::validate::{self, HostRule};
use proxy::admission::{Pending, PolicyOwner, Recording, Refusal, StreamFields};
use proxy::audit::Direction;
use proxy::forward::head::{is_grpc, request_id, trace_id};
use proxy::forward::open::{answer, grpc_timeout, open_call, open_tcp, Unanswered, Via};
use proxy::forward::tcp::Socket;
use proxy::forward::{BoxError, CallError, HttpBody};
use proxy::policy::Subject;
use tokio::net::TcpListener;
use tracing::{warn, Instrument};

use crate::Shared;

/// Accepts workload connections on one listener until the client drains.
pub async fn serve(listener: TcpListener, workload: Option<String>, shared: Arc<Shared>) {
    let workload: Option<Arc<str>> = workload.map(Arc::from);
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "egress accept failed"); continue; }
            },
            _ = shared.life.draining() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (conn_shared, workload) = (shared.clone(), workload.clone());
        let span = tracing::debug_span!("egress_conn", %remote);
        // A call: ends with the connection, gracefully once the client
        // drains, or when it closes.
        shared.life.spawn_call(
            async move {
                let shared = conn_shared;
                let limits = shared.config.limits;
                let life = shared.life.clone();
                let mut builder = auto::Builder::new(life.call_executor());
                builder
                    .http1()
                    .max_buf_size(limits.http_parser_header_bytes() as usize);
                builder
                    .http2()
                    .max_header_list_size(limits.http_parser_header_bytes())
                    .max_concurrent_streams(limits.max_streams);
                // Boxed: the handler's future is kilobytes and hyper moves
                // it into a task per request; a box is moved once.
                let svc =
                    service_fn(move |req| Box::pin(handle(req, workload.clone(), shared.clone())));
                // Upgrades: CONNECT hands the connection over to raw TCP.
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                proxy::lifecycle::serve_until_closed(conn, &life, "workload", |c| {
                    c.graceful_shutdown()
                })
                .await;
            }
            .instrument(span),
        );
    }
}

/// The upstream a request names: the host of its absolute-form target or
/// of its Host/:authority, without port.
fn upstream_name(parts: &http::request::Parts) -> Result<String, CallError> {
    let host = validate::authority(
        parts,
        "name an upstream: http://<upstream>/path (HTTP_PROXY) or Host: <upstream>",
        HostRule::TargetWins,
    )?;
    proxy::upstream::validate_name(&host).map_err(|e| CallError::BadRequest {
        reason: format!("'{host}' is not an upstream name ({e}); upstreams are names the edge defines, never addresses"),
    })?;
    Ok(host)
}

async fn handle<B>(
    req: Request<B>,
    workload: Option<Arc<str>>,
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
    let own = shared.config.identity.id.as_str();
    let connect = req.method() == Method::CONNECT;
    let target = if connect {
        "/".to_string()
    } else {
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string()
    };
    let fields = StreamFields {
        direction: Direction::Egress,
        stream_id,
        request_id: &rid,
        trace_id: trace.as_deref(),
        caller: own,
        tunnel: own,
        service: "",
        method: req.method().as_str(),
        path: &target,
        workload: workload.as_deref(),
    };
    let span = fields.span();
    let pending = Pending::new(&shared.audit, &shared.life, grpc && !connect, fields);
    if connect {
        return connect_tcp(req, workload.as_deref(), shared, pending)
            .instrument(span)
            .await;
    }
    let result = forward(req, workload.as_deref(), &shared, pending, &target)
        .instrument(span)
        .await;
    answer(result, grpc, h2_caller)
}

/// The client's egress admission, shared by HTTP and CONNECT: the
/// client's own egress policy decides (tunnel identity × workload ×
/// upstream × method/path), then the live connection is taken.
async fn admit(
    mut pending: Pending,
    method: &str,
    name: &str,
    path: &str,
    grpc: bool,
    workload: Option<&str>,
    shared: &Shared,
) -> Result<(Recording, quinn::Connection), Refusal> {
    pending.set_service(name);
    let own = shared.config.identity.id.as_str();
    let subject = Subject {
        caller: own,
        tunnel: own,
        service: name,
        method,
        path,
        grpc,
        workload,
    };
    let mut admitted = pending
        .decide_early(
            &shared.config.egress_policy,
            &subject,
            PolicyOwner::TunnelEgress,
        )
        .await?;
    match shared.pool.pick() {
        Some(picked) => {
            let conn = picked.conn.clone();
            // Counted on that connection for the call's whole life.
            admitted.hold(picked);
            Ok((admitted, conn))
        }
        None => {
            let tunnel = shared.config.tunnel_name().to_string();
            Err(admitted.refuse(CallError::TunnelOffline { tunnel }).await)
        }
    }
}

/// `CONNECT <upstream>:<port>`: a raw TCP connection to a named TCP
/// upstream. 200 is answered once the edge has connected to it; the bytes
/// then flow both ways, with half-close and reset carried through.
async fn connect_tcp<B>(
    mut req: Request<B>,
    workload: Option<&str>,
    shared: Arc<Shared>,
    pending: Pending,
) -> Result<Response<HttpBody>, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let h2_caller = req.version() == http::Version::HTTP_2;
    let upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let opened = async {
        let name = match upstream_name(&parts) {
            Ok(n) => n,
            Err(e) => return Err(Unanswered::Refused(pending.refuse(e).await)),
        };
        let (admitted, conn) = admit(pending, "CONNECT", &name, "/", false, workload, &shared)
            .await
            .map_err(Unanswered::Refused)?;
        let via = Via {
            peer: "edge",
            deadline: None,
        };
        open_tcp(&conn, via, &shared.config.limits, admitted).await
    }
    .await;
    let (stream, mut admitted) = match opened {
        Ok(s) => s,
        Err(e) => return answer(Err(e), false, h2_caller),
    };
    let limits = shared.config.limits;
    // A call of its own once upgraded: ends when both directions have, or
    // when the client closes (closing the tunnel resets the stream).
    shared.life.spawn_call(
        async move {
            let io = match upgrade.await {
                Ok(io) => io,
                Err(e) => {
                    // Dropping the stream resets it as cancelled.
                    drop(stream);
                    admitted.ending_mut().error =
                        Some(format!("the workload left before the tunnel was up: {e}"));
                    admitted.close().await;
                    return;
                }
            };
            let outcome = proxy::forward::tcp::bridge(
                TokioIo::new(io),
                stream,
                &limits.wire,
                &mut admitted,
                Socket::Caller,
            )
            .await;
            admitted.ending_mut().http_status = Some(200);
            admitted.ending_mut().error = outcome.error;
            admitted.close().await;
        }
        .in_current_span(),
    );
    let mut resp = Response::new(http_body_util::BodyExt::boxed_unsync(
        http_body_util::Empty::new().map_err(|never| match never {}),
    ));
    *resp.status_mut() = http::StatusCode::OK;
    Ok(resp)
}

async fn forward<B>(
    req: Request<B>,
    workload: Option<&str>,
    shared: &Shared,
    pending: Pending,
    target: &str,
) -> Result<Response<HttpBody>, Unanswered>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let (parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    let checked = validate::check_header_size(&parts, &shared.config.limits)
        .and_then(|()| upstream_name(&parts))
        .and_then(|name| Ok((validate::path(target, grpc)?, name)));
    let (path, name) = match checked {
        Ok(c) => c,
        Err(e) => return Err(Unanswered::Refused(pending.refuse(e).await)),
    };
    let method = parts.method.as_str();
    let (admitted, conn) = admit(pending, method, &name, path, grpc, workload, shared)
        .await
        .map_err(Unanswered::Refused)?;
    let via = Via {
        peer: "edge",
        deadline: grpc_timeout(&parts.headers),
    };
    open_call(&conn, &parts, body, via, &shared.config.limits, admitted).await
}
