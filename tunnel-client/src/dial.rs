//! Dialing the edge and staying connected: QUIC handshake with mutual TLS,
//! HELLO/WELCOME registration, serving streams the edge opens, and redialing
//! with exponential backoff and full jitter when the connection is lost.
//! Once the client drains it dials no more: the live connection carries
//! the calls in flight (new streams from the edge are refused with
//! `draining`) until the client closes it with `GOING_AWAY`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use proxy::forward::FrameReader;
use proxy::tls::quic_peer_id;
use proxy::wire::codes::conn as conn_codes;
use proxy::wire::{self, Frame, GoAway, Hello, ServiceOffer, Welcome};
use proxy::SpiffeId;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use crate::Shared;

/// Where the tunnel stands, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Dialing or waiting to redial.
    Connecting,
    /// Registered with an edge.
    Connected {
        /// The edge's name from WELCOME.
        edge_id: String,
    },
    /// Stopped for good.
    Stopped,
}

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// DNS gave nothing usable.
    #[error("cannot resolve edge address {0}: {1}")]
    Resolve(String, String),
    /// QUIC or TLS failed.
    #[error("connecting to edge: {0}")]
    Connect(String),
    /// No handshake completed within this attempt's bound.
    #[error("connecting to edge: no handshake within {0:?}")]
    TimedOut(Duration),
    /// The edge refused registration and said why.
    #[error("edge refused registration: {0}")]
    Refused(String),
    /// The control stream broke.
    #[error("registration failed: {0}")]
    Protocol(String),
}

/// Full-jitter exponential backoff: each delay is uniform in
/// [0, min(max, initial × 2^attempt)], so many clients that lost the same
/// edge do not redial in lockstep.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let cap = initial
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=millis))
}

async fn resolve(address: &str) -> Result<SocketAddr, DialError> {
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| DialError::Resolve(address.to_string(), e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| DialError::Resolve(address.to_string(), "no addresses".into()))
}

/// Dials once and registers; returns the connection, the edge's identity
/// and its WELCOME. The QUIC handshake gets `handshake_bound`: a short
/// bound and a fresh attempt beat one long wait, because QUIC backs its
/// Initial retransmissions off exponentially (an edge back after 1.2 s is
/// heard from only at the 3 s retransmission).
pub async fn connect_once(
    endpoint: &quinn::Endpoint,
    client_cfg: &quinn::ClientConfig,
    shared: &Shared,
    handshake_bound: Duration,
) -> Result<(quinn::Connection, SpiffeId, Welcome, FrameReader), DialError> {
    let cfg = &shared.config;
    let addr = resolve(&cfg.edge_address).await?;
    let connecting = endpoint
        .connect_with(client_cfg.clone(), addr, &cfg.edge_server_name)
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(handshake_bound, connecting)
        .await
        .map_err(|_| DialError::TimedOut(handshake_bound))?
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let edge = quic_peer_id(&conn)
        .ok_or_else(|| DialError::Connect("edge has no verified identity".into()))?;
    let register = async {
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| DialError::Protocol(e.to_string()))?;
        let hello = Frame::Hello(Hello {
            version: wire::VERSION,
            services: cfg
                .services
                .keys()
                .map(|name| ServiceOffer { name: name.clone() })
                .collect(),
            labels: cfg
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        let mut buf = BytesMut::new();
        wire::encode(&hello, &cfg.limits.wire, &mut buf)
            .map_err(|e| DialError::Protocol(e.to_string()))?;
        send.write_all(&buf)
            .await
            .map_err(|e| DialError::Protocol(e.to_string()))?;
        // The client keeps its half of the control stream open for the
        // connection's life (dropping it would finish the stream).
        let mut reader = FrameReader::new(recv, cfg.limits.wire);
        match reader.next().await {
            Ok(Some(Frame::Welcome(w))) => Ok((w, reader, send)),
            Ok(Some(Frame::Error(e))) => Err(DialError::Refused(e.message)),
            Ok(Some(other)) => Err(DialError::Protocol(format!(
                "expected WELCOME, got {}",
                other.frame_type()
            ))),
            Ok(None) => Err(DialError::Protocol("edge closed the control stream".into())),
            Err(e) => Err(match conn.close_reason() {
                Some(reason) => DialError::Refused(reason.to_string()),
                None => DialError::Protocol(e.to_string()),
            }),
        }
    };
    let (welcome, reader, send) = tokio::time::timeout(cfg.limits.handshake_timeout, register)
        .await
        .map_err(|_| DialError::Protocol("registration timed out".into()))??;
    if welcome.version != wire::VERSION {
        conn.close(conn_codes::PROTOCOL, b"unsupported version");
        return Err(DialError::Protocol(format!(
            "edge speaks version {}",
            welcome.version
        )));
    }
    // Kept for the connection's life; dropping it would finish our half.
    shared.control_send.lock().await.replace(send);
    Ok((conn, edge, welcome, reader))
}

/// How serving a connection ended.
enum Served {
    /// The connection is gone (lost, reset or closed by the edge).
    Lost,
    /// The edge sent GOAWAY: it is draining. The connection keeps serving
    /// its calls in its own task; the caller dials a replacement now.
    EdgeGoingAway,
    /// The client is closing.
    Closing,
}

/// Accepts the streams the edge opens on `conn` and runs each call.
fn accept_call(
    bi: Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>,
    shared: &Arc<Shared>,
) -> Result<(), quinn::ConnectionError> {
    let (send, recv) = bi?;
    // A call: each stream ends on its own; the connection closing resets
    // it, so it cannot outlive the connection. Boxed first: the handler's
    // future is ~8.7 KiB, and tokio moves a spawned future by value
    // several times (callgrind: ~70 KiB of memcpy per call); a box moves
    // once.
    let handler = crate::serve::handle_stream(send, recv, shared.clone());
    shared.life.spawn_call(Box::pin(handler.in_current_span()));
    Ok(())
}

/// Tells the edge this client is draining: it routes new calls to the
/// tunnel's other connections.
async fn send_goaway(shared: &Shared) {
    let frame = Frame::GoAway(GoAway {
        reason: "tunnel client shutting down".into(),
    });
    let mut buf = BytesMut::new();
    if let Err(e) = wire::encode(&frame, &shared.config.limits.wire, &mut buf) {
        warn!(error = %e, "GOAWAY could not be encoded");
        return;
    }
    if let Some(send) = shared.control_send.lock().await.as_mut() {
        if let Err(e) = send.write_all(&buf).await {
            debug!(error = %e, "GOAWAY not sent: the control stream is gone");
        }
    }
}

/// Serves one registered connection until it closes, the edge goes away
/// or the client closes. When the client drains it sends GOAWAY.
async fn serve_connection(
    conn: &quinn::Connection,
    _edge: SpiffeId,
    mut control: FrameReader,
    shared: &Arc<Shared>,
) -> Served {
    let mut control_open = true;
    let mut goaway_sent = false;
    loop {
        tokio::select! {
            bi = conn.accept_bi() => {
                if let Err(e) = accept_call(bi, shared) {
                    warn!(error = %e, "tunnel connection lost");
                    return Served::Lost;
                }
            }
            frame = control.next(), if control_open => match frame {
                Ok(Some(Frame::GoAway(g))) => {
                    info!(reason = %g.reason, "edge is going away; dialing a replacement");
                    return Served::EdgeGoingAway;
                }
                Ok(Some(other)) => warn!(frame = %other.frame_type(), "ignoring unexpected control frame"),
                Ok(None) => control_open = false,
                Err(_) => control_open = false,
            },
            _ = shared.life.draining(), if !goaway_sent => {
                goaway_sent = true;
                send_goaway(shared).await;
            }
            _ = shared.life.closing() => {
                conn.close(conn_codes::GOING_AWAY, b"client shutting down");
                return Served::Closing;
            }
        }
    }
}

/// Keeps serving a connection whose edge is draining: the calls it opens
/// before it closes still run. Ends when the edge closes it or the client
/// closes.
async fn serve_going_away(conn: quinn::Connection, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            bi = conn.accept_bi() => {
                if accept_call(bi, &shared).is_err() {
                    debug!("draining edge closed its connection");
                    shared.forget_connection(&conn);
                    return;
                }
            }
            _ = shared.life.closing() => {
                conn.close(conn_codes::GOING_AWAY, b"client shutting down");
                return;
            }
        }
    }
}

/// How long each handshake attempt may take: `dial_timeout` at first,
/// doubled after every attempt that timed out (a slow path still gets
/// through), never above `handshake_timeout`.
pub fn next_handshake_bound(
    current: Duration,
    timed_out: bool,
    first: Duration,
    max: Duration,
) -> Duration {
    if timed_out {
        current.saturating_mul(2).min(max)
    } else {
        first.min(max)
    }
}

/// Keeps the tunnel up until the client drains: dial, serve, back off,
/// redial. The backoff's attempt count resets only after a connection
/// stayed up for `stable_after`, so an edge that accepts and drops at
/// once is not redialed in a tight loop. Then serves the live connection
/// (if any) until the client closes, closes the endpoint and waits until
/// the close has been sent.
pub async fn run(
    endpoint: quinn::Endpoint,
    client_cfg: quinn::ClientConfig,
    shared: Arc<Shared>,
    state: watch::Sender<TunnelState>,
) {
    let cfg = &shared.config;
    let life = &shared.life;
    let max_bound = cfg.limits.handshake_timeout;
    let mut attempt = 0u32;
    let mut bound = cfg.dial_timeout.min(max_bound);
    loop {
        if life.is_draining() {
            break;
        }
        let _ = state.send(TunnelState::Connecting);
        let dialed = tokio::select! {
            r = connect_once(&endpoint, &client_cfg, &shared, bound) => r,
            _ = life.draining() => break,
        };
        bound = next_handshake_bound(
            bound,
            matches!(dialed, Err(DialError::TimedOut(_))),
            cfg.dial_timeout,
            max_bound,
        );
        match dialed {
            Ok((conn, edge, welcome, control)) => {
                info!(edge = %welcome.edge_id, identity = %edge, tunnel = %cfg.identity.id, "tunnel connected");
                let since = tokio::time::Instant::now();
                // Usable for egress before anyone is told it is connected.
                shared.set_connection(Some(conn.clone()));
                let _ = state.send(TunnelState::Connected {
                    edge_id: welcome.edge_id.clone(),
                });
                let span = tracing::info_span!("edge_conn", edge = %welcome.edge_id);
                let served = serve_connection(&conn, edge, control, &shared)
                    .instrument(span.clone())
                    .await;
                shared.control_send.lock().await.take();
                if since.elapsed() >= cfg.stable_after {
                    attempt = 0;
                }
                if let Served::EdgeGoingAway = served {
                    // Make before break: the old connection keeps carrying
                    // its calls (and egress, until a replacement is
                    // registered) while the replacement is dialed at once.
                    life.spawn(serve_going_away(conn, shared.clone()).instrument(span));
                    continue;
                }
                shared.set_connection(None);
            }
            Err(e) => {
                warn!(error = %e, attempt, "could not connect to edge");
            }
        }
        let _ = state.send(TunnelState::Connecting);
        let delay = backoff_delay(attempt, cfg.initial_backoff, cfg.max_backoff);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = life.draining() => break,
        }
    }
    // Draining with no connection (or it was lost): nothing left to serve.
    life.closing().await;
    endpoint.close(conn_codes::GOING_AWAY, b"client shutting down");
    endpoint.wait_idle().await;
    let _ = state.send(TunnelState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let init = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..64 {
            let d = backoff_delay(attempt, init, max);
            assert!(d <= max);
            assert!(d <= init * 2u32.saturating_pow(attempt.min(20)));
        }
    }

    #[test]
    fn handshake_bound_doubles_on_timeouts_up_to_the_ceiling_and_resets_otherwise() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(10);
        let mut b = first;
        let mut seen = vec![];
        for _ in 0..6 {
            b = next_handshake_bound(b, true, first, max);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [2, 4, 8, 10, 10, 10]);
        assert_eq!(next_handshake_bound(b, false, first, max), first);
        // A dial_timeout above the ceiling is held to it.
        assert_eq!(
            next_handshake_bound(b, false, Duration::from_secs(60), max),
            max
        );
    }
}
