//! The terminal table of `bench tunnels`: registrations and the ceiling's
//! handshakes side by side, then the edge's memory per tunnel, its idle
//! CPU, the light load without and with the tunnels, the targets and what
//! went wrong. Every figure here is also in the JSON.

use std::fmt::Write as _;

use crate::report::model::Row;
use crate::report::tunnels::{Phase, TunnelsReport};

const MIB: f64 = 1024.0;

/// The table, for people.
pub fn table(t: &TunnelsReport) -> String {
    let f = &t.tunnels;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tunnels on the {} deployment; settings {}",
        t.report.topology, t.report.settings
    );
    let _ = writeln!(
        out,
        "identities: {} minted from the deployment's CA in {:.2} s ({:.0}/s), before the timed phases",
        f.minting.identities, f.minting.seconds, f.minting.per_sec
    );
    let _ = writeln!(
        out,
        "{:<8} {:>9} {:>6} {:>7} {:>7} {:>12} {:>8} {:>8} {:>8} {:>8} {:>11} {:>10} {:>7}",
        "path",
        "connected",
        "failed",
        "timeout",
        "not run",
        "handshakes/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "edge µs/hs",
        "CPU µs/hs",
        "÷ceil"
    );
    for (label, phase) in [("tunnel", &f.registration), ("ceiling", &f.ceiling)] {
        if let Some(p) = phase {
            let ratio = match label {
                "tunnel" => f.handshakes_vs_ceiling,
                _ => Some(1.0),
            };
            row(&mut out, label, p, ratio);
        }
    }
    let _ = writeln!(
        out,
        "a tunnel is registered once its WELCOME arrives (mTLS handshake, HELLO, WELCOME); \
         a ceiling handshake ends with the QUIC handshake at a bare endpoint with Tether's TLS"
    );
    for (label, phase) in [("tunnel", &f.registration), ("ceiling", &f.ceiling)] {
        if let Some(p) = phase
            .as_ref()
            .filter(|p| p.server_udp_drops + p.client_udp_drops > 0)
        {
            let _ = writeln!(
                out,
                "{label}: UDP datagrams dropped on full receive buffers: {} at the server, {} \
                 at bench's sockets (each costs its handshake a retransmission timeout, ~1 s)",
                p.server_udp_drops, p.client_udp_drops
            );
        }
    }
    memory(&mut out, t);
    load(&mut out, t);
    if !f.targets.is_empty() {
        let _ = writeln!(out, "targets:");
        for target in &f.targets {
            let verdict = match target.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not comparable in process",
            };
            let _ = writeln!(
                out,
                "  {}: {:.2} {} — {verdict}",
                target.what, target.value, target.unit
            );
        }
    }
    if let Some(c) = &f.caveat {
        let _ = writeln!(out, "caveat: {c}");
    }
    for (label, phase) in [("tunnel", &f.registration), ("ceiling", &f.ceiling)] {
        for (why, n) in phase.iter().flat_map(|p| &p.failures) {
            let _ = writeln!(out, "{label} failures: {n} × {why}");
        }
    }
    for w in &t.report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn row(out: &mut String, label: &str, p: &Phase, ratio: Option<f64>) {
    let l = &p.latency_us;
    let edge = p
        .edge_cpu_us_per_handshake
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio = ratio.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let _ = writeln!(
        out,
        "{label:<8} {:>9} {:>6} {:>7} {:>7} {:>12.1} {:>8} {:>8} {:>8} {:>8} {edge:>11} {:>10.1} {ratio:>7}",
        p.connected,
        p.failed,
        p.timed_out,
        p.not_started,
        p.per_sec,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        p.total_cpu_us_per_handshake,
    );
}

fn memory(out: &mut String, t: &TunnelsReport) {
    let f = &t.tunnels;
    let Some(m) = &f.memory else { return };
    let n = f.registration.as_ref().map_or(0, |r| r.connected);
    let idle = m.idle_kib.map_or_else(String::new, |kib| {
        format!(
            ", {:.1} MiB at the end of the idle window",
            kib as f64 / MIB
        )
    });
    let _ = writeln!(
        out,
        "{} RSS: {:.1} MiB before, {:.1} MiB with {n} tunnels registered{idle}",
        f.edge_process,
        m.before_kib as f64 / MIB,
        m.connected_kib as f64 / MIB,
    );
    let idle = m
        .per_tunnel_idle_kib
        .map_or_else(String::new, |v| format!(", {v:.1} KiB idle"));
    let _ = writeln!(
        out,
        "  per tunnel: {:.1} KiB registered{idle}; {} tunnels at this rate: {:.0} MiB",
        m.per_tunnel_connected_kib,
        crate::report::tunnels::TARGET_TUNNELS,
        m.projected_10k_mib
    );
    if let Some(idle) = &f.idle {
        let cpu: Vec<String> = idle
            .processes
            .iter()
            .map(|p| {
                format!(
                    "{} {:.0} ms ({:.2} µs per tunnel per s)",
                    p.name, p.cpu_ms, p.us_per_tunnel_per_s
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "idle CPU over {:.1} s with every tunnel connected (keepalive every {:.0} s at \
             each end; one clock tick = 10 ms): {}",
            idle.seconds,
            idle.keepalive_s,
            cpu.join(", ")
        );
    }
}

fn load(out: &mut String, t: &TunnelsReport) {
    let Some(l) = &t.tunnels.light_load else {
        return;
    };
    if l.without_tunnels.is_none() && l.with_tunnels.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "light load on the tunnel path: {} calls/s for {} s (open loop, latency from intended start)",
        l.rate, l.seconds
    );
    let _ = writeln!(
        out,
        "  {:<18} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "", "calls", "errors", "missed", "p50 µs", "p90 µs", "p99 µs", "max µs", "edge µs/c"
    );
    let base = l.without_tunnels.as_ref();
    for r in [&l.without_tunnels, &l.with_tunnels].into_iter().flatten() {
        load_row(out, r, &t.tunnels.edge_process);
    }
    if let (Some(b), Some(w)) = (base, &l.with_tunnels) {
        let div = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        let _ = writeln!(
            out,
            "  with the tunnels: p50 ×{:.2}, p99 ×{:.2} of without",
            div(w.latency_us.p50, b.latency_us.p50),
            div(w.latency_us.p99, b.latency_us.p99)
        );
    }
}

fn load_row(out: &mut String, r: &Row, edge: &str) {
    let l = &r.latency_us;
    let edge_cpu = r
        .processes
        .iter()
        .find(|p| p.name == edge)
        .map_or_else(|| "-".to_string(), |p| format!("{:.1}", p.cpu_us_per_call));
    let _ = writeln!(
        out,
        "  {:<18} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {edge_cpu:>9}",
        r.label, r.calls, r.errors, r.missed, l.p50, l.p90, l.p99, l.max
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tunnels::tests::{phases, settings};

    #[test]
    fn memory_per_tunnel_and_missed_targets_are_shown() {
        let r = TunnelsReport::new(settings(false), "processes", Vec::new(), phases());
        let table = table(&r);
        assert!(
            table.contains("per tunnel: 50.0 KiB registered, 40.0 KiB idle"),
            "{table}"
        );
        assert!(table.contains("NOT met"), "{table}");
    }

    #[test]
    fn in_process_memory_is_not_judged_and_failures_are_warnings() {
        let mut p = phases();
        if let Some(t) = &mut p.tunnel {
            t.timed_out = 3;
            t.measurement.errors = 3;
            t.reasons = vec![("not registered within 10s".into(), 3)];
        }
        p.skipped.push("the idle window: skipped".into());
        let r = TunnelsReport::new(settings(true), "in-process", Vec::new(), p);
        assert!(!r.clean());
        assert!(r.tunnels.caveat.is_some());
        assert_eq!(r.tunnels.targets[0].met, None);
        assert_eq!(r.tunnels.targets[2].met, Some(false));
        let table = table(&r);
        assert!(
            table.contains("tunnel failures: 3 × not registered"),
            "{table}"
        );
        assert!(
            table.contains("warning: the idle window: skipped"),
            "{table}"
        );
    }
}
