//! `bulk`: large transfers, upload and download measured separately, over
//! each selected path in alternating rounds (as `unary` alternates), so
//! that drift on a shared machine hits every path alike.
//!
//! A measurement moves `--bytes` in one direction along one path, split
//! evenly over `--streams` concurrent transfers (so runs with different
//! stream counts move the same total), and ends when the last transfer is
//! verified. Its throughput is the bytes over the wall-clock time from the
//! first request to the last verified byte; CPU is read per process over
//! the same window. `--duration` caps a measurement: a transfer still
//! running then fails the run, naming how far it got.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;

use crate::byte_size::{ByteSize, MIB};
use crate::deploy::audit::Audit;
use crate::deploy::audit::AuditModes;
use crate::deploy::deployment::{Deployment, Spec};
use crate::load::bulk::caller::{self, BulkCaller, BulkCallers};
use crate::load::bulk::transfer::{Direction, CHUNK};
use crate::load::echo;
use crate::measure::byte_progress::ByteProgress;
use crate::measure::measurement;
use crate::measure::procfs::Process;
use crate::measure::transfers::BulkMeasurement;
use crate::measure::usage::{self, Window};
use crate::paths::{self, Path};
use crate::report::bulk::{BulkReport, BulkRow};

/// Settings of one bulk measurement.
#[derive(Clone, Debug)]
pub struct BulkLoad {
    /// Bytes moved per measurement, all streams together.
    pub bytes: u64,
    /// Concurrent transfers; each moves its share of `bytes`.
    pub streams: usize,
    /// The most a measurement may take; a transfer unfinished by then
    /// fails the run.
    pub duration: Duration,
    /// Print the progress line.
    pub progress: bool,
}

impl BulkLoad {
    /// Bytes stream `i` moves: `bytes / streams`, the remainder spread
    /// one byte each over the first streams, so the shares add up to
    /// `bytes` exactly.
    pub fn share(&self, i: usize) -> u64 {
        let n = self.streams.max(1) as u64;
        self.bytes / n + u64::from((i as u64) < self.bytes % n)
    }
}

/// Settings of the `bulk` scenario.
#[derive(Clone, Debug)]
pub struct BulkConfig {
    /// Paths to measure (empty: every path the deployment has); `direct`
    /// (when present) becomes the baseline.
    pub paths: Vec<Path>,
    /// Directions to measure, each separately (empty: both).
    pub directions: Vec<Direction>,
    /// Rounds; each measures every direction and path once, in order.
    pub rounds: usize,
    /// Each measurement's settings.
    pub load: BulkLoad,
    /// The audit durability of both ends: every transfer is one request,
    /// so it weighs on the time to first byte, not on the throughput.
    pub audit: Audit,
    /// Where the components run.
    pub deployment: Spec,
}

/// Moves `load.bytes` in `direction` over `callers` once (stream `i` on
/// caller `i % len`), reading the CPU and memory of `processes` over the
/// window. Fails on the first failed or short transfer, and when
/// `load.duration` runs out first; the remaining transfers are then
/// cancelled.
pub async fn measure(
    callers: &[BulkCaller],
    direction: Direction,
    load: &BulkLoad,
    label: &str,
    processes: &[Process],
) -> anyhow::Result<BulkMeasurement> {
    anyhow::ensure!(!callers.is_empty(), "no callers for {label}");
    let moved = Arc::new(AtomicU64::new(0));
    let progress = ByteProgress::start(label.to_string(), moved.clone(), load.bytes, load.progress);
    let window = Window::open(processes);
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + load.duration);
    // Dropping the set (an early return) aborts the transfers still going.
    let mut transfers = JoinSet::new();
    for i in 0..load.streams {
        let caller = callers[i % callers.len()].clone();
        let (moved, bytes) = (moved.clone(), load.share(i));
        transfers.spawn(async move {
            caller
                .transfer(direction, bytes, &moved)
                .await
                .with_context(|| format!("stream {} of {bytes} bytes", i + 1))
        });
    }
    let mut m = BulkMeasurement::new();
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, transfers.join_next()).await else {
            let mib = |b: u64| b as f64 / MIB as f64;
            anyhow::bail!(
                "{label}: {:.1} of {:.1} MiB moved when the {:?} --duration cap ran out, \
                 {} of {} streams finished (raise --duration, or lower --bytes)",
                mib(moved.load(Ordering::Relaxed)),
                mib(load.bytes),
                load.duration,
                m.transfers,
                load.streams
            );
        };
        let Some(joined) = next else { break };
        let done = joined
            .with_context(|| format!("{label}: a transfer task failed"))?
            .with_context(|| label.to_string())?;
        m.bytes += done.bytes;
        m.transfers += 1;
        measurement::record(&mut m.ttfb, done.ttfb);
    }
    m.elapsed = started.elapsed();
    m.processes = window.close();
    m.cpu = usage::total_cpu(&m.processes);
    m.rss_kib = measurement::rss_kib();
    drop(progress);
    anyhow::ensure!(
        m.bytes == load.bytes,
        "{label}: {} of {} bytes verified",
        m.bytes,
        load.bytes
    );
    Ok(m)
}

/// Measures every direction and path of `cfg` in alternating rounds, all
/// rounds of a direction and path merged into one row. Uses one
/// deployment for the run.
pub async fn run(cfg: &BulkConfig) -> anyhow::Result<BulkReport> {
    let paths = paths::normalise(&cfg.deployment.paths(&cfg.paths)?);
    let directions = directions(&cfg.directions);
    anyhow::ensure!(!paths.is_empty(), "no path to measure");
    anyhow::ensure!(cfg.rounds > 0, "need at least one round");
    anyhow::ensure!(cfg.load.streams > 0, "need --streams ≥ 1");
    anyhow::ensure!(
        cfg.load.bytes >= cfg.load.streams as u64,
        "--bytes ({}) must be at least one byte per stream (--streams {})",
        ByteSize(cfg.load.bytes),
        cfg.load.streams
    );
    let audit = AuditModes::both(cfg.audit.durability());
    let deployment = Deployment::start(&cfg.deployment, audit).await?;
    let result = measure_all(&deployment, &paths, &directions, cfg).await;
    let processes = deployment.process_report();
    let name = deployment.name();
    deployment.shutdown().await;
    let mut merged = result?;
    let mut rows = Vec::new();
    for d in &directions {
        for p in &paths {
            let m = merged.remove(&(*d, *p)).unwrap_or_default();
            rows.push(BulkRow::new(*p, *d, &m));
        }
    }
    let settings = serde_json::json!({
        "paths": paths,
        "directions": directions,
        "bytes": cfg.load.bytes,
        "bytes_text": ByteSize(cfg.load.bytes).to_string(),
        "streams": cfg.load.streams,
        "bytes_per_stream": cfg.load.share(0),
        "message_bytes": CHUNK,
        "duration_cap_s": cfg.load.duration.as_secs_f64(),
        "rounds": cfg.rounds,
        "http_connections_per_path": echo::CONNECTIONS.min(cfg.load.streams),
        "ceiling_connections": 1,
        "audit": cfg.audit.name(),
    });
    Ok(BulkReport::new(settings, rows).with_deployment(name, processes))
}

/// `asked` without repeats, or both directions when nothing was asked.
fn directions(asked: &[Direction]) -> Vec<Direction> {
    let mut out: Vec<Direction> = Vec::new();
    for d in asked {
        if !out.contains(d) {
            out.push(*d);
        }
    }
    if out.is_empty() {
        Direction::ALL.to_vec()
    } else {
        out
    }
}

async fn measure_all(
    deployment: &Deployment,
    paths: &[Path],
    directions: &[Direction],
    cfg: &BulkConfig,
) -> anyhow::Result<HashMap<(Direction, Path), BulkMeasurement>> {
    let mut callers: HashMap<Path, BulkCallers> = HashMap::new();
    for p in paths {
        let c = caller::connect(deployment, *p, cfg.load.streams, cfg.load.duration).await?;
        callers.insert(*p, c);
    }
    let mut merged: HashMap<(Direction, Path), BulkMeasurement> = HashMap::new();
    for round in 0..cfg.rounds {
        for d in directions {
            for p in paths {
                let label = format!("round {}/{} {d} {p}", round + 1, cfg.rounds);
                let of_path = &callers[p].callers;
                let m = measure(of_path, *d, &cfg.load, &label, deployment.processes()).await?;
                merged.entry((*d, *p)).or_default().merge(&m);
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        for (bytes, streams) in [(10u64, 3usize), (1 << 30, 16), (7, 7), (5, 1)] {
            let load = BulkLoad {
                bytes,
                streams,
                duration: Duration::from_secs(1),
                progress: false,
            };
            let shares: Vec<u64> = (0..streams).map(|i| load.share(i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), bytes, "{bytes} over {streams}");
            let (lo, hi) = (shares.iter().min(), shares.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{shares:?}");
        }
    }

    #[test]
    fn directions_default_to_both_without_repeats() {
        assert_eq!(directions(&[]), Direction::ALL);
        let d = [Direction::Download, Direction::Upload, Direction::Download];
        assert_eq!(directions(&d), [Direction::Download, Direction::Upload]);
    }
}
