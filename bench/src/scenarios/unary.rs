//! `unary`: small gRPC unary calls in a closed loop (each of `concurrency`
//! workers sends its next call when the previous one answers), over each
//! selected path, in alternating rounds so that drift on a shared machine
//! hits every path alike.
//!
//! A closed loop measures capacity, not latency under a given load: when
//! the system slows, the loop slows with it and the slow period is
//! under-sampled. `rate` is the scenario for latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deploy::audit::Audit;
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

/// Settings of one closed-loop measurement.
#[derive(Clone, Debug)]
pub struct ClosedLoop {
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Length of the measurement window.
    pub duration: Duration,
    /// Payload bytes per request (the echo answers as many).
    pub size: usize,
    /// Cap on successful calls, so a run always ends.
    pub max_calls: u64,
    /// A call slower than this counts as an error, so a stuck call cannot
    /// hold the run past its window.
    pub call_timeout: Duration,
    /// Print the progress line.
    pub progress: bool,
}

/// Settings of the `unary` scenario.
#[derive(Clone, Debug)]
pub struct UnaryConfig {
    /// Paths to measure (empty: every path the deployment has); `direct`
    /// (when present) becomes the baseline.
    pub paths: Vec<Path>,
    /// Rounds; each measures every path once, in order.
    pub rounds: usize,
    /// Audit durability at both ends.
    pub audit: Audit,
    /// Each measurement's settings.
    pub load: ClosedLoop,
    /// Where the components run.
    pub deployment: Spec,
}

/// Runs `load` against `clients` once, reading the CPU and memory of
/// `processes` over the window.
pub async fn closed_loop(
    clients: &[Caller],
    load: &ClosedLoop,
    label: String,
    processes: &[Process],
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!clients.is_empty(), "no clients for {label}");
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(label, counters.clone(), load.progress);
    let sampler = Sampler::start(counters.clone());
    let started = Instant::now();
    let deadline = started + load.duration;
    let window = Window::open(processes);
    let mut workers = Vec::with_capacity(load.concurrency);
    for i in 0..load.concurrency {
        let mut client = clients[i % clients.len()].clone();
        let counters = counters.clone();
        let (size, max_calls, call_timeout) = (load.size, load.max_calls, load.call_timeout);
        // Joined below; each call is bounded by `call_timeout`.
        workers.push(tokio::spawn(async move {
            let mut m = Measurement::new();
            let payload = vec![7u8; size];
            while Instant::now() < deadline && Counters::get(&counters.done) < max_calls {
                let req = payload.clone();
                let t0 = Instant::now();
                match tokio::time::timeout(call_timeout, client.call(req)).await {
                    Ok(Ok(_)) => {
                        measurement::record(&mut m.hist, t0.elapsed());
                        m.calls += 1;
                        Counters::bump(&counters.done);
                    }
                    Ok(Err(_)) | Err(_) => {
                        m.errors += 1;
                        Counters::bump(&counters.errors);
                    }
                }
            }
            m
        }));
    }
    let mut total = Measurement::new();
    for w in workers {
        total.merge(&w.await?);
    }
    total.elapsed = started.elapsed();
    total.processes = window.close();
    total.cpu = usage::total_cpu(&total.processes);
    total.rss_kib = measurement::rss_kib();
    total.timeline = sampler.finish().await;
    drop(progress);
    Ok(total)
}

/// Measures every path of `cfg` in alternating rounds, all rounds of a
/// path merged into one row. Uses one deployment for the run.
pub async fn run(cfg: &UnaryConfig) -> anyhow::Result<Report> {
    let paths = paths::normalise(&cfg.deployment.paths(&cfg.paths)?);
    anyhow::ensure!(!paths.is_empty(), "no path to measure");
    anyhow::ensure!(cfg.rounds > 0, "need at least one round");
    anyhow::ensure!(cfg.load.concurrency > 0, "need concurrency ≥ 1");
    let deployment =
        Deployment::start(&cfg.deployment, AuditModes::both(cfg.audit.durability())).await?;
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
        "concurrency": cfg.load.concurrency,
        "duration_s": cfg.load.duration.as_secs_f64(),
        "rounds": cfg.rounds,
        "size": cfg.load.size,
        "max_calls": cfg.load.max_calls,
        "call_timeout_s": cfg.load.call_timeout.as_secs_f64(),
        "connections_per_path": echo::CONNECTIONS,
        "ceiling_connections": 1,
        "audit": cfg.audit.name(),
    });
    Ok(Report::new("unary", settings, rows)
        .with_ceiling(Path::Ceiling.name())
        .with_deployment(name, processes))
}

async fn measure_paths(
    deployment: &Deployment,
    paths: &[Path],
    cfg: &UnaryConfig,
) -> anyhow::Result<HashMap<Path, Measurement>> {
    let mut clients = HashMap::new();
    for p in paths {
        clients.insert(
            *p,
            echo::connect(deployment, *p, cfg.load.concurrency).await?,
        );
    }
    let mut merged: HashMap<Path, Measurement> = HashMap::new();
    for round in 0..cfg.rounds {
        for p in paths {
            let label = format!("round {}/{} {p}", round + 1, cfg.rounds);
            let m = closed_loop(&clients[p], &cfg.load, label, deployment.processes()).await?;
            merged.entry(*p).or_default().merge(&m);
        }
    }
    Ok(merged)
}
