//! Raw TCP ingress: a TLS listener (client certificates required) whose
//! connections are carried to one tunnel's TCP service — SSH, PostgreSQL —
//! one QUIC stream per connection, decided and audited like any call, with
//! half-close and resets carried through. When the edge drains the
//! listener closes; connections already carried run on (they are calls)
//! until they end or the edge closes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proxy::admission::{Pending, StreamFields};
use proxy::audit::Direction;
use proxy::forward::open::{open_tcp, Unanswered, Via};
use proxy::forward::tcp::Socket;
use proxy::tls::tls_peer_id;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::admit::{admit, Ask};
use crate::config::TcpIngress;
use crate::Shared;

/// Accepts TCP callers on one listener until the edge drains.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    route: TcpIngress,
    shared: Arc<Shared>,
) {
    let route = Arc::new(route);
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "tcp ingress accept failed"); continue; }
            },
            _ = shared.life.draining() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, conn_shared, route) = (acceptor.clone(), shared.clone(), route.clone());
        let span = tracing::info_span!("tcp_conn", %remote, tunnel = %route.tunnel, service = %route.service, stream_id = tracing::field::Empty);
        // A call: ends with the connection or when the edge closes.
        shared.life.spawn_call(
            async move {
                let shared = conn_shared;
                tokio::select! {
                    _ = connection(tcp, acceptor, &route, &shared) => {}
                    _ = shared.life.closing() => {}
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
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
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
    let facts = proxy::tls::tls_peer_facts(tls.get_ref().1);
    let session = match shared.sessions.admit(&proxy::revocation::Peer {
        identity: caller.as_str(),
        serial: facts.as_ref().map(|f| f.serial.as_slice()),
        kind: "caller",
        tunnel: "",
    }) {
        Ok(s) => s,
        Err(reason) => {
            warn!(caller = %caller, %reason, "tcp caller refused: revoked");
            return;
        }
    };
    let not_after = facts.map(|f| f.not_after);
    let served =
        proxy::revocation::guard(&session, not_after, forward(tls, &caller, route, shared)).await;
    if let Err(cut) = served {
        warn!(caller = %caller, reason = cut.as_str(), "tcp connection closed");
    }
}

/// The life of one authenticated raw TCP connection: admitted, bridged
/// to the tunnel, closed.
async fn forward(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    caller: &proxy::SpiffeId,
    route: &TcpIngress,
    shared: &Arc<Shared>,
) {
    let limits = shared.config.limits;
    let rid = format!("{:032x}", rand::random::<u128>());
    let stream_id = shared.next_stream.fetch_add(1, Ordering::Relaxed);
    tracing::Span::current().record("stream_id", stream_id);
    let pending = Pending::new(
        &shared.audit,
        &shared.life,
        false,
        StreamFields {
            direction: Direction::Ingress,
            stream_id,
            request_id: &rid,
            trace_id: None,
            caller: caller.as_str(),
            tunnel: "",
            service: &route.service,
            method: "CONNECT",
            path: "/",
            workload: None,
        },
    );
    let ask = Ask {
        caller,
        tunnel: &route.tunnel,
        service: &route.service,
        method: "CONNECT",
        path: "/",
        grpc: false,
    };
    let opened = match admit(pending, &ask, shared).await {
        Ok((mut admitted, tunnel)) => {
            let via = Via {
                peer: &route.tunnel,
                deadline: None,
            };
            let conn = tunnel.conn.clone();
            // In flight on this connection until the bridge ends.
            admitted.hold(tunnel);
            open_tcp(&conn, via, &limits, admitted).await
        }
        Err(refusal) => Err(Unanswered::Refused(refusal)),
    };
    let (stream, mut admitted) = match opened {
        Ok(s) => s,
        Err(Unanswered::Refused(r)) => {
            info!(caller = %caller, error = %r.error(), "tcp connection refused");
            return;
        }
        Err(Unanswered::Reset(e)) => {
            info!(caller = %caller, error = %e, "tcp connection reset by the tunnel");
            return;
        }
    };
    let outcome = proxy::forward::tcp::bridge(
        &mut tls,
        stream,
        &limits.wire,
        &mut admitted,
        Socket::Caller,
    )
    .await;
    if outcome.reset_local {
        let _ = tls.get_ref().0.set_zero_linger();
    }
    debug!(?outcome, "tcp connection done");
    admitted.ending_mut().http_status = Some(200);
    admitted.ending_mut().error = outcome.error;
    admitted.close().await;
}
