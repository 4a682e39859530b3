//! The edge's status page (`/status`, `/status.txt`, `/status.json` on the
//! admin listener; `tunnel-server status`): its tunnels with every
//! connection, the recent refusals with their cause, and the audit chain
//! head.

use std::sync::{Arc, Weak};
use std::time::{Instant, UNIX_EPOCH};

use proxy::metrics::recent::Refusal;
use proxy::status::{at, AuditStatus, Section};

use crate::Shared;

/// A snapshot of the edge, as `/status.json` serves it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EdgeStatus {
    /// The edge's name.
    pub edge_id: String,
    /// Its certificate identity.
    pub identity: String,
    /// `serving`, or `draining` once it stops.
    pub phase: &'static str,
    /// Silence after which a connection gets no new calls, ms.
    pub silence_ms: u64,
    /// Connected tunnels, by name.
    pub tunnels: Vec<TunnelStatus>,
    /// The last refusals and denials, newest first.
    pub recent_refusals: Vec<Refusal>,
    /// The audit log.
    pub audit: AuditStatus,
}

/// One tunnel and its connections here.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TunnelStatus {
    /// The tunnel's name.
    pub name: String,
    /// Its registered connections.
    pub connections: Vec<ConnectionStatus>,
}

/// One tunnel connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionStatus {
    /// Registration id.
    pub id: u64,
    /// The client's address as the edge sees it.
    pub address: String,
    /// QUIC's smoothed round-trip time, ms.
    pub rtt_ms: f64,
    /// Calls in flight on it.
    pub streams: usize,
    /// When it registered, ms since the Unix epoch.
    pub since_unix_ms: u64,
    /// Whether the client said it drains.
    pub draining: bool,
    /// Since the client was last heard from, ms.
    pub silent_ms: u64,
    /// Services it offers.
    pub services: Vec<String>,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The edge's state now; empty once the edge is gone.
pub fn snapshot(shared: &Weak<Shared>) -> Option<EdgeStatus> {
    let shared = shared.upgrade()?;
    Some(collect(&shared))
}

fn collect(shared: &Arc<Shared>) -> EdgeStatus {
    let now = Instant::now();
    let mut names = shared.registry.live_tunnels();
    names.sort();
    let tunnels = names
        .into_iter()
        .map(|name| {
            let connections = shared
                .registry
                .connections(&name)
                .into_iter()
                .map(|c| {
                    let mut services: Vec<String> = c.services.iter().cloned().collect();
                    services.sort();
                    ConnectionStatus {
                        id: c.id,
                        address: c.conn.remote_address().to_string(),
                        rtt_ms: c.conn.rtt().as_secs_f64() * 1000.0,
                        streams: c.in_flight(),
                        since_unix_ms: c.since.duration_since(UNIX_EPOCH).map_or(0, ms),
                        draining: c.is_draining(),
                        silent_ms: ms(c.sample_silence(now)),
                        services,
                    }
                })
                .collect();
            TunnelStatus { name, connections }
        })
        .collect();
    EdgeStatus {
        edge_id: shared.config.edge_id.clone(),
        identity: shared.config.identity.id.to_string(),
        phase: if shared.life.is_draining() {
            "draining"
        } else {
            "serving"
        },
        tunnels,
        silence_ms: ms(proxy::liveness::silence_bound(
            shared.config.limits.keepalive,
        )),
        recent_refusals: shared.metrics.recent.list(),
        audit: AuditStatus::of(&shared.audit),
    }
}

/// The page's title, summary and tables.
pub fn view(status: &Option<EdgeStatus>) -> (String, String, Vec<Section>) {
    let Some(s) = status else {
        return ("Tether edge".into(), "stopped".into(), Vec::new());
    };
    let conns: usize = s.tunnels.iter().map(|t| t.connections.len()).sum();
    let summary = format!(
        "{} ({}), {}: {} tunnels, {} connections; audit {}{}",
        s.edge_id,
        s.identity,
        s.phase,
        s.tunnels.len(),
        conns,
        if s.audit.healthy {
            "healthy"
        } else {
            "FAILING"
        },
        s.audit
            .head
            .as_ref()
            .map(|h| format!(", chain head seq {} hash {}", h.seq, h.hash))
            .unwrap_or_default()
    );
    let mut tunnels = Section::new(
        "Tunnels",
        &[
            "tunnel",
            "connection",
            "client address",
            "rtt ms",
            "streams",
            "since",
            "state",
            "services",
        ],
        "no tunnel is connected",
    );
    for t in &s.tunnels {
        for c in &t.connections {
            tunnels.row(vec![
                t.name.clone(),
                c.id.to_string(),
                c.address.clone(),
                format!("{:.1}", c.rtt_ms),
                c.streams.to_string(),
                at(c.since_unix_ms),
                proxy::status::connection_state(c.draining, c.silent_ms, s.silence_ms),
                c.services.join(", "),
            ]);
        }
    }
    let mut refusals = Section::new(
        "Recent refusals",
        &[
            "at",
            "direction",
            "decision",
            "cause",
            "caller",
            "tunnel",
            "service",
            "request id",
        ],
        "none since start",
    );
    for r in &s.recent_refusals {
        refusals.row(vec![
            at(r.at_unix_ms),
            r.direction.into(),
            r.decision.into(),
            r.cause.clone(),
            r.caller.clone(),
            r.tunnel.clone(),
            r.service.clone(),
            r.request_id.clone(),
        ]);
    }
    let audit = s.audit.section();
    (
        format!("Tether edge {}", s.edge_id),
        summary,
        vec![tunnels, refusals, audit],
    )
}
