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
//! then decided and audited again at the edge.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy::audit::stream::StreamAudit;
use proxy::audit::AuditEvent;
use proxy::forward::head::{is_grpc, request_authority, request_id, trace_id};
use proxy::forward::open::{grpc_timeout, open_call, open_tcp, respond, OpenFailure, Target};
use proxy::forward::{BoxError, CallError, HttpBody};
use proxy::policy::{canonical_path, Permit, Subject};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::Shared;

/// Accepts workload connections on one listener until cancelled.
pub async fn serve(
    listener: TcpListener,
    workload: Option<String>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let workload: Option<Arc<str>> = workload.map(Arc::from);
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "egress accept failed"); continue; }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (shared, cancel, workload) = (shared.clone(), cancel.clone(), workload.clone());
        let span = tracing::debug_span!("egress_conn", %remote);
        // Ends with the connection or when the client stops.
        tokio::spawn(
            async move {
                let limits = shared.config.limits;
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().max_buf_size(limits.max_http_header_bytes.max(8192) as usize);
                builder
                    .http2()
                    .max_header_list_size(limits.max_http_header_bytes)
                    .max_concurrent_streams(limits.max_streams);
                // Boxed: the handler's future is kilobytes and hyper moves
                // it into a task per request; a box is moved once.
                let svc = service_fn(move |req| Box::pin(handle(req, workload.clone(), shared.clone())));
                // Upgrades: CONNECT hands the connection over to raw TCP.
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                tokio::select! {
                    r = conn => if let Err(e) = r { debug!(error = %e, "workload connection ended with error") },
                    _ = cancel.cancelled() => {}
                }
            }
            .instrument(span),
        );
    }
}

/// The upstream a request names: the host of its absolute-form target or
/// of its Host/:authority, without port.
fn upstream_name(parts: &http::request::Parts) -> Result<String, CallError> {
    let authority = request_authority(parts).ok_or_else(|| CallError::BadRequest {
        reason: "name an upstream: http://<upstream>/path (HTTP_PROXY) or Host: <upstream>".into(),
    })?;
    let host =
        proxy::policy::canonical_authority(&authority).map_err(|e| CallError::BadRequest {
            reason: format!("authority: {e}"),
        })?;
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
    let own = shared.config.identity.id.to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let audit = StreamAudit::new(
        shared.audit.clone(),
        AuditEvent {
            direction: "egress".into(),
            stream_id: shared.next_stream.fetch_add(1, Ordering::Relaxed),
            request_id: rid.clone(),
            trace_id: trace_id(req.headers()),
            caller: own.clone(),
            tunnel: own,
            method: req.method().to_string(),
            path: target.chars().take(2048).collect(),
            labels: workload
                .as_deref()
                .map(|w| [("workload".to_string(), w.to_string())].into()),
            ..AuditEvent::default()
        },
    );
    let mut audit = audit;
    if req.method() == Method::CONNECT {
        return connect(req, workload.as_deref(), shared, &rid, audit).await;
    }
    let result = forward(req, workload.as_deref(), &shared, &rid, &mut audit).await;
    let result = result.map_err(|e| match e {
        // The edge says "unknown service": for a workload that is an unknown upstream.
        OpenFailure::Refused(CallError::UnknownService { service, .. }) => {
            OpenFailure::Refused(CallError::UnknownUpstream { name: service })
        }
        other => other,
    });
    respond(result, audit, grpc, h2_caller).await
}

/// Decides and audits an egress call; `Ok` carries the permit and the live
/// tunnel connection.
async fn admit(
    parts: &http::request::Parts,
    name: &str,
    path: &str,
    grpc: bool,
    workload: Option<&str>,
    shared: &Shared,
    audit: &mut StreamAudit,
) -> Result<(Permit, quinn::Connection), OpenFailure> {
    let own = shared.config.identity.id.as_str();
    let decision = proxy::policy::decide(
        &shared.config.egress_policy.current(),
        &Subject {
            caller: own,
            tunnel: own,
            service: name,
            method: parts.method.as_str(),
            path,
            grpc,
            workload,
        },
    );
    let permit = match Permit::from_decision(decision) {
        Ok(p) => p,
        Err(d) => {
            let reason = match &d.rule {
                Some(rule) => format!("this tunnel's egress rule '{rule}' denies this call"),
                None => {
                    "this tunnel's egress policy allows no such call (default deny)".to_string()
                }
            };
            let err = CallError::Denied { reason };
            let _ = audit
                .open(d.label(), d.rule.as_deref(), Some(err.to_string()))
                .await;
            return Err(err.into());
        }
    };
    // Durable before the first byte leaves, or nothing leaves.
    audit
        .open(
            permit.decision().label(),
            permit.decision().rule.as_deref(),
            None,
        )
        .await
        .map_err(|e| CallError::Unavailable {
            reason: format!(
                "the tunnel's audit log cannot be written ({e}); refusing to forward unaudited"
            ),
        })?;
    let Some(conn) = shared.connection() else {
        return Err(CallError::TunnelOffline {
            tunnel: shared.config.tunnel_name().to_string(),
        }
        .into());
    };
    Ok((permit, conn))
}

/// `CONNECT <upstream>:<port>`: a raw TCP connection to a named TCP
/// upstream. 200 is answered once the edge has connected to it; the bytes
/// then flow both ways, with half-close and reset carried through.
async fn connect<B>(
    mut req: Request<B>,
    workload: Option<&str>,
    shared: Arc<Shared>,
    rid: &str,
    mut audit: StreamAudit,
) -> Result<Response<HttpBody>, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let h2_caller = req.version() == http::Version::HTTP_2;
    let upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let opened = async {
        let name = upstream_name(&parts)?;
        audit.base_mut().service = name.clone();
        audit.base_mut().path = "/".into();
        let (permit, conn) =
            admit(&parts, &name, "/", false, workload, &shared, &mut audit).await?;
        let target = Target {
            service: &name,
            caller: workload.unwrap_or(""),
            request_id: rid,
            peer: "edge",
            deadline: None,
        };
        open_tcp(&conn, target, &shared.config.limits, &permit).await
    }
    .await
    .map_err(|e| match e {
        OpenFailure::Refused(CallError::UnknownService { service, .. }) => {
            OpenFailure::Refused(CallError::UnknownUpstream { name: service })
        }
        other => other,
    });
    let (reader, mut send) = match opened {
        Ok(s) => s,
        Err(e) => return respond(Err(e), audit, false, h2_caller).await,
    };
    let limits = shared.config.limits;
    // Owned by the upgraded connection: ends when both directions have.
    tokio::spawn(
        async move {
            let io = match upgrade.await {
                Ok(io) => io,
                Err(e) => {
                    send.reset(proxy::wire::codes::stream::CANCELLED);
                    audit.ending_mut().error =
                        Some(format!("the workload left before the tunnel was up: {e}"));
                    audit.close().await;
                    return;
                }
            };
            let (to_stream, from_stream) = (Default::default(), Default::default());
            audit.count_in(Arc::clone(&to_stream));
            audit.count_out(Arc::clone(&from_stream));
            let outcome = proxy::forward::tcp::bridge(
                TokioIo::new(io),
                reader,
                &mut send,
                &limits.wire,
                to_stream,
                from_stream,
            )
            .await;
            audit.ending_mut().http_status = Some(200);
            audit.ending_mut().error = outcome.error;
            audit.close().await;
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
    rid: &str,
    audit: &mut StreamAudit,
) -> Result<Response<HttpBody>, OpenFailure>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let (parts, body) = req.into_parts();
    if parts.method == Method::CONNECT {
        return Err(CallError::BadRequest {
            reason:
                "CONNECT (raw TCP egress) is not available on this client yet; use HTTP or gRPC"
                    .into(),
        }
        .into());
    }
    let name = upstream_name(&parts)?;
    audit.base_mut().service = name.clone();
    let grpc = is_grpc(&parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = canonical_path(target, grpc).map_err(|e| CallError::BadRequest {
        reason: format!("{e}; send the path in canonical form"),
    })?;
    let (permit, conn) = admit(&parts, &name, path, grpc, workload, shared, audit).await?;
    let target = Target {
        service: &name,
        caller: workload.unwrap_or(""),
        request_id: rid,
        peer: "edge",
        deadline: grpc_timeout(&parts.headers),
    };
    open_call(
        &conn,
        &parts,
        body,
        target,
        &shared.config.limits,
        audit,
        &permit,
    )
    .await
}
