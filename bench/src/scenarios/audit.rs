//! `audit`: the `unary` closed loop over the tunnel path, once per audit
//! durability mode, in alternating rounds; each measurement gets a fresh
//! deployment because the mode is fixed when the audit log opens. The
//! first mode is the baseline of the ratios. Not available against
//! `--target`: bench cannot set a foreign edge's audit mode.

use crate::deploy::audit::{Audit, AuditModes};
use crate::deploy::deployment::{Deployment, Spec};
use crate::load::echo;
use crate::measure::measurement::Measurement;
use crate::measure::usage::ProcessInfo;
use crate::paths::Path;
use crate::report::model::{Report, Row};
use crate::scenarios::unary::{closed_loop, ClosedLoop};

/// Settings of the `audit` scenario.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Modes to compare; the first is the baseline.
    pub modes: Vec<Audit>,
    /// The client's mode when it should differ from the edge's (in
    /// production the two ends write to different disks; here they share
    /// one).
    pub client_mode: Option<Audit>,
    /// Rounds; each measures every mode once.
    pub rounds: usize,
    /// Each measurement's settings.
    pub load: ClosedLoop,
    /// Where the components run (a fresh deployment per measurement).
    pub deployment: Spec,
}

/// Runs the comparison.
pub async fn run(cfg: &AuditConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(!cfg.modes.is_empty(), "need at least one audit mode");
    anyhow::ensure!(cfg.rounds > 0, "need at least one round");
    anyhow::ensure!(cfg.load.concurrency > 0, "need concurrency ≥ 1");
    anyhow::ensure!(
        !matches!(cfg.deployment, Spec::Target(_)),
        "audit is not available against --target: it sets the edge's audit mode, \
         which only a deployment bench starts allows (run it without --target)"
    );
    let mut processes: Vec<ProcessInfo> = Vec::new();
    let mut name = cfg.deployment.name();
    let mut merged: Vec<Measurement> = cfg.modes.iter().map(|_| Measurement::new()).collect();
    for round in 0..cfg.rounds {
        for (mode, total) in cfg.modes.iter().zip(merged.iter_mut()) {
            let modes = AuditModes {
                edge: mode.durability(),
                client: cfg.client_mode.unwrap_or(*mode).durability(),
            };
            let deployment = Deployment::start(&cfg.deployment, modes).await?;
            let label = format!("round {}/{} audit {}", round + 1, cfg.rounds, mode.name());
            let result = match echo::connect(&deployment, Path::Tunnel, cfg.load.concurrency).await
            {
                Ok(clients) => {
                    closed_loop(&clients, &cfg.load, label, deployment.processes()).await
                }
                Err(e) => Err(e),
            };
            let stats = deployment.edge_audit_stats();
            // Each mode's processes are new: keep the latest start's
            // figures (idle RSS does not depend on the mode).
            processes = deployment.process_report();
            name = deployment.name();
            deployment.shutdown().await;
            total.merge(&result?);
            if let (true, Some(stats)) = (cfg.load.progress, stats) {
                eprintln!(
                    "  audit {}: edge audit wrote {} records with {} fsyncs",
                    mode.name(),
                    stats.records_written,
                    stats.syncs
                );
            }
        }
    }
    let rows = cfg
        .modes
        .iter()
        .zip(&merged)
        .map(|(mode, m)| Row::new(mode.name(), m))
        .collect();
    let settings = serde_json::json!({
        "path": "tunnel",
        "modes": cfg.modes,
        "client_audit": cfg.client_mode.map_or("same as edge", Audit::name),
        "concurrency": cfg.load.concurrency,
        "duration_s": cfg.load.duration.as_secs_f64(),
        "rounds": cfg.rounds,
        "size": cfg.load.size,
        "max_calls": cfg.load.max_calls,
    });
    Ok(Report::new("audit", settings, rows).with_deployment(name, processes))
}
