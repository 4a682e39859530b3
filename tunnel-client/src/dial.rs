//! Dialing the edges and staying connected. Each dial slot keeps one
//! connection up (`crate::pool` holds them all): it picks an edge address,
//! completes the QUIC handshake with mutual TLS, claims the edge it
//! reached (closing the connection if the client already has enough
//! connections to that edge), registers with HELLO/WELCOME, serves the
//! streams the edge opens, and redials with exponential backoff and full
//! jitter when the connection is lost. Once the client drains it dials no
//! more: the live connections carry the calls in flight (new streams from
//! an edge are refused with `draining`) until it closes them with
//! `GOING_AWAY`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use proxy::forward::FrameReader;
use proxy::tls::quic_peer_id;
use proxy::wire::codes::conn as conn_codes;
use proxy::wire::{self, Frame, GoAway, Hello, ServiceOffer, Welcome};
use proxy::SpiffeId;
use tracing::{debug, info, warn, Instrument};

use crate::pool::{EdgeConn, Full, InFlight};
use crate::resolver::Candidate;
use crate::Shared;

/// Where the tunnel stands, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Dialing or waiting to redial.
    Connecting,
    /// Registered with at least one edge that is not draining.
    Connected {
        /// The name (from WELCOME) of the edge registered last.
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
    /// The edge refused registration for now (overloaded or draining) and
    /// said when to come back.
    #[error("edge refused registration: {message} (retry after {} ms)", retry_after.as_millis())]
    Deferred {
        /// The edge's reason.
        message: String,
        /// The edge's hint.
        retry_after: Duration,
    },
    /// The edge reached is one the client has enough connections to; the
    /// connection was closed before registering.
    #[error("edge {0} not used: {1}")]
    NotNeeded(SpiffeId, Full),
    /// The control stream broke.
    #[error("registration failed: {0}")]
    Protocol(String),
}

impl DialError {
    /// The outcome label of `tether_registrations_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            DialError::Resolve(..) => "resolve_failed",
            DialError::Connect(_) => "connect_failed",
            DialError::TimedOut(_) => "handshake_timeout",
            DialError::Refused(_) => "refused",
            DialError::Deferred { .. } => "deferred",
            DialError::NotNeeded(..) => "not_needed",
            DialError::Protocol(_) => "protocol_error",
        }
    }
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

/// The wait after a refusal that carried `retry_after`: at least the
/// hint, plus up to a quarter of it at random (clients refused together
/// by one edge come back spread out), at least the backoff step already
/// due, and never above `max` (an edge cannot park a client for longer
/// than its own backoff cap).
pub fn deferred_delay(retry_after: Duration, backoff: Duration, max: Duration) -> Duration {
    let spread = u64::try_from(retry_after.as_millis() / 4).unwrap_or(u64::MAX);
    let hinted = retry_after.saturating_add(Duration::from_millis(rand::random_range(0..=spread)));
    hinted.max(backoff).min(max)
}

/// A registered connection, before it joins the pool.
pub struct Dialed<'p> {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// The identity in the edge's certificate.
    pub edge: SpiffeId,
    /// The edge's answer to HELLO.
    pub welcome: Welcome,
    /// The edge's half of the control stream.
    pub control: FrameReader,
    /// Our half, kept open for the connection's life.
    pub control_send: quinn::SendStream,
    /// The claim on this edge, turned into the pool entry.
    pub claim: crate::pool::Reservation<'p>,
    /// The edge's registration among the client's authenticated
    /// connections: fires if a reloaded policy revokes the edge.
    pub session: proxy::revocation::Session,
    /// When the edge's certificate expires (the connection closes then).
    pub not_after: Option<std::time::SystemTime>,
}

/// Dials `to` once and registers. The QUIC handshake gets
/// `handshake_bound`: a short bound and a fresh attempt beat one long
/// wait, because QUIC backs its Initial retransmissions off exponentially
/// (an edge back after 1.2 s is heard from only at the 3 s
/// retransmission). Before HELLO the edge's identity is claimed in the
/// pool, so a connection the client does not need never registers (the
/// edge would route calls to it).
pub async fn connect_once<'p>(
    endpoint: &quinn::Endpoint,
    client_cfg: &quinn::ClientConfig,
    shared: &'p Shared,
    slot: usize,
    to: &Candidate,
    handshake_bound: Duration,
) -> Result<Dialed<'p>, DialError> {
    let cfg = &shared.config;
    let connecting = endpoint
        .connect_with(client_cfg.clone(), to.addr, &to.server_name)
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(handshake_bound, connecting)
        .await
        .map_err(|_| DialError::TimedOut(handshake_bound))?
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let edge = quic_peer_id(&conn)
        .ok_or_else(|| DialError::Connect("edge has no verified identity".into()))?;
    let facts = proxy::tls::quic_peer_facts(&conn);
    let session = shared
        .sessions
        .admit(&proxy::revocation::Peer {
            identity: edge.as_str(),
            serial: facts.as_ref().map(|f| f.serial.as_slice()),
            kind: "edge",
            tunnel: cfg.tunnel_name(),
        })
        .map_err(|reason| {
            conn.close(conn_codes::REVOKED, reason.as_bytes());
            DialError::Refused(format!("edge {edge} is revoked here: {reason}"))
        })?;
    let claim = match shared.pool.claim(slot, &edge, to.addr) {
        Ok(claim) => claim,
        Err(full) => {
            conn.close(conn_codes::NORMAL, b"already connected to this edge");
            return Err(DialError::NotNeeded(edge, full));
        }
    };
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
            Ok(Some(Frame::Error(e))) if e.retry_after_ms > 0 => Err(DialError::Deferred {
                message: e.message,
                retry_after: Duration::from_millis(e.retry_after_ms),
            }),
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
    let (welcome, control, control_send) =
        tokio::time::timeout(cfg.limits.handshake_timeout, register)
            .await
            .map_err(|_| DialError::Protocol("registration timed out".into()))??;
    if welcome.version != wire::VERSION {
        conn.close(conn_codes::PROTOCOL, b"unsupported version");
        return Err(DialError::Protocol(format!(
            "edge speaks version {}",
            welcome.version
        )));
    }
    Ok(Dialed {
        conn,
        edge,
        welcome,
        control,
        control_send,
        claim,
        session,
        not_after: facts.map(|f| f.not_after),
    })
}

/// How serving a connection ended.
enum Served {
    /// The connection is gone (lost, reset or closed by the edge).
    Lost,
    /// The edge sent GOAWAY: it is draining. The connection keeps serving
    /// its calls in its own task; the slot dials a replacement now.
    EdgeGoingAway,
    /// The client is closing.
    Closing,
}

/// Accepts one stream the edge opened on `entry` and runs its call,
/// counted as in flight on that connection.
fn accept_call(
    bi: Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>,
    entry: &Arc<EdgeConn>,
    shared: &Arc<Shared>,
) -> Result<(), quinn::ConnectionError> {
    let (send, recv) = bi?;
    // A call: each stream ends on its own; the connection closing resets
    // it, so it cannot outlive the connection. Boxed first: the handler's
    // future is ~8.7 KiB, and tokio moves a spawned future by value
    // several times (callgrind: ~70 KiB of memcpy per call); a box moves
    // once.
    let counted = InFlight::new(entry.clone());
    let handler = crate::serve::handle_stream(send, recv, shared.clone());
    shared.life.spawn_call(Box::pin(
        async move {
            let _counted = counted;
            handler.await
        }
        .in_current_span(),
    ));
    Ok(())
}

/// Tells the edge this client is draining: it routes new calls to the
/// tunnel's other connections.
async fn send_goaway(control_send: &mut quinn::SendStream, shared: &Shared) {
    let frame = Frame::GoAway(GoAway {
        reason: "tunnel client shutting down".into(),
    });
    let mut buf = BytesMut::new();
    if let Err(e) = wire::encode(&frame, &shared.config.limits.wire, &mut buf) {
        warn!(error = %e, "GOAWAY could not be encoded");
        return;
    }
    if let Err(e) = control_send.write_all(&buf).await {
        debug!(error = %e, "GOAWAY not sent: the control stream is gone");
    }
}

/// Serves one registered connection until it closes, the edge goes away
/// or the client closes. When the client drains it sends GOAWAY. Every
/// keepalive interval it notes whether the edge is still answering, so
/// new egress calls avoid a connection whose edge went silent.
async fn serve_connection(
    entry: &Arc<EdgeConn>,
    mut control: FrameReader,
    control_send: &mut quinn::SendStream,
    shared: &Arc<Shared>,
) -> Served {
    let conn = &entry.conn;
    let mut control_open = true;
    let mut goaway_sent = false;
    let mut tick = tokio::time::interval(shared.config.limits.keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            bi = conn.accept_bi() => {
                if let Err(e) = accept_call(bi, entry, shared) {
                    warn!(error = %e, "tunnel connection lost");
                    return Served::Lost;
                }
            }
            frame = control.next(), if control_open => match frame {
                Ok(Some(Frame::GoAway(g))) => {
                    info!(reason = %g.reason, "edge is going away; dialing a replacement");
                    shared.metrics.drain_events.with_label_values(&["goaway_received"]).inc();
                    return Served::EdgeGoingAway;
                }
                Ok(Some(other)) => warn!(frame = %other.frame_type(), "ignoring unexpected control frame"),
                Ok(None) => control_open = false,
                Err(_) => control_open = false,
            },
            _ = tick.tick() => {
                entry.liveness.observe_connection(conn);
                // Draining, an edge that stopped answering would hold its
                // calls (waiting for acknowledgements that never come)
                // until the idle timeout: closed once it has been silent
                // for the silence bound instead.
                let silent = entry.liveness.silent_for(std::time::Instant::now());
                if goaway_sent && silent > shared.pool.silence() {
                    warn!(silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX), "draining: the edge is silent; closing its connection instead of waiting for its calls");
                    conn.close(conn_codes::GOING_AWAY, b"client shutting down; edge silent");
                    return Served::Lost;
                }
            }
            _ = shared.life.draining(), if !goaway_sent => {
                goaway_sent = true;
                shared.metrics.drain_events.with_label_values(&["goaway_sent"]).inc();
                send_goaway(control_send, shared).await;
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
/// closes; then the connection leaves the pool.
async fn serve_going_away(
    entry: Arc<EdgeConn>,
    control_send: quinn::SendStream,
    shared: Arc<Shared>,
) {
    // Our half of the control stream stays open until the connection ends.
    let _control_send = control_send;
    loop {
        tokio::select! {
            bi = entry.conn.accept_bi() => {
                if accept_call(bi, &entry, &shared).is_err() {
                    debug!("draining edge closed its connection");
                    break;
                }
            }
            _ = shared.life.closing() => {
                entry.conn.close(conn_codes::GOING_AWAY, b"client shutting down");
                break;
            }
        }
    }
    shared.pool.remove(&entry);
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

/// Keeps every slot's connection up until the client drains, then waits
/// until each slot has closed its connection and endpoint.
pub async fn run(
    endpoints: Vec<quinn::Endpoint>,
    client_cfg: quinn::ClientConfig,
    shared: Arc<Shared>,
) {
    let slots = endpoints.into_iter().enumerate().map(|(slot, endpoint)| {
        let span = tracing::info_span!("slot", slot);
        run_slot(slot, endpoint, client_cfg.clone(), shared.clone()).instrument(span)
    });
    futures_util::future::join_all(slots).await;
    shared.pool.stopped();
}

/// Keeps one connection up until the client drains: choose an address,
/// dial, serve, back off, redial. The backoff's attempt count resets only
/// after a connection stayed up for `stable_after`, so an edge that
/// accepts and drops at once is not redialed in a tight loop. Then serves
/// the live connection (if any) until the client closes, closes the
/// endpoint and waits until the close has been sent.
async fn run_slot(
    slot: usize,
    endpoint: quinn::Endpoint,
    client_cfg: quinn::ClientConfig,
    shared: Arc<Shared>,
) {
    let cfg = &shared.config;
    let life = &shared.life;
    let pool = &shared.pool;
    let max_bound = cfg.limits.handshake_timeout;
    let mut attempt = 0u32;
    let mut turn = 0usize;
    let mut failed = false;
    let mut hint: Option<Duration> = None;
    let mut bound = cfg.dial_timeout.min(max_bound);
    loop {
        if life.is_draining() {
            break;
        }
        let dialed = async {
            let candidates = shared.resolver.candidates(failed).await?;
            let to = pool
                .choose(slot, turn, &candidates)
                .cloned()
                .ok_or_else(|| DialError::Resolve("edge".into(), "no addresses".into()))?;
            pool.dialing(slot, Some(to.addr));
            let r = connect_once(&endpoint, &client_cfg, &shared, slot, &to, bound).await;
            pool.dialing(slot, None);
            r.map(|d| (d, to))
        };
        shared.metrics.reconnect_attempts.inc();
        let dialed = tokio::select! {
            r = dialed => r,
            _ = life.draining() => break,
        };
        let outcome = match &dialed {
            Ok(_) => "registered",
            Err(e) => e.outcome(),
        };
        shared
            .metrics
            .registrations
            .with_label_values(&[outcome])
            .inc();
        bound = next_handshake_bound(
            bound,
            matches!(dialed, Err(DialError::TimedOut(_))),
            cfg.dial_timeout,
            max_bound,
        );
        match dialed {
            Ok((d, to)) => {
                failed = false;
                info!(edge = %d.welcome.edge_id, identity = %d.edge, address = %to.addr, tunnel = %cfg.identity.id, "tunnel connected");
                let since = tokio::time::Instant::now();
                let span = tracing::info_span!("edge_conn", edge = %d.welcome.edge_id);
                let Dialed {
                    conn,
                    edge,
                    welcome,
                    control,
                    mut control_send,
                    claim,
                    session,
                    not_after,
                } = d;
                pool.waiting(slot, None);
                // Usable for egress before anyone is told it is connected.
                let entry = pool.add(claim, conn, welcome.edge_id, edge, to.addr);
                let served = proxy::revocation::guard(
                    &session,
                    not_after,
                    serve_connection(&entry, control, &mut control_send, &shared),
                )
                .instrument(span.clone())
                .await;
                let served = served.unwrap_or_else(|cut| {
                    warn!(reason = cut.as_str(), "closing the edge connection");
                    let code = match cut {
                        proxy::revocation::Cut::Revoked => conn_codes::REVOKED,
                        proxy::revocation::Cut::Expired => conn_codes::EXPIRED,
                    };
                    entry.conn.close(code, cut.as_str().as_bytes());
                    Served::Lost
                });
                if since.elapsed() >= cfg.stable_after {
                    attempt = 0;
                }
                if let Served::EdgeGoingAway = served {
                    // Make before break: the old connection keeps carrying
                    // its calls while the replacement is dialed at once;
                    // new egress calls avoid it from now on.
                    pool.mark_draining(&entry);
                    pool.failed(slot, "the edge is draining".into());
                    turn = turn.wrapping_add(1);
                    life.spawn(
                        serve_going_away(entry, control_send, shared.clone()).instrument(span),
                    );
                    continue;
                }
                pool.remove(&entry);
                if let Served::Lost = served {
                    let why = entry
                        .conn
                        .close_reason()
                        .map_or_else(|| "connection lost".to_string(), |r| r.to_string());
                    pool.failed(slot, why);
                }
            }
            Err(DialError::NotNeeded(edge, full)) => {
                // Not a failure: this address leads to an edge the client
                // already uses. Try the next one after the backoff.
                debug!(%edge, reason = %full, attempt, "edge not used");
                pool.failed(slot, format!("edge {edge} not used: {full}"));
                turn = turn.wrapping_add(1);
            }
            Err(DialError::Deferred {
                message,
                retry_after,
            }) => {
                let e = DialError::Deferred {
                    message,
                    retry_after,
                };
                warn!(error = %e, attempt, "the edge deferred registration");
                pool.failed(slot, e.to_string());
                hint = Some(retry_after);
                turn = turn.wrapping_add(1);
            }
            Err(e) => {
                warn!(error = %e, attempt, "could not connect to edge");
                pool.failed(slot, e.to_string());
                failed = true;
                turn = turn.wrapping_add(1);
            }
        }
        let backoff = backoff_delay(attempt, cfg.initial_backoff, cfg.max_backoff);
        let delay = match hint.take() {
            Some(retry_after) => deferred_delay(retry_after, backoff, cfg.max_backoff),
            None => backoff,
        };
        attempt = attempt.saturating_add(1);
        pool.waiting(slot, Some(delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = life.draining() => break,
        }
    }
    // Draining with no connection in this slot: nothing left to serve.
    life.closing().await;
    endpoint.close(conn_codes::GOING_AWAY, b"client shutting down");
    endpoint.wait_idle().await;
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
    fn a_deferral_waits_at_least_the_hint_spread_by_a_quarter_and_capped() {
        let hint = Duration::from_secs(4);
        let max = Duration::from_secs(30);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = deferred_delay(hint, Duration::from_millis(100), max);
            assert!(d >= hint && d <= hint + hint / 4, "{d:?}");
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 10, "the waits are spread, not one value");
        // A longer backoff step already due wins; the cap wins over both.
        assert_eq!(
            deferred_delay(hint, Duration::from_secs(20), max),
            Duration::from_secs(20)
        );
        assert_eq!(
            deferred_delay(Duration::from_secs(120), Duration::ZERO, max),
            max
        );
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
