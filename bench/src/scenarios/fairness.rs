//! `bench fairness`: one caller floods the edge while another sends a
//! steady load, and the steady caller's latency is compared with its
//! latency alone. Both callers are mTLS identities of their own
//! (`caller/quiet`, `caller/flood`) minted from the deployment's CA, so
//! the edge tells them apart as it would in production.
//!
//! Each round measures the quiet caller's open loop (`--rate`, latency
//! from each call's intended start) twice: alone, then with the flood
//! running beside it, which never honours a retry-after: an open loop
//! offering `--flood-rate` calls per second (the default), or a closed loop
//! at `--flood-concurrency` that sends its next call the moment the last
//! one is answered or refused. Every mode (`limited`: the edge with
//! `[limits] max_caller_calls` and `caller_rate` set; `unlimited`: every
//! per-caller bound off) runs on a fresh deployment of the release
//! binaries, so the figures show what the limits buy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use certs::{Ca, IdentityKind, LeafSpec};
use proxy::audit::Durability;
use tether_tests::callers::{caller_tls, grpc_plaintext, grpc_tls};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::EchoRequest;
use tether_tests::process::Process;
use tonic::transport::Channel;

use crate::deploy::processes::Binaries;
use crate::load::echo::Caller;
use crate::measure::measurement::Measurement;
use crate::scenarios::rate::{open_loop, OpenLoop};

/// The host the calls use (the example tunnel's gRPC service).
const ECHO_HOST: &str = "echo.demo.tunnel.local";

/// Connections the flood spreads its calls over (as `unary` does).
const FLOOD_CONNECTIONS: usize = 4;

/// Whether the edge runs with per-caller bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `max_caller_calls` and `caller_rate` as configured.
    Limited,
    /// Every per-caller and per-tunnel bound off.
    Unlimited,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Limited => "limited",
            Mode::Unlimited => "unlimited",
        }
    }
}

/// What `bench fairness` runs.
#[derive(Clone, Debug)]
pub struct FairnessConfig {
    /// Modes to compare, each on a fresh deployment.
    pub modes: Vec<Mode>,
    /// The quiet caller's open loop.
    pub quiet: OpenLoop,
    /// Calls the flood keeps in flight (closed loop), or at most (open
    /// loop).
    pub flood_concurrency: usize,
    /// The flood's offered calls per second (open loop); 0: a closed loop
    /// that sends its next call the moment the last one ends.
    pub flood_rate: f64,
    /// `[limits] max_caller_calls` in `limited` mode.
    pub max_caller_calls: u32,
    /// `[limits] caller_rate` in `limited` mode (0: off).
    pub caller_rate: u32,
    /// Rounds per mode; each measures alone, then under the flood.
    pub rounds: usize,
    /// Audit durability at both ends.
    pub audit: Durability,
    /// Where the binaries are (`--bin-dir`), else next to bench.
    pub bin_dir: Option<PathBuf>,
    /// The loaded p99 / unloaded p99 the issue asks for at most.
    pub target: f64,
}

/// The quiet caller's figures in one condition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuietFigures {
    /// Calls answered.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that could not start (in-flight cap reached).
    pub missed: u64,
    /// Latency from the intended start, µs.
    pub p50_us: u64,
    /// µs.
    pub p99_us: u64,
    /// µs.
    pub p999_us: u64,
}

impl QuietFigures {
    fn of(m: &Measurement) -> Self {
        Self {
            calls: m.calls,
            errors: m.errors,
            missed: m.missed,
            p50_us: m.hist.value_at_quantile(0.5),
            p99_us: m.hist.value_at_quantile(0.99),
            p999_us: m.hist.value_at_quantile(0.999),
        }
    }
}

/// What the flood got.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FloodFigures {
    /// Calls answered, per second.
    pub served_per_sec: f64,
    /// Calls refused `over-limit`, per second (open loop: every failed
    /// call).
    pub refused_per_sec: f64,
    /// Calls that failed otherwise, in all (open loop: calls due while
    /// `--flood-concurrency` were outstanding, not sent).
    pub other_errors: u64,
}

/// One mode's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModeFigures {
    /// `limited` or `unlimited`.
    pub mode: Mode,
    /// The quiet caller alone.
    pub alone: QuietFigures,
    /// The quiet caller beside the flood.
    pub flooded: QuietFigures,
    /// The flood.
    pub flood: FloodFigures,
    /// `flooded.p99 / alone.p99`.
    pub p99_ratio: f64,
}

/// The figures of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FairnessReport {
    /// Per mode.
    pub modes: Vec<ModeFigures>,
    /// The settings the run used.
    pub settings: serde_json::Value,
    /// The ratio asked for at most.
    pub target: f64,
}

impl FairnessReport {
    /// Whether `limited` (when measured) kept the quiet caller's p99
    /// within the target.
    pub fn met(&self) -> bool {
        self.modes
            .iter()
            .filter(|m| m.mode == Mode::Limited)
            .all(|m| m.p99_ratio <= self.target && m.flooded.errors == 0)
    }

    /// The table `bench fairness` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "fairness: the quiet caller's latency alone and beside a flood\n{:<10} {:<8} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>11} {:>11}\n",
            "mode", "quiet", "calls", "errors", "missed", "p50 µs", "p99 µs", "p99.9 µs", "flood ok/s", "refused/s"
        );
        for m in &self.modes {
            for (label, q, flood) in [
                ("alone", &m.alone, None),
                ("flooded", &m.flooded, Some(&m.flood)),
            ] {
                let (ok, refused) = flood.map_or(("-".into(), "-".into()), |f| {
                    (
                        format!("{:.0}", f.served_per_sec),
                        format!("{:.0}", f.refused_per_sec),
                    )
                });
                out.push_str(&format!(
                    "{:<10} {:<8} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>11} {:>11}\n",
                    m.mode.name(),
                    label,
                    q.calls,
                    q.errors,
                    q.missed,
                    q.p50_us,
                    q.p99_us,
                    q.p999_us,
                    ok,
                    refused
                ));
            }
            out.push_str(&format!(
                "{:<10} p99 beside the flood / alone: {:.2}×\n",
                m.mode.name(),
                m.p99_ratio
            ));
        }
        if self.modes.iter().any(|m| m.mode == Mode::Limited) {
            out.push_str(&format!(
                "target (limited) ≤ {:.2}× with no failed quiet call: {}\n",
                self.target,
                if self.met() { "met" } else { "MISSED" }
            ));
        }
        out
    }
}

/// Runs every mode.
pub async fn run(cfg: &FairnessConfig) -> anyhow::Result<FairnessReport> {
    anyhow::ensure!(!cfg.modes.is_empty(), "no mode to measure");
    anyhow::ensure!(cfg.rounds > 0, "need at least one round");
    anyhow::ensure!(
        cfg.flood_concurrency > 0,
        "--flood-concurrency must be at least 1"
    );
    let bins = Binaries::find(cfg.bin_dir.as_deref())?;
    let mut modes = Vec::new();
    for mode in &cfg.modes {
        modes.push(run_mode(&bins, *mode, cfg).await?);
    }
    let settings = serde_json::json!({
        "quiet_rate": cfg.quiet.rate,
        "duration_s": cfg.quiet.duration.as_secs_f64(),
        "quiet_max_in_flight": cfg.quiet.max_in_flight,
        "size": cfg.quiet.size,
        "flood_concurrency": cfg.flood_concurrency,
        "flood_rate": if cfg.flood_rate > 0.0 { serde_json::json!(cfg.flood_rate) } else { serde_json::json!("closed loop") },
        "flood_connections": FLOOD_CONNECTIONS,
        "max_caller_calls": cfg.max_caller_calls,
        "caller_rate": cfg.caller_rate,
        "rounds": cfg.rounds,
        "audit": format!("{:?}", cfg.audit),
        "latency_from": "intended start",
    });
    Ok(FairnessReport {
        modes,
        settings,
        target: cfg.target,
    })
}

/// The `[limits]` table a mode's edge runs with.
fn limits_table(mode: Mode, cfg: &FairnessConfig) -> String {
    match mode {
        Mode::Limited => format!(
            "\n[limits]\nmax_caller_calls = {}\ncaller_rate = {}\n",
            cfg.max_caller_calls, cfg.caller_rate
        ),
        Mode::Unlimited => {
            "\n[limits]\nmax_caller_calls = 0\nmax_tunnel_streams = 0\ncaller_rate = 0\n".into()
        }
    }
}

async fn run_mode(
    bins: &Binaries,
    mode: Mode,
    cfg: &FairnessConfig,
) -> anyhow::Result<ModeFigures> {
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-fairness-")
        .tempdir()
        .context("creating a temporary directory")?;
    let d = dir.path();
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let upstream = tether_tests::upstream::start(any).await?;
    files::ensure_dev_pki(d).context("writing the development PKI")?;
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: "bench fairness".into(),
            tunnel_listen: any,
            ingress_listen: any,
            plaintext_listen: any,
            admin_listen: None,
            cp_upstream: upstream.addr,
            audit: cfg.audit,
        },
        &policies,
    )?;
    let mut text = std::fs::read_to_string(&edge_toml)?;
    text.push_str(&limits_table(mode, cfg));
    std::fs::write(&edge_toml, text)?;
    let edge = Process::start_program(&bins.edge, &edge_toml).await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: "bench fairness".into(),
            edge_address: edge.addr("tunnels"),
            upstream: upstream.addr,
            admin_listen: None,
            egress_listen: any,
            audit: cfg.audit,
        },
        &policies,
    )?;
    let _client = Process::start_program(&bins.client, &client_toml).await;
    served(edge.addr("plaintext")).await?;

    let ca = Ca::load_dir(d).context("loading the deployment's CA")?;
    let ingress = edge.addr("ingress");
    let roots = proxy::tls::load_trust_bundle(&d.join(files::CA_CERT))?;
    let quiet = vec![Caller::Grpc(caller(&ca, &roots, "quiet", ingress).await?)];
    let mut flood = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        flood.push(caller(&ca, &roots, "flood", ingress).await?);
    }

    let mut alone = Measurement::new();
    let mut flooded = Measurement::new();
    let mut tally = FloodTally::default();
    for round in 0..cfg.rounds {
        let label =
            |what: &str| format!("{} round {}/{} {what}", mode.name(), round + 1, cfg.rounds);
        alone.merge(&open_loop(&quiet, &cfg.quiet, label("alone"), &[]).await?);
        let stop = Instant::now() + cfg.quiet.duration;
        let flooding = if cfg.flood_rate > 0.0 {
            let load = OpenLoop {
                rate: cfg.flood_rate,
                max_in_flight: cfg.flood_concurrency,
                max_calls: u64::MAX,
                progress: false,
                ..cfg.quiet.clone()
            };
            let callers: Vec<Caller> = flood.iter().cloned().map(Caller::Grpc).collect();
            tokio::spawn(async move {
                let m = open_loop(&callers, &load, String::new(), &[]).await;
                m.map_or_else(
                    |_| FloodTally::default(),
                    |m| FloodTally {
                        served: m.calls,
                        refused: m.errors,
                        other: m.missed,
                        seconds: m.elapsed.as_secs_f64(),
                    },
                )
            })
        } else {
            tokio::spawn(flood_until(flood.clone(), cfg.flood_concurrency, stop))
        };
        let m = open_loop(&quiet, &cfg.quiet, label("flooded"), &[]).await;
        let t = flooding.await.context("the flood task failed")?;
        flooded.merge(&m?);
        tally.add(&t);
    }
    let (alone, flooded) = (QuietFigures::of(&alone), QuietFigures::of(&flooded));
    let p99_ratio = flooded.p99_us as f64 / alone.p99_us.max(1) as f64;
    Ok(ModeFigures {
        mode,
        alone,
        flooded,
        flood: tally.figures(),
        p99_ratio,
    })
}

/// An Echo client over the mTLS ingress as `caller/<name>`.
async fn caller(
    ca: &Ca,
    roots: &Arc<rustls::RootCertStore>,
    name: &str,
    ingress: SocketAddr,
) -> anyhow::Result<EchoClient<Channel>> {
    let cert = ca.issue(&LeafSpec::new(IdentityKind::Caller, name))?;
    let tls = caller_tls(&cert, roots.clone(), &[b"h2"])?;
    let mut client = grpc_tls(ingress, ECHO_HOST, tls).await?;
    client
        .unary(EchoRequest::default())
        .await
        .with_context(|| format!("warm-up call as caller/{name}"))?;
    Ok(client)
}

/// Calls through the plaintext ingress until one succeeds (the tunnel
/// registers a moment after the client reports ready).
async fn served(plaintext: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut echo) = grpc_plaintext(plaintext, ECHO_HOST).await {
            if echo.unary(EchoRequest::default()).await.is_ok() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the tunnel never served a call");
        // Paces the retries; each try is a whole call.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Default)]
struct FloodTally {
    served: u64,
    refused: u64,
    other: u64,
    seconds: f64,
}

impl FloodTally {
    fn add(&mut self, other: &FloodTally) {
        self.served += other.served;
        self.refused += other.refused;
        self.other += other.other;
        self.seconds += other.seconds;
    }

    fn figures(&self) -> FloodFigures {
        let per_sec = |n: u64| n as f64 / self.seconds.max(f64::MIN_POSITIVE);
        FloodFigures {
            served_per_sec: per_sec(self.served),
            refused_per_sec: per_sec(self.refused),
            other_errors: self.other,
        }
    }
}

/// The flood: `concurrency` workers over `clients`, each sending its next
/// call as soon as the last ends, until `stop`.
async fn flood_until(
    clients: Vec<EchoClient<Channel>>,
    concurrency: usize,
    stop: Instant,
) -> FloodTally {
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let mut client = clients[i % clients.len()].clone();
        let counts = counts.clone();
        workers.spawn(async move {
            while Instant::now() < stop {
                let call = client.unary(EchoRequest::default());
                let slot = match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(_)) => 0,
                    Ok(Err(s)) if s.code() == tonic::Code::ResourceExhausted => 1,
                    _ => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    FloodTally {
        served: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        other: counts[2].load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}
