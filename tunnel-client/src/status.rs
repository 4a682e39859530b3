//! The client's status page (`/status`, `/status.txt`, `/status.json` on
//! the admin listener; `tunnel-client status`): its connections to the
//! edges, its dial slots, the services it offers and its audit log.

use std::sync::{Arc, Weak};

use proxy::status::{at, AuditStatus, Section};

use crate::pool::PoolStatus;
use crate::Shared;

/// A snapshot of the client, as `/status.json` serves it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientStatus {
    /// The tunnel's identity.
    pub identity: String,
    /// `serving`, or `draining` once it stops.
    pub phase: &'static str,
    /// Silence after which a connection gets no new calls, ms.
    pub silence_ms: u64,
    /// Connections and dial slots.
    pub pool: PoolStatus,
    /// The local services it offers, by name.
    pub services: Vec<ServiceStatus>,
    /// The audit log.
    pub audit: AuditStatus,
}

/// One offered service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStatus {
    /// Its name (`<service>.<tunnel>.<domain>` at the edge).
    pub name: String,
    /// Where it is reached.
    pub url: String,
    /// How it is spoken to.
    pub protocol: String,
}

/// The client's state now; empty once it is gone.
pub fn snapshot(shared: &Weak<Shared>) -> Option<ClientStatus> {
    let shared = shared.upgrade()?;
    Some(collect(&shared))
}

fn collect(shared: &Arc<Shared>) -> ClientStatus {
    let c = &shared.config;
    ClientStatus {
        identity: c.identity.id.to_string(),
        phase: if shared.life.is_draining() {
            "draining"
        } else {
            "serving"
        },
        pool: shared.pool.status(),
        silence_ms: u64::try_from(shared.pool.silence().as_millis()).unwrap_or(u64::MAX),
        services: c
            .services
            .iter()
            .map(|(name, s)| ServiceStatus {
                name: name.clone(),
                url: s.url.to_string(),
                protocol: format!("{:?}", s.protocol).to_lowercase(),
            })
            .collect(),
        audit: AuditStatus::of(&shared.audit),
    }
}

/// The page's title, summary and tables.
pub fn view(status: &Option<ClientStatus>) -> (String, String, Vec<Section>) {
    let Some(s) = status else {
        return ("Tether tunnel client".into(), "stopped".into(), Vec::new());
    };
    let p = &s.pool;
    let summary = format!(
        "tunnel {} ({}), {}: {} of {} connections (max_edges {} × connections_per_edge {}); audit {}",
        p.tunnel,
        s.identity,
        s.phase,
        p.connections.len(),
        p.max_edges * p.connections_per_edge,
        p.max_edges,
        p.connections_per_edge,
        if s.audit.healthy { "healthy" } else { "FAILING" },
    );
    let mut conns = Section::new(
        "Connections",
        &[
            "slot",
            "edge",
            "edge identity",
            "address",
            "rtt ms",
            "streams",
            "since",
            "state",
        ],
        "not connected to any edge",
    );
    for c in &p.connections {
        conns.row(vec![
            c.slot.to_string(),
            c.edge_id.clone(),
            c.edge_identity.clone(),
            c.address.to_string(),
            format!("{:.1}", c.rtt_ms),
            c.streams.to_string(),
            at(c.since_unix_ms),
            proxy::status::connection_state(c.draining, c.silent_ms, s.silence_ms),
        ]);
    }
    let mut slots = Section::new(
        "Dial slots",
        &["slot", "dialing", "last error", "next attempt after ms"],
        "",
    );
    for sl in &p.slots {
        slots.row(vec![
            sl.slot.to_string(),
            sl.dialing.map_or("-".into(), |a| a.to_string()),
            sl.last_error.clone().unwrap_or_else(|| "-".into()),
            sl.next_attempt_after_ms
                .map_or("-".into(), |ms| ms.to_string()),
        ]);
    }
    let mut services = Section::new("Services", &["service", "url", "protocol"], "none offered");
    for sv in &s.services {
        services.row(vec![sv.name.clone(), sv.url.clone(), sv.protocol.clone()]);
    }
    let audit = s.audit.section();
    (
        format!("Tether tunnel client {}", p.tunnel),
        summary,
        vec![conns, slots, services, audit],
    )
}
