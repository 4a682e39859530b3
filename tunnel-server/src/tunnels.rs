//! The QUIC listener tunnel clients dial: handshake (identity verified by
//! TLS), registration on the control stream, and the connection's life in
//! the registry. Every handshake runs in its own task, never in the accept
//! loop, so one slow peer cannot stall the rest. While the edge drains,
//! new tunnel connections are refused, each registered client is sent
//! GOAWAY, and registered connections keep carrying the calls in flight;
//! when it closes, each is closed with `GOING_AWAY`. A connection whose
//! client certificate expires is closed with `EXPIRED` at `not_after`; one
//! whose identity or certificate a reloaded policy revokes, with `REVOKED`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::BytesMut;
use proxy::forward::{FrameReader, StreamError};
use proxy::revocation::{Cut, Peer};
use proxy::tls::quic_peer_id;
use proxy::wire::codes::conn as conn_codes;
use proxy::wire::{self, ControlError, Frame, PeerLimits, RefuseCode, Welcome};
use proxy::SpiffeId;
use tracing::{debug, info, warn, Instrument};

use crate::bounds::Held;
use crate::route::validate_label;
use crate::Shared;

/// Accepts connections until the edge closes (refusing them while it
/// drains), then closes the endpoint and waits until every connection's
/// close has been sent.
pub async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let life = &shared.life;
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = life.closing() => break,
        };
        let Some(incoming) = incoming else { break };
        if life.is_draining() {
            debug!(remote = %incoming.remote_address(), "edge draining: tunnel connection refused");
            count(&shared, "refused_draining");
            incoming.refuse();
            continue;
        }
        let remote = incoming.remote_address();
        let held = match shared.bounds.admit() {
            Ok(held) => held,
            Err(over) => {
                // Debug: under a flood this would be a line per packet.
                debug!(%remote, reason = over.as_str(), refused = shared.bounds.refused(), "tunnel connection refused");
                count(&shared, over.outcome());
                incoming.refuse();
                continue;
            }
        };
        let span = tracing::info_span!("tunnel_conn", %remote);
        life.spawn(handle_connection(incoming, held, shared.clone()).instrument(span));
    }
    endpoint.close(conn_codes::GOING_AWAY, b"edge shutting down");
    endpoint.wait_idle().await;
}

async fn handle_connection(
    incoming: quinn::Incoming,
    (_connection, in_progress): (Held, Held),
    shared: Arc<Shared>,
) {
    let limits = shared.config.limits;
    let handshake = tokio::select! {
        h = tokio::time::timeout(limits.handshake_timeout, incoming) => h,
        _ = shared.life.closing() => return,
    };
    let conn = match handshake {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            warn!(error = %e, "tunnel handshake refused");
            count(&shared, "handshake_failed");
            return;
        }
        Err(_) => {
            warn!("tunnel handshake timed out");
            count(&shared, "handshake_timeout");
            return;
        }
    };
    // The verifier only lets /tunnel/<name> identities through.
    let Some(identity) = quic_peer_id(&conn) else {
        warn!("tunnel connection without a verified identity; closing");
        count(&shared, "not_a_tunnel");
        conn.close(conn_codes::REFUSED, b"no verified identity");
        return;
    };
    let Some(name) = identity.name_of_kind("tunnel").map(str::to_string) else {
        count(&shared, "not_a_tunnel");
        conn.close(conn_codes::REFUSED, b"not a tunnel identity");
        return;
    };
    tracing::Span::current().record("tunnel", name.as_str());
    let facts = proxy::tls::quic_peer_facts(&conn);
    let session = match shared.sessions.admit(&Peer {
        identity: identity.as_str(),
        serial: facts.as_ref().map(|f| f.serial.as_slice()),
        kind: "tunnel",
        tunnel: &name,
    }) {
        Ok(s) => s,
        Err(reason) => {
            warn!(tunnel = %name, %reason, "tunnel connection refused: revoked");
            count(&shared, "revoked");
            conn.close(conn_codes::REVOKED, reason.as_bytes());
            return;
        }
    };
    let registration = tokio::select! {
        r = tokio::time::timeout(
            limits.handshake_timeout,
            register(&conn, &shared, &name, &identity),
        ) => r,
        _ = shared.life.closing() => {
            conn.close(conn_codes::GOING_AWAY, b"edge shutting down");
            return;
        }
    };
    // The edge's half of the control stream stays open for the life of the
    // connection (dropping it would finish the stream).
    let (reg_id, control, control_send) = match registration {
        Ok(Ok(r)) => {
            count(&shared, "registered");
            r
        }
        Ok(Err(_)) if closed_as_not_needed(&conn) => {
            // A client with enough connections to this edge already.
            debug!(tunnel = %name, "tunnel client closed before registering: it does not need this edge");
            count(&shared, "not_needed");
            return;
        }
        Ok(Err(reason)) => {
            warn!(tunnel = %name, %reason, "tunnel registration refused");
            count(&shared, "refused");
            conn.close(conn_codes::REFUSED, reason.as_bytes());
            return;
        }
        Err(_) => {
            warn!(tunnel = %name, "tunnel registration timed out");
            count(&shared, "registration_timeout");
            conn.close(conn_codes::REFUSED, b"registration timed out");
            return;
        }
    };
    // Registered: no longer one of the handshakes in progress.
    drop(in_progress);
    info!(tunnel = %name, identity = %identity, "tunnel registered");
    let registered = Registered {
        name: &name,
        id: reg_id,
        identity: &identity,
    };
    let served = proxy::revocation::guard(
        &session,
        facts.map(|f| f.not_after),
        serve_registered(&conn, control, control_send, &shared, registered),
    )
    .await;
    if let Err(cut) = served {
        warn!(tunnel = %name, reason = cut.as_str(), "closing the tunnel connection");
        let code = match cut {
            Cut::Revoked => conn_codes::REVOKED,
            Cut::Expired => conn_codes::EXPIRED,
        };
        conn.close(code, cut.as_str().as_bytes());
    }
    shared.registry.deregister(&name, reg_id);
    info!(tunnel = %name, reason = ?conn.close_reason(), "tunnel disconnected");
}

/// Whether the client closed the connection with `NORMAL` before HELLO:
/// it reached an edge it already has enough connections to.
fn closed_as_not_needed(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(ref c)) if c.error_code == conn_codes::NORMAL
    )
}

/// Reads HELLO, validates it, answers WELCOME (or ERROR) and registers.
async fn register(
    conn: &quinn::Connection,
    shared: &Shared,
    name: &str,
    identity: &SpiffeId,
) -> Result<(u64, FrameReader, quinn::SendStream), String> {
    let limits = shared.config.limits;
    let (mut send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(recv, limits.wire);
    let hello = match reader.next().await {
        Ok(Some(Frame::Hello(h))) => h,
        Ok(Some(other)) => return Err(format!("expected HELLO, got {}", other.frame_type())),
        Ok(None) => return Err("control stream closed before HELLO".into()),
        Err(e) => return Err(e.to_string()),
    };
    if hello.version != wire::VERSION {
        return refuse(
            &mut send,
            &limits.wire,
            RefuseCode::Unsupported,
            format!(
                "protocol version {} is not supported; this edge speaks {}",
                hello.version,
                wire::VERSION
            ),
            std::time::Duration::ZERO,
        )
        .await;
    }
    let mut services = HashSet::new();
    for offer in &hello.services {
        if let Err(e) = validate_label(&offer.name) {
            return refuse(
                &mut send,
                &limits.wire,
                RefuseCode::BadRequest,
                format!("service name '{}' {e}", offer.name),
                std::time::Duration::ZERO,
            )
            .await;
        }
        services.insert(offer.name.clone());
    }
    let retry_after = shared.config.registration_retry_after;
    if shared.life.is_draining() {
        // The handshake was in progress when the edge began to stop.
        return refuse(
            &mut send,
            &limits.wire,
            RefuseCode::Draining,
            "this edge is shutting down; dial another edge or retry after the hint".into(),
            retry_after,
        )
        .await;
    }
    let id = match shared.registry.register(
        name,
        conn.clone(),
        identity.clone(),
        services,
        shared.config.max_connections_per_tunnel,
    ) {
        Ok(id) => id,
        Err(held) => {
            return refuse(
                &mut send,
                &limits.wire,
                RefuseCode::Overloaded,
                format!(
                    "tunnel {name} already holds {held} connections at this edge \
                     ([tunnels] max_connections_per_tunnel); stop surplus replicas \
                     or raise the bound"
                ),
                retry_after,
            )
            .await;
        }
    };
    let welcome = Frame::Welcome(Welcome {
        version: wire::VERSION,
        edge_id: shared.config.edge_id.clone(),
        limits: PeerLimits {
            max_header_bytes: u32::try_from(limits.wire.max_header_bytes).unwrap_or(u32::MAX),
            max_data_frame: u32::try_from(limits.wire.max_data_frame).unwrap_or(u32::MAX),
            max_streams: shared.config.max_egress_streams,
        },
    });
    // Registered before WELCOME so the bound is checked and taken at once;
    // undone if WELCOME cannot be sent or the registration times out
    // while sending it (this future dropped).
    let undo = Unregister {
        registry: &shared.registry,
        name,
        id: Some(id),
    };
    let mut buf = BytesMut::new();
    wire::encode(&welcome, &limits.wire, &mut buf).map_err(|e| e.to_string())?;
    send.write_all(&buf).await.map_err(|e| e.to_string())?;
    undo.keep();
    debug!(services = ?hello.services.len(), labels = ?hello.labels, "hello accepted");
    Ok((id, reader, send))
}

/// Takes a registration back out of the registry when dropped, unless
/// kept: a registration whose WELCOME never went out must not be routed to.
struct Unregister<'a> {
    registry: &'a crate::registry::Registry,
    name: &'a str,
    id: Option<u64>,
}

impl Unregister<'_> {
    fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.registry.deregister(self.name, id);
        }
    }
}

/// Tells the client why registration failed before the connection closes
/// (with `retry_after` as its hint when the reason passes).
async fn refuse(
    send: &mut quinn::SendStream,
    limits: &wire::WireLimits,
    code: RefuseCode,
    message: String,
    retry_after: std::time::Duration,
) -> Result<(u64, FrameReader, quinn::SendStream), String> {
    let frame = Frame::Error(ControlError {
        code,
        message: message.clone(),
        retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
    });
    let mut buf = BytesMut::new();
    if wire::encode(&frame, limits, &mut buf).is_ok() {
        let _ = send.write_all(&buf).await;
        let _ = send.finish();
        // Let the ERROR reach the client before the connection closes; the
        // close reason repeats it in case this wait times out.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send.stopped()).await;
    }
    Err(message)
}

/// Counts one tunnel connection's registration outcome.
fn count(shared: &Shared, outcome: &'static str) {
    shared
        .metrics
        .registrations
        .with_label_values(&[outcome])
        .inc();
}

/// Which registration a connection is.
struct Registered<'a> {
    name: &'a str,
    id: u64,
    identity: &'a SpiffeId,
}

/// Sends GOAWAY on the edge's half of the control stream: the client stops
/// sending egress calls here and dials a replacement.
async fn send_goaway(send: &mut quinn::SendStream, limits: &wire::WireLimits) {
    let frame = Frame::GoAway(wire::GoAway {
        reason: "edge shutting down".into(),
    });
    let mut buf = BytesMut::new();
    match wire::encode(&frame, limits, &mut buf) {
        Ok(()) => {
            if let Err(e) = send.write_all(&buf).await {
                debug!(error = %e, "GOAWAY not sent: the control stream is gone");
            }
        }
        Err(e) => warn!(error = %e, "GOAWAY could not be encoded"),
    }
}

/// Keeps a registered connection until it closes or the edge closes.
/// Streams the client opens are its workloads' egress calls (refused with
/// `draining` by the admission path once the edge drains). When the edge
/// drains it sends GOAWAY; when the client sends GOAWAY, the registry
/// stops routing new calls to this connection.
async fn serve_registered(
    conn: &quinn::Connection,
    mut control: FrameReader,
    mut control_send: quinn::SendStream,
    shared: &Arc<Shared>,
    reg: Registered<'_>,
) {
    let identity = reg.identity;
    let mut control_open = true;
    let mut goaway_sent = false;
    loop {
        tokio::select! {
            _ = shared.life.draining(), if !goaway_sent => {
                goaway_sent = true;
                shared.metrics.drain_events.with_label_values(&["goaway_sent"]).inc();
                send_goaway(&mut control_send, &shared.config.limits.wire).await;
            }
            frame = control.next(), if control_open => match frame {
                Ok(Some(Frame::GoAway(g))) => {
                    info!(reason = %g.reason, "tunnel client is draining; new calls go to its other connections");
                    shared.metrics.drain_events.with_label_values(&["goaway_received"]).inc();
                    shared.registry.mark_draining(reg.name, reg.id);
                }
                Ok(Some(other)) => {
                    warn!(frame = %other.frame_type(), "unexpected control frame; closing tunnel");
                    conn.close(conn_codes::PROTOCOL, b"unexpected control frame");
                    return;
                }
                Ok(None) => control_open = false,
                Err(StreamError::ConnectionLost(_)) => return,
                Err(e) => {
                    warn!(error = %e, "control stream failed; closing tunnel");
                    conn.close(conn_codes::PROTOCOL, b"control stream error");
                    return;
                }
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    let egress = crate::egress::Egress {
                        shared: shared.clone(),
                        tunnel: identity.clone(),
                    };
                    // A call: ends with the stream, and the connection
                    // closing resets it. Boxed: the handler's future is
                    // kilobytes, and a spawned future is moved by value
                    // several times.
                    let handler = async move {
                        proxy::forward::accept::serve_stream(send, recv, &egress).await
                    };
                    shared.life.spawn_call(Box::pin(handler.in_current_span()));
                }
                Err(_) => return,
            },
            _ = shared.life.closing() => {
                conn.close(conn_codes::GOING_AWAY, b"edge shutting down");
                return;
            }
        }
    }
}
