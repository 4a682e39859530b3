//! The listeners control-plane callers use: mTLS (HTTP/1.1 and HTTP/2 on one
//! port, negotiated by ALPN) and, for development only, plaintext on
//! loopback with a configured caller identity.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy::tls::tls_peer_id;
use proxy::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::Shared;

/// Serves HTTP on one accepted connection with `caller` as the identity of
/// every request on it.
async fn serve_http<IO>(io: IO, caller: SpiffeId, shared: Arc<Shared>, cancel: CancellationToken)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.config.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
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
    tokio::select! {
        r = conn => if let Err(e) = r { debug!(error = %e, "caller connection ended with error") },
        _ = cancel.cancelled() => {}
    }
}

/// Accepts mTLS callers until cancelled. The TLS handshake runs in the
/// connection's own task.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "ingress accept failed"); continue; }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, shared, cancel) = (acceptor.clone(), shared.clone(), cancel.clone());
        let span = tracing::debug_span!("caller_conn", %remote);
        // Ends with the connection or when the edge is cancelled.
        tokio::spawn(
            async move {
                let handshake = tokio::time::timeout(
                    shared.config.limits.handshake_timeout,
                    acceptor.accept(tcp),
                );
                let tls = match handshake.await {
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
                serve_http(tls, caller, shared, cancel).await;
            }
            .instrument(span),
        );
    }
}

/// Accepts plaintext callers on loopback, attributing every call to the
/// configured development identity.
pub async fn serve_plaintext(
    listener: TcpListener,
    caller: SpiffeId,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "plaintext accept failed"); continue; }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::debug_span!("caller_conn", %remote, plaintext = true);
        tokio::spawn(
            serve_http(tcp, caller.clone(), shared.clone(), cancel.clone()).instrument(span),
        );
    }
}
