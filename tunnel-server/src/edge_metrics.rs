//! What the edge's `/metrics` reads at each scrape beyond the stream
//! metrics the audit log counts (`proxy::metrics`): its tunnel connections
//! by tunnel and state with their QUIC statistics, the audit log's writes,
//! failures and health, the `[limits]` refusals, and policy and credential
//! reloads.

use std::sync::{Arc, Weak};

use proxy::metrics::{catch_up, Metrics, Refresh};

use crate::Shared;

/// The refresh the edge registers; holds the edge weakly so metrics do not
/// keep a stopped edge alive.
pub fn refresh(shared: Weak<Shared>) -> Refresh {
    Box::new(move |m: &Metrics| {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        connections(m, &shared);
        m.read_audit(&shared.audit);
        limits(m, &shared);
        let c = &shared.config;
        m.read_reloads(&c.policy, &c.egress_policy, &shared.credentials);
    })
}

fn connections(m: &Metrics, shared: &Arc<Shared>) {
    m.reset_peers();
    for name in shared.registry.live_tunnels() {
        let conns = shared.registry.connections(&name);
        let draining = conns.iter().filter(|c| c.is_draining()).count();
        let registered = conns.len() - draining;
        for (state, n) in [("registered", registered), ("draining", draining)] {
            m.connections
                .with_label_values(&[name.as_str(), state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.set_quic(&name, conns.iter().map(|c| &c.conn));
    }
}

fn limits(m: &Metrics, shared: &Shared) {
    let r = shared.quotas.refused();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    for (limit, n) in [
        ("max_tunnel_streams", load(&r.tunnel_streams)),
        ("max_caller_calls", load(&r.caller_calls)),
        ("caller_rate", load(&r.caller_rate)),
        ("max_callers", load(&r.callers)),
    ] {
        catch_up(&m.limit_rejections.with_label_values(&[limit]), n);
    }
}
