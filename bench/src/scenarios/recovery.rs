//! `bench recovery`: how long a tunnel is out after its only edge crashes.
//! Each trial sends SIGKILL to the edge process, keeps it down for
//! `--down`, restarts it on the same UDP address with the same key, and
//! calls through it until a call succeeds. Measured per trial: from the
//! restart (the new process spawned) and from the kill to the first
//! successful call. Between trials the tunnel stays up for `--hold`, longer
//! than the client's `stable_after_ms` (5 s), so every trial starts from
//! the client's first backoff step, as after a crash in production.
//!
//! Runs the release binaries with their default settings (the process
//! deployment); the in-process and target deployments cannot be killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::Process;

use crate::deploy::processes::Binaries;

/// The host the calls use (the example tunnel's gRPC service).
const ECHO_HOST: &str = "echo.demo.tunnel.local";

/// Longest a trial may take to serve again before it counts as failed.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What `bench recovery` runs.
#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    /// Crashes to measure.
    pub trials: usize,
    /// How long the edge stays down before it is restarted.
    pub down: Duration,
    /// How long the tunnel stays up between trials.
    pub hold: Duration,
    /// Where the binaries are (`--bin-dir`), else next to bench.
    pub bin_dir: Option<PathBuf>,
    /// The p99 the issue asks for, to say whether the run met it.
    pub target: Duration,
}

/// The figures of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecoveryReport {
    /// Per trial: from the restart to the first successful call, ms.
    pub from_restart_ms: Vec<f64>,
    /// Per trial: from the kill to the first successful call, ms.
    pub from_kill_ms: Vec<f64>,
    /// Calls that failed while the tunnel was out (all trials).
    pub failed_calls: u64,
    /// The edge's down time asked for, ms.
    pub down_ms: f64,
    /// The p99 target, ms.
    pub target_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl RecoveryReport {
    /// p99 from the restart, ms.
    pub fn p99_from_restart(&self) -> f64 {
        quantile(&self.from_restart_ms, 0.99)
    }

    /// Whether the run met its target.
    pub fn met(&self) -> bool {
        self.p99_from_restart() <= self.target_ms
    }

    /// The table `bench recovery` prints.
    pub fn table(&self) -> String {
        let row = |name: &str, v: &[f64]| {
            format!(
                "{name:<24} {:>8.0} {:>8.0} {:>8.0} {:>8.0}\n",
                quantile(v, 0.5),
                quantile(v, 0.9),
                quantile(v, 0.99),
                quantile(v, 1.0)
            )
        };
        let mut out = format!(
            "recovery after kill -9 of the only edge, {} trials, down {:.0} ms\n\
             {:<24} {:>8} {:>8} {:>8} {:>8}\n",
            self.from_restart_ms.len(),
            self.down_ms,
            "ms to first served call",
            "p50",
            "p90",
            "p99",
            "max"
        );
        out.push_str(&row("from the restart", &self.from_restart_ms));
        out.push_str(&row("from the kill", &self.from_kill_ms));
        out.push_str(&format!(
            "calls failed while out: {}\ntarget p99 from the restart ≤ {:.0} ms: {}\n",
            self.failed_calls,
            self.target_ms,
            if self.met() { "met" } else { "MISSED" }
        ));
        out
    }
}

/// Calls until one succeeds; returns the failed calls before it.
async fn until_served(plaintext: SocketAddr) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let ok = match grpc_plaintext(plaintext, ECHO_HOST).await {
            Ok(mut echo) => echo.unary(EchoRequest::default()).await.is_ok(),
            Err(_) => false,
        };
        if ok {
            return Ok(failed);
        }
        failed += 1;
        anyhow::ensure!(
            start.elapsed() < GIVE_UP,
            "the tunnel did not come back within {GIVE_UP:?}"
        );
        // Paces the retries; each try is a whole call.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the trials.
pub async fn run(cfg: &RecoveryConfig) -> anyhow::Result<RecoveryReport> {
    let bins = Binaries::find(cfg.bin_dir.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-recovery-")
        .tempdir()
        .context("creating a temporary directory")?;
    let d = dir.path();
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let upstream = tether_tests::upstream::start(any).await?;
    files::ensure_dev_pki(d).context("writing the development PKI")?;
    let policies = Policies::allow_all();
    let edge_files = |tunnel_listen| EdgeFiles {
        writer: "bench recovery".into(),
        tunnel_listen,
        ingress_listen: any,
        plaintext_listen: any,
        admin_listen: None,
        cp_upstream: upstream.addr,
        audit: Durability::None,
    };
    let edge_toml = files::write_edge(d, &edge_files(any), &policies)?;
    let mut edge = Process::start_program(&bins.edge, &edge_toml).await;
    let tunnels = edge.addr("tunnels");
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: "bench recovery".into(),
            edge_address: tunnels,
            upstream: upstream.addr,
            admin_listen: None,
            egress_listen: any,
            audit: Durability::None,
        },
        &policies,
    )?;
    let _client = Process::start_program(&bins.client, &client_toml).await;
    until_served(edge.addr("plaintext")).await?;
    // Restarts listen where the first edge did.
    let edge_toml = files::write_edge(d, &edge_files(tunnels), &policies)?;

    let mut report = RecoveryReport {
        from_restart_ms: Vec::new(),
        from_kill_ms: Vec::new(),
        failed_calls: 0,
        down_ms: ms(cfg.down),
        target_ms: ms(cfg.target),
    };
    for trial in 0..cfg.trials {
        tokio::time::sleep(cfg.hold).await;
        let killed = Instant::now();
        edge.kill().await;
        tokio::time::sleep(cfg.down).await;
        let restarted = Instant::now();
        edge = Process::start_program(&bins.edge, &edge_toml).await;
        report.failed_calls += until_served(edge.addr("plaintext")).await?;
        report.from_restart_ms.push(ms(restarted.elapsed()));
        report.from_kill_ms.push(ms(killed.elapsed()));
        eprintln!(
            "trial {}/{}: served {:.0} ms after the restart",
            trial + 1,
            cfg.trials,
            ms(restarted.elapsed())
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 10.0);
        assert_eq!(quantile(&v, 0.99), 20.0);
        assert_eq!(quantile(&v, 1.0), 20.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
