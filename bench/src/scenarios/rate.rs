//! `rate`: an open loop. Calls are due at a fixed rate whatever the system
//! does; each call's latency is measured from the moment it was *due*, not
//! the moment it was sent, so a stall is charged to every call it delayed
//! (the correction for coordinated omission, as in wrk2).
//!
//! In-flight calls are capped: a call that falls due while the cap is
//! reached is not sent and is counted as *missed*, so an overloaded run
//! reports that it could not sustain the rate instead of queueing without
//! bound or hanging.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proxy::audit::Durability;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deploy::audit::AuditModes;
use crate::deploy::deployment::{Deployment, Spec};
use crate::load::echo::{self, Caller};
use crate::measure::measurement::{self, Measurement};
use crate::measure::procfs::Process;
use crate::measure::progress::{Counters, Progress};
use crate::measure::timeline::Sampler;
use crate::measure::usage::{self, Window};
use crate::paths::{self, Path};
use crate::report::model::{Report, Row};

/// Settings of one open-loop measurement.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    /// Calls due per second.
    pub rate: f64,
    /// Length of the schedule.
    pub duration: Duration,
    /// Calls outstanding at most; beyond it, due calls are missed.
    pub max_in_flight: usize,
    /// Payload bytes per request.
    pub size: usize,
    /// Cap on scheduled calls, so a run always ends.
    pub max_calls: u64,
    /// A call slower than this counts as an error.
    pub call_timeout: Duration,
    /// Print the progress line.
    pub progress: bool,
}

/// Settings of the `rate` scenario.
#[derive(Clone, Debug)]
pub struct RateConfig {
    /// Paths to measure (empty: every path the deployment has); `direct`
    /// (when present) becomes the baseline.
    pub paths: Vec<Path>,
    /// Rounds; each measures every path once, in order.
    pub rounds: usize,
    /// Each measurement's settings.
    pub load: OpenLoop,
    /// Where the components run.
    pub deployment: Spec,
}

/// Runs `load` against `clients` once, reading the CPU and memory of
/// `processes` over the window.
pub async fn open_loop(
    clients: &[Caller],
    load: &OpenLoop,
    label: String,
    processes: &[Process],
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!clients.is_empty(), "no clients for {label}");
    anyhow::ensure!(load.rate > 0.0, "the rate must be positive");
    let total = ((load.duration.as_secs_f64() * load.rate) as u64).min(load.max_calls);
    let due = |i: u64| Duration::from_secs_f64(i as f64 / load.rate);
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(label, counters.clone(), load.progress);
    let sampler = Sampler::start(counters.clone());
    let in_flight = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let payload = vec![7u8; load.size];
    let mut m = Measurement::new();
    // Each task is bounded by `call_timeout` and joined below.
    let mut tasks: JoinSet<Result<Duration, ()>> = JoinSet::new();
    let window = Window::open(processes);
    let started = Instant::now();
    let mut next = 0u64;
    while next < total {
        tokio::time::sleep_until(started + due(next)).await;
        // Timers fire late by up to a millisecond or more under load: send
        // every call that is due by now, each keeping its own due time.
        let now = Instant::now();
        while next < total && started + due(next) <= now {
            let intended = started + due(next);
            next += 1;
            measurement::record(&mut m.send_lag, now.saturating_duration_since(intended));
            m.scheduled += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                m.missed += 1;
                Counters::bump(&counters.missed);
                continue;
            };
            let mut client = clients[(next as usize) % clients.len()].clone();
            let req = payload.clone();
            let (counters, call_timeout) = (counters.clone(), load.call_timeout);
            tasks.spawn(async move {
                let r = tokio::time::timeout(call_timeout, client.call(req)).await;
                drop(permit);
                match r {
                    Ok(Ok(_)) => {
                        Counters::bump(&counters.done);
                        Ok(intended.elapsed())
                    }
                    _ => {
                        Counters::bump(&counters.errors);
                        Err(())
                    }
                }
            });
        }
        while let Some(done) = tasks.try_join_next() {
            tally(&mut m, done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally(&mut m, done);
    }
    m.elapsed = started.elapsed();
    m.processes = window.close();
    m.cpu = usage::total_cpu(&m.processes);
    m.rss_kib = measurement::rss_kib();
    m.timeline = sampler.finish().await;
    drop(progress);
    Ok(m)
}

fn tally(m: &mut Measurement, done: Result<Result<Duration, ()>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(latency)) => {
            measurement::record(&mut m.hist, latency);
            m.calls += 1;
        }
        _ => m.errors += 1,
    }
}

/// Measures every path of `cfg` in alternating rounds on one deployment.
pub async fn run(cfg: &RateConfig) -> anyhow::Result<Report> {
    let paths = paths::normalise(&cfg.deployment.paths(&cfg.paths)?);
    anyhow::ensure!(!paths.is_empty(), "no path to measure");
    anyhow::ensure!(cfg.rounds > 0, "need at least one round");
    let deployment =
        Deployment::start(&cfg.deployment, AuditModes::both(Durability::Always)).await?;
    let result = measure_paths(&deployment, &paths, cfg).await;
    let processes = deployment.process_report();
    let name = deployment.name();
    deployment.shutdown().await;
    let merged = result?;
    let rows = paths
        .iter()
        .map(|p| Row::new(p.name(), &merged[p]))
        .collect();
    let settings = serde_json::json!({
        "paths": paths,
        "rate": cfg.load.rate,
        "duration_s": cfg.load.duration.as_secs_f64(),
        "rounds": cfg.rounds,
        "max_in_flight": cfg.load.max_in_flight,
        "size": cfg.load.size,
        "max_calls": cfg.load.max_calls,
        "call_timeout_s": cfg.load.call_timeout.as_secs_f64(),
        "connections_per_path": echo::CONNECTIONS,
        "ceiling_connections": 1,
        "audit": "always",
        "latency_from": "intended start",
    });
    Ok(Report::new("rate", settings, rows)
        .with_ceiling(Path::Ceiling.name())
        .with_deployment(name, processes))
}

async fn measure_paths(
    deployment: &Deployment,
    paths: &[Path],
    cfg: &RateConfig,
) -> anyhow::Result<HashMap<Path, Measurement>> {
    let mut clients = HashMap::new();
    for p in paths {
        clients.insert(*p, echo::connect(deployment, *p, echo::CONNECTIONS).await?);
    }
    let mut merged: HashMap<Path, Measurement> = HashMap::new();
    for round in 0..cfg.rounds {
        for p in paths {
            let label = format!("round {}/{} {p}", round + 1, cfg.rounds);
            let m = open_loop(&clients[p], &cfg.load, label, deployment.processes()).await?;
            merged.entry(*p).or_default().merge(&m);
        }
    }
    Ok(merged)
}
