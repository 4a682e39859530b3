//! The figures of `bench tunnels` and the document they make: the usual
//! [`Report`] (rows `tunnel` and `ceiling`, where a "call" is one
//! registration, so calls/s is handshakes per second and the latency is
//! the registration's) with the scenario's own figures beside it: memory
//! per tunnel at the edge, CPU per handshake and per idle tunnel, the
//! light load with and without the tunnels, and the targets. The JSON is
//! the report's keys plus `tunnels`; the table is
//! [`tunnels_table`](crate::report::tunnels_table)'s.

use std::time::Duration;

use serde::Serialize;

use crate::load::tunnels::fleet::Outcome;
use crate::measure::measurement::Measurement;
use crate::measure::usage::{ProcessInfo, ProcessUsage};
use crate::report::model::{Latency, Report, Row};

/// The idle-memory target: ≤ 48 KiB of edge RSS per idle tunnel.
pub const TARGET_KIB_PER_TUNNEL: f64 = 48.0;
/// The scale the memory target is stated for: 10,000 idle tunnels…
pub const TARGET_TUNNELS: u64 = 10_000;
/// …under 500 MiB on one edge.
pub const TARGET_TOTAL_MIB: f64 = 500.0;
/// Registrations per second ≥ 0.9 × the ceiling's handshakes per second.
pub const TARGET_VS_CEILING: f64 = 0.9;

/// Why the in-process figures are not the edge's alone.
pub const IN_PROCESS_CAVEAT: &str =
    "in process, the edge shares the bench process with the emulated tunnels, so memory \
     per tunnel and CPU per handshake are both ends' together (an upper bound on the \
     edge's); run the default process deployment for the edge's own figures";

/// What the scenario measured, phase by phase, before it becomes a report.
pub struct Phases {
    /// The name of the process whose memory is the edge's.
    pub edge: String,
    /// Identities minted, and how long that took.
    pub minted: (u64, Duration),
    /// The light load before any extra tunnel connected.
    pub load_without: Option<Measurement>,
    /// The handshakes against the bare endpoint.
    pub ceiling: Option<Outcome>,
    /// The registrations against the edge.
    pub tunnel: Option<Outcome>,
    /// Edge RSS right before the registrations, KiB (`None` if it could
    /// not be read).
    pub rss_before_kib: Option<u64>,
    /// Edge RSS once every tunnel registered, KiB.
    pub rss_connected_kib: Option<u64>,
    /// The idle window: its length, each process's use over it, and the
    /// edge's RSS at its end (`None` if it could not be read).
    pub idle: Option<(Duration, Vec<ProcessUsage>, Option<u64>)>,
    /// The light load with every tunnel connected.
    pub load_with: Option<Measurement>,
    /// Phases the run's `--duration` cap left out, in words.
    pub skipped: Vec<String>,
}

/// The settings a report needs beyond the phases.
pub struct Settings {
    /// Tunnels asked for.
    pub tunnels: u64,
    /// The light load's rate and length, when there was one.
    pub load: Option<(f64, Duration)>,
    /// The keepalive interval both ends use.
    pub keepalive: Duration,
    /// True in process (figures include both ends).
    pub in_process: bool,
    /// Everything as given, for the JSON's `settings`.
    pub json: serde_json::Value,
}

/// `bench tunnels`' whole document.
#[derive(Clone, Debug, Serialize)]
pub struct TunnelsReport {
    /// The usual report: rows `tunnel` and `ceiling`, processes, warnings.
    #[serde(flatten)]
    pub report: Report,
    /// The scenario's own figures.
    pub tunnels: TunnelFigures,
}

/// The scenario's own figures.
#[derive(Clone, Debug, Serialize)]
pub struct TunnelFigures {
    /// Tunnels asked for.
    pub requested: u64,
    /// The process whose memory and CPU are the edge's (`edge`; `bench`
    /// in process).
    pub edge_process: String,
    /// Why the figures are not the edge's alone, when they are not.
    pub caveat: Option<String>,
    /// Minting the identities (before the timed phases).
    pub minting: Minting,
    /// Registrations at the edge.
    pub registration: Option<Phase>,
    /// Handshakes at the bare endpoint.
    pub ceiling: Option<Phase>,
    /// Registrations per second ÷ the ceiling's handshakes per second.
    pub handshakes_vs_ceiling: Option<f64>,
    /// The edge's memory.
    pub memory: Option<Memory>,
    /// Each process's CPU while every tunnel sat idle.
    pub idle: Option<Idle>,
    /// The light load on the real tunnel, without and with the tunnels.
    pub light_load: Option<LightLoad>,
    /// Each target and whether it was met.
    pub targets: Vec<Target>,
    /// Phases the `--duration` cap left out.
    pub skipped: Vec<String>,
}

/// Minting the tunnels' identities.
#[derive(Clone, Debug, Serialize)]
pub struct Minting {
    /// Identities minted (one per tunnel).
    pub identities: u64,
    /// Seconds it took, on every core.
    pub seconds: f64,
    /// Identities per second.
    pub per_sec: f64,
}

/// One dialing phase (the rows carry the same counts and latency).
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// Tunnels connected (registered, or handshaken for the ceiling).
    pub connected: u64,
    /// Tunnels that failed before their timeout.
    pub failed: u64,
    /// Tunnels not connected within the timeout.
    pub timed_out: u64,
    /// Tunnels never started (the `--duration` cap came first).
    pub not_started: u64,
    /// Seconds from the first dial to the last answer.
    pub seconds: f64,
    /// Connected per second.
    pub per_sec: f64,
    /// Latency of each connected tunnel, from dialing to WELCOME (to the
    /// handshake's end for the ceiling), µs.
    pub latency_us: Latency,
    /// The edge process's CPU per connected tunnel, µs (absent for the
    /// ceiling, which the edge takes no part in).
    pub edge_cpu_us_per_handshake: Option<f64>,
    /// Every measured process's CPU per connected tunnel, µs.
    pub total_cpu_us_per_handshake: f64,
    /// The commonest failures, with counts.
    pub failures: Vec<(String, u64)>,
    /// Datagrams the server's UDP socket dropped during the phase (its
    /// receive buffer was full): each costs a retransmission timeout of
    /// about a second to the handshake it belonged to.
    pub server_udp_drops: u64,
    /// Datagrams bench's own client sockets dropped.
    pub client_udp_drops: u64,
}

/// The edge's resident memory around the registrations.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// Right before the first registration, KiB.
    pub before_kib: u64,
    /// Once every tunnel registered, KiB.
    pub connected_kib: u64,
    /// At the end of the idle window, KiB.
    pub idle_kib: Option<u64>,
    /// (connected − before) ÷ tunnels, KiB.
    pub per_tunnel_connected_kib: f64,
    /// (idle − before) ÷ tunnels, KiB: the figure the target is for.
    pub per_tunnel_idle_kib: Option<f64>,
    /// before + 10,000 × the per-tunnel figure, MiB: what the target's
    /// 10,000 tunnels would take at this rate.
    pub projected_10k_mib: f64,
}

/// CPU while every tunnel sat idle (keepalives only).
#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    /// Length of the window, s (after a settling pause).
    pub seconds: f64,
    /// The keepalive interval each end uses, s.
    pub keepalive_s: f64,
    /// Each process's CPU over the window.
    pub processes: Vec<IdleCpu>,
}

/// One process's CPU over the idle window.
#[derive(Clone, Debug, Serialize)]
pub struct IdleCpu {
    /// The process.
    pub name: String,
    /// CPU over the window, ms.
    pub cpu_ms: f64,
    /// CPU per tunnel per second, µs: the keepalive cost of one tunnel.
    pub us_per_tunnel_per_s: f64,
}

/// The light load on the real tunnel path.
#[derive(Clone, Debug, Serialize)]
pub struct LightLoad {
    /// Calls per second.
    pub rate: f64,
    /// Seconds of each load.
    pub seconds: f64,
    /// With only the deployment's own tunnel connected.
    pub without_tunnels: Option<Row>,
    /// With every emulated tunnel connected too.
    pub with_tunnels: Option<Row>,
}

/// One target, and whether the run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is measured and the bound, in words.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// The bound.
    pub bound: f64,
    /// The value's unit.
    pub unit: String,
    /// Met, not met, or `None` when this run cannot tell (in process).
    pub met: Option<bool>,
}

impl TunnelsReport {
    /// The document of a run on the deployment `topology`.
    pub fn new(settings: Settings, topology: &str, processes: Vec<ProcessInfo>, p: Phases) -> Self {
        let mut rows = Vec::new();
        if let Some(t) = &p.tunnel {
            rows.push(Row::new("tunnel", &t.measurement));
        }
        if let Some(c) = &p.ceiling {
            rows.push(Row::new("ceiling", &c.measurement));
        }
        let mut report = Report::new("tunnels", settings.json.clone(), rows)
            .with_ceiling("ceiling")
            .with_deployment(topology, processes);
        report.warnings = warnings(&p, &settings);
        let tunnels = figures(&settings, &p);
        Self { report, tunnels }
    }

    /// True when every tunnel connected, every phase ran and the light
    /// loads had no error or missed call (targets do not count: a run
    /// that misses one still measured it).
    pub fn clean(&self) -> bool {
        self.report.clean()
    }

    /// The JSON document, for machines: the report's keys and `tunnels`.
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

fn warnings(p: &Phases, s: &Settings) -> Vec<String> {
    let mut out = p.skipped.clone();
    for (label, phase) in [("tunnel", &p.tunnel), ("ceiling", &p.ceiling)] {
        let Some(o) = phase else { continue };
        let m = &o.measurement;
        if m.errors > 0 || o.not_started > 0 {
            out.push(format!(
                "{label}: {} of {} tunnels connected ({} failed, {} timed out, {} not started)",
                m.calls, s.tunnels, o.failed, o.timed_out, o.not_started
            ));
        }
    }
    for (label, load) in [
        ("light load without tunnels", &p.load_without),
        ("light load with tunnels", &p.load_with),
    ] {
        let Some(m) = load else { continue };
        if m.errors > 0 || m.missed > 0 || m.calls == 0 {
            out.push(format!(
                "{label}: {} calls, {} failed, {} missed",
                m.calls, m.errors, m.missed
            ));
        }
    }
    out
}

fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

fn phase(o: &Outcome, edge: Option<&str>) -> Phase {
    let m = &o.measurement;
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / m.calls.max(1) as f64;
    Phase {
        connected: m.calls,
        failed: o.failed,
        timed_out: o.timed_out,
        not_started: o.not_started,
        seconds: m.elapsed.as_secs_f64(),
        per_sec: per_sec(m.calls, m.elapsed),
        latency_us: Latency::of(&m.hist),
        edge_cpu_us_per_handshake: edge.and_then(|name| {
            let u = m.processes.iter().find(|u| u.name == name)?;
            Some(per(u.cpu))
        }),
        total_cpu_us_per_handshake: per(m.cpu),
        failures: o.reasons.clone(),
        server_udp_drops: o.server_drops,
        client_udp_drops: o.client_drops,
    }
}

fn figures(s: &Settings, p: &Phases) -> TunnelFigures {
    let registration = p.tunnel.as_ref().map(|o| phase(o, Some(&p.edge)));
    let ceiling = p.ceiling.as_ref().map(|o| phase(o, None));
    let vs_ceiling = match (&registration, &ceiling) {
        (Some(r), Some(c)) if c.per_sec > 0.0 => Some(r.per_sec / c.per_sec),
        _ => None,
    };
    let connected = registration.as_ref().map_or(0, |r| r.connected);
    let memory = match (p.rss_before_kib, p.rss_connected_kib) {
        (Some(before), Some(after)) if connected > 0 => Some(memory(p, before, after, connected)),
        _ => None,
    };
    let idle = match (&p.idle, connected) {
        (Some((window, usage, _)), n) if n > 0 => Some(Idle {
            seconds: window.as_secs_f64(),
            keepalive_s: s.keepalive.as_secs_f64(),
            processes: usage
                .iter()
                .map(|u| IdleCpu {
                    name: u.name.clone(),
                    cpu_ms: u.cpu.as_secs_f64() * 1e3,
                    us_per_tunnel_per_s: u.cpu.as_secs_f64() * 1e6
                        / n as f64
                        / window.as_secs_f64().max(1e-9),
                })
                .collect(),
        }),
        _ => None,
    };
    let light_load = s.load.map(|(rate, d)| LightLoad {
        rate,
        seconds: d.as_secs_f64(),
        without_tunnels: p
            .load_without
            .as_ref()
            .map(|m| Row::new("no extra tunnels", m)),
        with_tunnels: p
            .load_with
            .as_ref()
            .map(|m| Row::new(format!("{connected} tunnels"), m)),
    });
    let (minted, took) = p.minted;
    let mut f = TunnelFigures {
        requested: s.tunnels,
        edge_process: p.edge.clone(),
        caveat: s.in_process.then(|| IN_PROCESS_CAVEAT.to_string()),
        minting: Minting {
            identities: minted,
            seconds: took.as_secs_f64(),
            per_sec: per_sec(minted, took),
        },
        registration,
        ceiling,
        handshakes_vs_ceiling: vs_ceiling,
        memory,
        idle,
        light_load,
        targets: Vec::new(),
        skipped: p.skipped.clone(),
    };
    f.targets = targets(&f, s.in_process);
    f
}

fn memory(p: &Phases, before: u64, connected: u64, n: u64) -> Memory {
    let per = |after: u64| after.saturating_sub(before) as f64 / n as f64;
    let idle_kib = p.idle.as_ref().and_then(|(_, _, rss)| *rss);
    let per_idle = idle_kib.map(per);
    let per_tunnel = per_idle.unwrap_or_else(|| per(connected));
    Memory {
        before_kib: before,
        connected_kib: connected,
        idle_kib,
        per_tunnel_connected_kib: per(connected),
        per_tunnel_idle_kib: per_idle,
        projected_10k_mib: (before as f64 + TARGET_TUNNELS as f64 * per_tunnel) / 1024.0,
    }
}

fn targets(f: &TunnelFigures, in_process: bool) -> Vec<Target> {
    let mut out = Vec::new();
    let memory_met = |ok: bool| (!in_process).then_some(ok);
    if let Some(m) = &f.memory {
        let (value, when) = match m.per_tunnel_idle_kib {
            Some(v) => (v, "idle"),
            None => (m.per_tunnel_connected_kib, "just registered"),
        };
        out.push(Target {
            what: format!("edge RSS per tunnel ({when}) ≤ {TARGET_KIB_PER_TUNNEL} KiB"),
            value,
            bound: TARGET_KIB_PER_TUNNEL,
            unit: "KiB".into(),
            met: memory_met(value <= TARGET_KIB_PER_TUNNEL),
        });
        let measured = f.registration.as_ref().map_or(0, |r| r.connected);
        let how = if measured >= TARGET_TUNNELS {
            "at this run's rate".to_string()
        } else {
            format!("projected from {measured}")
        };
        out.push(Target {
            what: format!(
                "edge RSS with {TARGET_TUNNELS} idle tunnels < {TARGET_TOTAL_MIB} MiB ({how})"
            ),
            value: m.projected_10k_mib,
            bound: TARGET_TOTAL_MIB,
            unit: "MiB".into(),
            met: memory_met(m.projected_10k_mib < TARGET_TOTAL_MIB),
        });
    }
    if let Some(r) = f.handshakes_vs_ceiling {
        out.push(Target {
            what: format!("registrations/s ≥ {TARGET_VS_CEILING}× the ceiling's handshakes/s"),
            value: r,
            bound: TARGET_VS_CEILING,
            unit: "×".into(),
            met: Some(r >= TARGET_VS_CEILING),
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::measure::usage::ProcessUsage;

    fn outcome(connected: u64, secs: u64, edge_cpu_ms: u64) -> Outcome {
        let mut m = Measurement::new();
        m.calls = connected;
        m.elapsed = Duration::from_secs(secs);
        for us in 1..=connected {
            crate::measure::measurement::record(&mut m.hist, Duration::from_micros(1000 + us));
        }
        m.processes = vec![ProcessUsage {
            name: "edge".into(),
            cpu: Duration::from_millis(edge_cpu_ms),
            rss_kib: 0,
            probes: Default::default(),
        }];
        m.cpu = Duration::from_millis(edge_cpu_ms);
        Outcome {
            measurement: m,
            failed: 0,
            timed_out: 0,
            not_started: 0,
            reasons: Vec::new(),
            server_drops: 0,
            client_drops: 0,
        }
    }

    /// A run of 1000 tunnels whose every phase ran.
    pub(crate) fn phases() -> Phases {
        Phases {
            edge: "edge".into(),
            minted: (1000, Duration::from_millis(500)),
            load_without: None,
            ceiling: Some(outcome(1000, 1, 0)),
            tunnel: Some(outcome(1000, 2, 1000)),
            rss_before_kib: Some(10 * 1024),
            rss_connected_kib: Some(10 * 1024 + 50_000),
            idle: Some((
                Duration::from_secs(10),
                Vec::new(),
                Some(10 * 1024 + 40_000),
            )),
            load_with: None,
            skipped: Vec::new(),
        }
    }

    /// The settings of [`phases`]'s run.
    pub(crate) fn settings(in_process: bool) -> Settings {
        Settings {
            tunnels: 1000,
            load: None,
            keepalive: Duration::from_secs(10),
            in_process,
            json: serde_json::json!({}),
        }
    }

    #[test]
    fn memory_per_tunnel_and_targets_follow_from_the_phases() {
        let r = TunnelsReport::new(settings(false), "processes", Vec::new(), phases());
        assert!(r.clean(), "{:?}", r.report.warnings);
        let f = &r.tunnels;
        let m = f.memory.as_ref().unwrap();
        assert!((m.per_tunnel_connected_kib - 50.0).abs() < 1e-9);
        assert_eq!(m.per_tunnel_idle_kib, Some(40.0));
        assert!((m.projected_10k_mib - (10.0 + 10_000.0 * 40.0 / 1024.0)).abs() < 1e-9);
        let reg = f.registration.as_ref().unwrap();
        assert!((reg.per_sec - 500.0).abs() < 1e-9);
        assert_eq!(reg.edge_cpu_us_per_handshake, Some(1000.0));
        assert_eq!(f.handshakes_vs_ceiling, Some(0.5));
        let met: Vec<Option<bool>> = f.targets.iter().map(|t| t.met).collect();
        // 40 KiB ≤ 48; 400.6 MiB < 500; 0.5 < 0.9.
        assert_eq!(met, [Some(true), Some(true), Some(false)]);
        let rows: Vec<&str> = r.report.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(rows, ["tunnel", "ceiling"]);
        let json: serde_json::Value = serde_json::from_str(&r.json().unwrap()).unwrap();
        assert_eq!(json["tunnels"]["memory"]["per_tunnel_idle_kib"], 40.0);
        assert_eq!(json["scenario"], "tunnels");
    }

    #[test]
    fn an_unreadable_edge_gives_no_memory_figures() {
        let mut p = phases();
        p.rss_before_kib = None;
        let r = TunnelsReport::new(settings(false), "processes", Vec::new(), p);
        assert!(r.tunnels.memory.is_none());
        assert_eq!(r.tunnels.targets.len(), 1);
    }
}
