//! What the client's `/metrics` reads at each scrape beyond the stream
//! metrics the audit log counts (`proxy::metrics`): its edge connections
//! by edge and state with their QUIC statistics, the audit log's writes,
//! failures and health, and policy and credential reloads.

use std::sync::{Arc, Weak};

use proxy::metrics::{Metrics, Refresh};

use crate::Shared;

/// The refresh the client registers; holds the client weakly so metrics
/// do not keep a stopped client alive.
pub fn refresh(shared: Weak<Shared>) -> Refresh {
    Box::new(move |m: &Metrics| {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        connections(m, &shared);
        m.read_audit(&shared.audit);
        let c = &shared.config;
        m.read_reloads(&c.policy, &c.egress_policy, &shared.credentials);
    })
}

/// Connections by edge id (at most `max_edges` distinct values) and state.
fn connections(m: &Metrics, shared: &Arc<Shared>) {
    m.reset_peers();
    let conns = shared.pool.connections();
    let mut edges: Vec<&str> = conns.iter().map(|c| c.edge_id.as_str()).collect();
    edges.sort_unstable();
    edges.dedup();
    for edge in edges {
        let of_edge: Vec<_> = conns.iter().filter(|c| c.edge_id == edge).collect();
        let draining = of_edge.iter().filter(|c| c.is_draining()).count();
        for (state, n) in [
            ("registered", of_edge.len() - draining),
            ("draining", draining),
        ] {
            m.connections
                .with_label_values(&[edge, state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.set_quic(edge, of_edge.iter().map(|c| &c.conn));
    }
}
