//! `tunnels`: many tunnel clients connected to one edge at once, idle and
//! lightly loaded. What it answers: how much memory one idle tunnel costs
//! the edge, how fast the edge admits tunnels compared with the bare QUIC
//! and TLS handshake beneath it, what idle tunnels cost in CPU
//! (keepalives), and whether they slow the calls of a tunnel that is
//! working.
//!
//! In order, on one deployment (the edge its own process by default):
//!
//! 1. mint one identity per tunnel from the deployment's CA (timed, but
//!    before and outside every measurement);
//! 2. a light open-loop load ([`rate::open_loop`]) on the real
//!    tunnel, with only the deployment's own tunnel connected;
//! 3. the ceiling: every tunnel's handshake against a bare quinn endpoint
//!    with Tether's TLS ([`HandshakeServer`]), `--concurrency` in flight;
//!    then closed;
//! 4. the edge's RSS; every tunnel registers at the edge ([`fleet`]),
//!    `--concurrency` in flight, with the CPU of every process read over
//!    the phase; the edge's RSS again;
//! 5. a settling pause, then an idle window: each process's CPU, and the
//!    edge's RSS at its end;
//! 6. the same light load, with every tunnel still connected;
//! 7. every tunnel closed, the deployment stopped.
//!
//! The whole run is capped by `--duration`: a phase that would start after
//! the cap is skipped and reported, and no tunnel is dialed after it.

use std::sync::Arc;
use std::time::Duration;

use proxy::audit::Durability;
use proxy::Limits;
use tokio::time::Instant;

use crate::deploy::audit::AuditModes;
use crate::deploy::deployment::{Deployment, Spec, TARGET_HAS_NO_TUNNEL_SITE};
use crate::deploy::nofile;
use crate::load::echo::{self, Callers};
use crate::load::tunnels::fleet::{self, Plan};
use crate::load::tunnels::handshake_ceiling::HandshakeServer;
use crate::load::tunnels::identities;
use crate::load::tunnels::registration::Goal;
use crate::measure::usage::Window;
use crate::paths::Path;
use crate::report::tunnels::{Phases, Settings, TunnelsReport};
use crate::scenarios::rate::{self, OpenLoop};

/// The pause between the last registration and the idle window, so the
/// window sees tunnels at rest (session tickets sent, buffers released).
pub const SETTLE: Duration = Duration::from_secs(2);

/// Settings of the `tunnels` scenario.
#[derive(Clone, Debug)]
pub struct TunnelsConfig {
    /// Tunnels to connect.
    pub tunnels: usize,
    /// Handshakes in flight.
    pub concurrency: usize,
    /// QUIC client endpoints (UDP sockets) the tunnels share.
    pub endpoints: usize,
    /// A tunnel not registered within this counts as failed.
    pub timeout: Duration,
    /// The idle window's length.
    pub idle: Duration,
    /// The light load, or none.
    pub load: Option<OpenLoop>,
    /// Cap on the whole run.
    pub cap: Duration,
    /// Print the progress line.
    pub progress: bool,
    /// Where the components run (not `--target`).
    pub deployment: Spec,
}

/// Runs the scenario and returns its report.
pub async fn run(cfg: &TunnelsConfig) -> anyhow::Result<TunnelsReport> {
    anyhow::ensure!(cfg.tunnels > 0, "--tunnels must be at least 1");
    anyhow::ensure!(cfg.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(cfg.endpoints > 0, "--endpoints must be at least 1");
    if let Spec::Target(_) = cfg.deployment {
        anyhow::bail!(TARGET_HAS_NO_TUNNEL_SITE);
    }
    let per_phase = u64::try_from(cfg.endpoints).unwrap_or(u64::MAX);
    nofile::check(nofile::BASE_NEED.saturating_add(per_phase.saturating_mul(2)))?;
    let deadline = Instant::now() + cfg.cap;
    let deployment =
        Deployment::start(&cfg.deployment, AuditModes::both(Durability::Always)).await?;
    let result = phases(&deployment, cfg, deadline).await;
    let processes = deployment.process_report();
    let name = deployment.name();
    deployment.shutdown().await;
    let phases = result?;
    Ok(TunnelsReport::new(settings(cfg), name, processes, phases))
}

fn settings(cfg: &TunnelsConfig) -> Settings {
    let limits = Limits::default();
    let load = cfg.load.as_ref().map(|l| (l.rate, l.duration));
    Settings {
        tunnels: cfg.tunnels as u64,
        load,
        keepalive: limits.keepalive,
        in_process: matches!(cfg.deployment, Spec::InProcess),
        json: serde_json::json!({
            "tunnels": cfg.tunnels,
            "concurrency": cfg.concurrency,
            "endpoints": cfg.endpoints,
            "timeout_s": cfg.timeout.as_secs_f64(),
            "settle_s": SETTLE.as_secs_f64(),
            "idle_s": cfg.idle.as_secs_f64(),
            "load_rate": load.map(|l| l.0),
            "load_duration_s": load.map(|l| l.1.as_secs_f64()),
            "duration_cap_s": cfg.cap.as_secs_f64(),
            "keepalive_s": limits.keepalive.as_secs_f64(),
            "idle_timeout_s": limits.idle_timeout.as_secs_f64(),
            "identities": "one ECDSA P-256 certificate per tunnel",
            "audit": "always",
        }),
    }
}

async fn phases(d: &Deployment, cfg: &TunnelsConfig, deadline: Instant) -> anyhow::Result<Phases> {
    let site = d.tunnel_site()?;
    let keys = d.ceiling()?;
    let ids = identities::mint(Arc::new(site.ca), keys.roots.clone(), cfg.tunnels).await?;
    let mut p = Phases {
        edge: site.edge.name.clone(),
        minted: (ids.configs.len() as u64, ids.minted_in),
        load_without: None,
        ceiling: None,
        tunnel: None,
        rss_before_kib: None,
        rss_connected_kib: None,
        idle: None,
        load_with: None,
        skipped: Vec::new(),
    };
    let callers = match &cfg.load {
        Some(_) => Some(echo::connect(d, Path::Tunnel, echo::CONNECTIONS).await?),
        None => None,
    };
    p.load_without = light_load(
        d,
        cfg,
        callers.as_ref(),
        deadline,
        "no extra tunnels",
        &mut p.skipped,
    )
    .await?;

    let plan = |addr, goal, label: &str| Plan {
        addr,
        server_name: site.server_name.clone(),
        goal,
        concurrency: cfg.concurrency,
        timeout: cfg.timeout,
        deadline,
        label: label.to_string(),
        progress: cfg.progress,
    };
    if Instant::now() < deadline {
        let server = HandshakeServer::start(&keys)?;
        let plan = plan(server.addr, Goal::Handshake, "ceiling handshakes");
        let (held, outcome) = fleet::dial_all(
            fleet::endpoints(cfg.endpoints)?,
            &ids.configs,
            &plan,
            d.processes(),
        )
        .await?;
        held.close().await;
        drop(server);
        p.ceiling = Some(outcome);
    } else {
        p.skipped.push(skipped("the ceiling"));
    }
    if Instant::now() >= deadline {
        p.skipped.push(skipped("the registrations at the edge"));
        return Ok(p);
    }
    p.rss_before_kib = site.edge.rss_kib();
    let plan = plan(site.addr, Goal::Register, "tunnel registrations");
    let (held, outcome) = fleet::dial_all(
        fleet::endpoints(cfg.endpoints)?,
        &ids.configs,
        &plan,
        d.processes(),
    )
    .await?;
    p.rss_connected_kib = site.edge.rss_kib();
    p.tunnel = Some(outcome);
    // Whatever happens next, the tunnels are closed before returning.
    let rest = with_tunnels(d, cfg, callers.as_ref(), deadline, &site.edge, &mut p).await;
    held.close().await;
    rest?;
    Ok(p)
}

/// The idle window and the loaded run, with every tunnel connected.
async fn with_tunnels(
    d: &Deployment,
    cfg: &TunnelsConfig,
    callers: Option<&Callers>,
    deadline: Instant,
    edge: &crate::measure::procfs::Process,
    p: &mut Phases,
) -> anyhow::Result<()> {
    let idle_ends = Instant::now() + SETTLE + cfg.idle;
    if idle_ends <= deadline {
        tokio::time::sleep(SETTLE).await;
        let window = Window::open(d.processes());
        let started = Instant::now();
        tokio::time::sleep(cfg.idle).await;
        let usage = window.close();
        p.idle = Some((started.elapsed(), usage, edge.rss_kib()));
    } else {
        p.skipped.push(skipped("the idle window"));
    }
    let label = format!(
        "{} tunnels",
        p.tunnel.as_ref().map_or(0, |t| t.measurement.calls)
    );
    p.load_with = light_load(d, cfg, callers, deadline, &label, &mut p.skipped).await?;
    Ok(())
}

/// The light load on the real tunnel, unless there is none or it would
/// run past the deadline.
async fn light_load(
    d: &Deployment,
    cfg: &TunnelsConfig,
    callers: Option<&Callers>,
    deadline: Instant,
    label: &str,
    skips: &mut Vec<String>,
) -> anyhow::Result<Option<crate::measure::measurement::Measurement>> {
    let (Some(load), Some(callers)) = (&cfg.load, callers) else {
        return Ok(None);
    };
    if Instant::now() + load.duration > deadline {
        skips.push(skipped(&format!("the light load with {label}")));
        return Ok(None);
    }
    let label = format!("light load, {label}");
    Ok(Some(
        rate::open_loop(callers, load, label, d.processes()).await?,
    ))
}

fn skipped(what: &str) -> String {
    format!("{what}: skipped, the run reached its --duration cap")
}
