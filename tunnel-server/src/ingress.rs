//! The listeners control-plane callers use: mTLS (HTTP/1.1 and HTTP/2 on one
//! port, negotiated by ALPN) and, for development only, plaintext on
//! loopback with a configured caller identity. When the edge drains, the
//! listeners close and each connection is closed gracefully (HTTP/2 GOAWAY;
//! HTTP/1.1 after the response in flight); every caller connection is one
//! of the calls the drain waits for. A caller whose identity or
//! certificate is revoked, or whose certificate expires, is cut off with
//! every call on its connection.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use proxy::revocation::{guard, Peer};
use proxy::tls::{tls_peer_facts, tls_peer_id};
use proxy::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{warn, Instrument};

use crate::Shared;

/// Serves HTTP on one accepted connection with `caller` as the identity of
/// every request on it.
async fn serve_http<IO>(io: IO, caller: SpiffeId, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.config.limits;
    let life = shared.life.clone();
    let mut builder = auto::Builder::new(life.call_executor());
    builder
        .http1()
        .max_buf_size(limits.http_parser_header_bytes() as usize);
    builder
        .http2()
        .max_header_list_size(limits.http_parser_header_bytes())
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(limits.stream_window)
        .initial_connection_window_size(limits.connection_window);
    // Boxed: hyper moves each request's future into a task of its own, and
    // the handler's future is kilobytes; a box is moved once.
    let svc =
        service_fn(move |req| Box::pin(crate::call::handle(req, caller.clone(), shared.clone())));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    proxy::lifecycle::serve_until_closed(conn, &life, "caller", |c| c.graceful_shutdown()).await;
}

/// [`serve_http`] for an authenticated caller, refused if it is revoked,
/// cut off (with every call on the connection) when a reloaded policy
/// revokes it or its certificate reaches `not_after`.
async fn serve_guarded<IO>(
    io: IO,
    caller: SpiffeId,
    serial: Option<&[u8]>,
    not_after: Option<std::time::SystemTime>,
    shared: Arc<Shared>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = Peer {
        identity: caller.as_str(),
        serial,
        kind: "caller",
        tunnel: "",
    };
    let session = match shared.sessions.admit(&peer) {
        Ok(s) => s,
        Err(reason) => {
            warn!(caller = %caller, %reason, "caller connection refused: revoked");
            return;
        }
    };
    let who = caller.clone();
    if let Err(cut) = guard(&session, not_after, serve_http(io, caller, shared)).await {
        warn!(caller = %who, reason = cut.as_str(), "caller connection closed");
    }
}

/// Accepts mTLS callers until the edge drains (the listener is closed
/// then). The TLS handshake runs in the connection's own task.
pub async fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "ingress accept failed"); continue; }
            },
            _ = shared.life.draining() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, conn_shared) = (acceptor.clone(), shared.clone());
        let span = tracing::debug_span!("caller_conn", %remote);
        shared.life.spawn_call(
            async move {
                let shared = conn_shared;
                let handshake = tokio::time::timeout(
                    shared.config.limits.handshake_timeout,
                    acceptor.accept(tcp),
                );
                let handshake = tokio::select! {
                    h = handshake => h,
                    _ = shared.life.closing() => return,
                };
                let tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        warn!(error = %e, "caller TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        warn!("caller TLS handshake timed out");
                        return;
                    }
                };
                let Some(caller) = tls_peer_id(tls.get_ref().1) else {
                    warn!("caller has no verified identity");
                    return;
                };
                let facts = tls_peer_facts(tls.get_ref().1);
                let serial = facts.as_ref().map(|f| f.serial.as_slice());
                let not_after = facts.as_ref().map(|f| f.not_after);
                serve_guarded(tls, caller, serial, not_after, shared).await;
            }
            .instrument(span),
        );
    }
}

/// Accepts plaintext callers on loopback until the edge drains,
/// attributing every call to the configured development identity.
pub async fn serve_plaintext(listener: TcpListener, caller: SpiffeId, shared: Arc<Shared>) {
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "plaintext accept failed"); continue; }
            },
            _ = shared.life.draining() => return,
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::debug_span!("caller_conn", %remote, plaintext = true);
        shared.life.spawn_call(
            serve_guarded(tcp, caller.clone(), None, None, shared.clone()).instrument(span),
        );
    }
}
