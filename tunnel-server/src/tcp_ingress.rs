//! Raw TCP ingress: a TLS listener (client certificates required) whose
//! connections are carried to one tunnel's TCP service — SSH, PostgreSQL —
//! one QUIC stream per connection, decided and audited like any call, with
//! half-close and resets carried through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proxy::audit::stream::StreamAudit;
use proxy::audit::AuditEvent;
use proxy::forward::open::{open_tcp, OpenFailure, Target};
use proxy::forward::CallError;
use proxy::tls::tls_peer_id;
use proxy::SpiffeId;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::call::{decide, CallTarget};
use crate::config::TcpIngress;
use crate::registry::Lookup;
use crate::Shared;

/// Accepts TCP callers on one listener until cancelled.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    route: TcpIngress,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let route = Arc::new(route);
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "tcp ingress accept failed"); continue; }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, shared, route, cancel) = (
            acceptor.clone(),
            shared.clone(),
            route.clone(),
            cancel.clone(),
        );
        let span = tracing::info_span!("tcp_conn", %remote, tunnel = %route.tunnel, service = %route.service);
        // Ends with the connection or when the edge stops.
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = connection(tcp, acceptor, &route, &shared) => {}
                    _ = cancel.cancelled() => {}
                }
            }
            .instrument(span),
        );
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    route: &TcpIngress,
    shared: &Arc<Shared>,
) {
    let limits = shared.config.limits;
    let mut tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            warn!(error = %e, "tcp caller TLS handshake refused");
            return;
        }
        Err(_) => {
            warn!("tcp caller TLS handshake timed out");
            return;
        }
    };
    let Some(caller) = tls_peer_id(tls.get_ref().1) else {
        warn!("tcp caller has no verified identity");
        return;
    };
    let rid = format!("{:032x}", rand::random::<u128>());
    let mut audit = StreamAudit::new(
        shared.audit.clone(),
        AuditEvent {
            direction: "ingress".into(),
            stream_id: shared.next_stream.fetch_add(1, Ordering::Relaxed),
            request_id: rid.clone(),
            caller: caller.to_string(),
            tunnel: route.tunnel.clone(),
            service: route.service.clone(),
            method: "CONNECT".into(),
            path: "/".into(),
            ..AuditEvent::default()
        },
    );
    let opened = open(route, &caller, shared, &rid, &mut audit).await;
    let (reader, mut send) = match opened {
        Ok(s) => s,
        Err(e) => {
            let msg = match &e {
                OpenFailure::Refused(e) => e.to_string(),
                OpenFailure::Reset(e) => e.to_string(),
            };
            info!(caller = %caller, error = %msg, "tcp connection refused");
            if !audit.is_open() {
                let code = match &e {
                    OpenFailure::Refused(e) => e.code(),
                    OpenFailure::Reset(_) => "tunnel-failure",
                };
                let _ = audit.open("refuse", None, Some(code.to_string())).await;
            }
            audit.ending_mut().error = Some(msg);
            audit.close().await;
            return;
        }
    };
    let (to_stream, from_stream) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    audit.count_in(to_stream.clone());
    audit.count_out(from_stream.clone());
    let outcome = proxy::forward::tcp::bridge(
        &mut tls,
        reader,
        &mut send,
        &limits.wire,
        to_stream,
        from_stream,
    )
    .await;
    if outcome.reset_local {
        let _ = tls.get_ref().0.set_zero_linger();
    }
    debug!(?outcome, "tcp connection done");
    audit.ending_mut().http_status = Some(200);
    audit.ending_mut().error = outcome.error;
    audit.close().await;
}

async fn open(
    route: &TcpIngress,
    caller: &SpiffeId,
    shared: &Shared,
    rid: &str,
    audit: &mut StreamAudit,
) -> Result<(proxy::forward::FrameReader, proxy::forward::SendGuard), OpenFailure> {
    let tunnel = match shared.registry.lookup(&route.tunnel) {
        Lookup::Live(t) => t,
        Lookup::Offline => {
            return Err(CallError::TunnelOffline {
                tunnel: route.tunnel.clone(),
            }
            .into())
        }
        Lookup::Unknown => {
            return Err(CallError::UnknownTunnel {
                tunnel: route.tunnel.clone(),
            }
            .into())
        }
    };
    if !tunnel.services.contains(&route.service) {
        return Err(CallError::UnknownService {
            tunnel: route.tunnel.clone(),
            service: route.service.clone(),
        }
        .into());
    }
    audit.base_mut().tunnel = tunnel.identity.to_string();
    let call = CallTarget {
        caller,
        tunnel: &tunnel.identity,
        service: &route.service,
        method: "CONNECT",
        path: "/",
        grpc: false,
    };
    let permit = match decide(&shared.config.policy, &call) {
        Ok(p) => p,
        Err((e, d)) => {
            let _ = audit
                .open(d.label(), d.rule.as_deref(), Some(e.to_string()))
                .await;
            return Err(e.into());
        }
    };
    audit
        .open(
            permit.decision().label(),
            permit.decision().rule.as_deref(),
            None,
        )
        .await
        .map_err(|e| CallError::Unavailable {
            reason: format!("audit log cannot be written ({e}); refusing to forward unaudited"),
        })?;
    let target = Target {
        service: &route.service,
        caller: caller.as_str(),
        request_id: rid,
        peer: &route.tunnel,
        deadline: None,
    };
    open_tcp(&tunnel.conn, target, &shared.config.limits, &permit).await
}
