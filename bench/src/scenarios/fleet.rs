//! `bench fleet`: a fleet on one machine. Three edge processes (the
//! release binaries, each with its own identity) and `--tunnels` tunnel
//! clients, each connected to every edge, under an open-loop load spread
//! over the edges as an L4 load balancer with a retry policy would; one
//! edge is killed (SIGKILL) under that load and restarted on its
//! addresses after `--down`.
//!
//! The tunnels are the real client (`tunnel_client::build`), many in this
//! process: each with its own identity minted from the fleet's CA, its
//! own dial slots (one UDP socket each), reconnect policy at the
//! production defaults and audit log (durability `none`; its writer is a
//! thread per client). They serve the example upstream's `echo` service,
//! which runs in this process too.
//!
//! Reported: calls served, calls turned away before they started and
//! sent to another edge (connection refused, `tunnel-offline`,
//! `draining`), calls that failed after they started, split by whether
//! they were on the killed edge (those in flight when it died) or not
//! (the target is none); the time from the restart (and from the kill)
//! until every tunnel is back at full strength (a connection to every
//! edge); each edge's RSS before the tunnels, at full strength, and the
//! restarted edge's at full strength again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use certs::{Ca, IdentityKind, LeafSpec};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::audit::{AuditConfig, Durability, Side};
use proxy::policy::PolicyHandle;
use tether_tests::files::{self, EdgeFiles, Policies};
use tether_tests::process::Process;
use tether_tests::topology::{allow_all, tls_identity, DOMAIN};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tunnel_client::config::{EdgeAddress, Protocol, Service};

use crate::deploy::processes::Binaries;
use crate::load::tunnels::identities::tunnel_name;
use crate::measure::procfs;

/// Edges in the fleet.
pub const EDGES: usize = 3;

/// Body of every call: echoed back by the service.
const BODY: &[u8] = &[b'f'; 100];

/// Longest the fleet may take to reach full strength, at the start or
/// after the restart, before the run fails.
const FULL_STRENGTH_WITHIN: Duration = Duration::from_secs(120);

/// How often full strength is sampled.
const SAMPLE: Duration = Duration::from_millis(50);

/// What `bench fleet` runs.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Tunnel clients.
    pub tunnels: usize,
    /// Clients started at once while the fleet comes up (each batch is
    /// waited for at full strength before the next).
    pub batch: usize,
    /// Calls per second, open loop, over all edges.
    pub rate: u64,
    /// Calls in flight at most; a call due beyond it is counted as not
    /// sent (the load generator, not the fleet, is the bottleneck then).
    pub max_in_flight: usize,
    /// How long the load runs.
    pub duration: Duration,
    /// When, into the load, the edge is killed.
    pub kill_after: Duration,
    /// How long the killed edge stays down.
    pub down: Duration,
    /// Where the binaries are (`--bin-dir`), else next to bench.
    pub bin_dir: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FleetReport {
    /// Tunnel clients.
    pub tunnels: usize,
    /// Edge processes.
    pub edges: usize,
    /// From the first client built to every tunnel at full strength, ms.
    pub start_ms: f64,
    /// Offered rate, calls/s.
    pub rate: u64,
    /// Load duration, s.
    pub duration_s: f64,
    /// Calls served.
    pub served: u64,
    /// Attempts turned away before their call started, then sent to the
    /// next edge.
    pub turned_away: u64,
    /// Calls that failed after starting on the killed edge before its
    /// restart (in flight when it died, or sent on its connection before
    /// the caller saw that connection close).
    pub failed_on_killed_edge: u64,
    /// Calls that failed anywhere else, or that no edge would take (target
    /// none).
    pub failed_elsewhere: u64,
    /// Calls not sent: `max_in_flight` calls were already in flight.
    pub not_sent: u64,
    /// The first few failure reasons.
    pub failures: Vec<String>,
    /// Which edge was killed (1-based, as its id `edge-N`).
    pub killed_edge: usize,
    /// From the restart until every tunnel had a connection to every edge
    /// again, ms.
    pub full_after_restart_ms: f64,
    /// The same, from the kill, ms.
    pub full_after_kill_ms: f64,
    /// Each edge's RSS before any tunnel connected, KiB.
    pub edge_rss_idle_kib: Vec<u64>,
    /// Each edge's RSS with every tunnel connected, KiB.
    pub edge_rss_full_kib: Vec<u64>,
    /// The restarted edge's RSS once every tunnel was back, KiB.
    pub restarted_edge_rss_kib: u64,
    /// This process's RSS (every client, the load and the upstream), KiB.
    pub bench_rss_kib: u64,
}

impl FleetReport {
    /// Whether the run met the issue's target: no call failed that had not
    /// started on the killed edge.
    pub fn met(&self) -> bool {
        self.failed_elsewhere == 0
    }

    /// The table `bench fleet` prints.
    pub fn table(&self) -> String {
        let per_tunnel =
            |full: u64, idle: u64| full.saturating_sub(idle) as f64 / self.tunnels.max(1) as f64;
        let mut out = format!(
            "fleet: {} edges × {} tunnels (each connected to every edge), started in {:.0} ms\n\
             load {} calls/s for {:.0} s; edge-{} killed under load\n\
             calls served                 {:>8}\n\
             turned away, sent elsewhere  {:>8}\n\
             failed in flight on killed   {:>8}\n\
             failed otherwise (target 0)  {:>8}\n\
             not sent (generator full)    {:>8}\n\
             full strength again: {:.0} ms after the restart, {:.0} ms after the kill\n",
            self.edges,
            self.tunnels,
            self.start_ms,
            self.rate,
            self.duration_s,
            self.killed_edge,
            self.served,
            self.turned_away,
            self.failed_on_killed_edge,
            self.failed_elsewhere,
            self.not_sent,
            self.full_after_restart_ms,
            self.full_after_kill_ms,
        );
        for (i, (idle, full)) in self
            .edge_rss_idle_kib
            .iter()
            .zip(&self.edge_rss_full_kib)
            .enumerate()
        {
            out.push_str(&format!(
                "edge-{} RSS: {} KiB idle, {} KiB with every tunnel ({:.1} KiB per tunnel)\n",
                i + 1,
                idle,
                full,
                per_tunnel(*full, *idle)
            ));
        }
        out.push_str(&format!(
            "restarted edge-{} RSS with every tunnel back: {} KiB\n\
             bench process (clients, load, upstream) RSS: {} KiB\n\
             target, no call failed that had not started: {}\n",
            self.killed_edge,
            self.restarted_edge_rss_kib,
            self.bench_rss_kib,
            if self.met() { "met" } else { "MISSED" }
        ));
        for f in &self.failures {
            out.push_str(&format!("  failure: {f}\n"));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One edge: its process and where callers reach it.
struct Edge {
    process: Process,
    plaintext: SocketAddr,
    tunnels: SocketAddr,
    toml: PathBuf,
}

fn edge_dir(root: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("edge-{n}"));
    if n == 1 {
        files::ensure_dev_pki(&dir)?;
    } else {
        files::edge_pki_beside(&root.join("edge-1"), &dir, &format!("edge-{n}"))?;
    }
    Ok(dir)
}

/// Writes edge `n`'s configuration for the given listeners.
fn edge_toml(
    dir: &Path,
    n: usize,
    tunnels: SocketAddr,
    plaintext: SocketAddr,
    upstream: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let path = files::write_edge(
        dir,
        &EdgeFiles {
            writer: "bench fleet".into(),
            tunnel_listen: tunnels,
            ingress_listen: any,
            plaintext_listen: plaintext,
            admin_listen: None,
            cp_upstream: upstream,
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )?;
    let text =
        std::fs::read_to_string(&path)?.replace("id = \"edge-1\"", &format!("id = \"edge-{n}\""));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A client's configuration: tunnel `i`, every edge, the production
/// reconnect defaults.
fn client_config(
    ca: &Ca,
    roots: &Arc<rustls::RootCertStore>,
    edges: &[SocketAddr],
    upstream: SocketAddr,
    audit_dir: &Path,
    i: usize,
) -> anyhow::Result<tunnel_client::Config> {
    let name = tunnel_name(i);
    let cert = ca
        .issue(&LeafSpec::new(IdentityKind::Tunnel, &name))
        .with_context(|| format!("minting the identity of tunnel {name}"))?;
    let mut services = std::collections::BTreeMap::new();
    services.insert(
        "echo".to_string(),
        Service {
            url: format!("http://{upstream}").parse()?,
            protocol: Protocol::H2c,
            ca: None,
            client_identity: None,
        },
    );
    let mut audit = AuditConfig::new(audit_dir.join(format!("{name}.log")), Side::Client);
    audit.durability = Durability::None;
    Ok(tunnel_client::Config {
        identity: tls_identity(&cert)?,
        trust: roots.clone(),
        tls_files: None,
        edges: edges
            .iter()
            .map(|a| EdgeAddress::new(a.to_string(), "localhost"))
            .collect(),
        max_edges: edges.len(),
        connections_per_edge: 1,
        resolve_interval: Duration::from_secs(30),
        services,
        labels: std::collections::BTreeMap::new(),
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(30),
        dial_timeout: Duration::from_secs(1),
        stable_after: Duration::from_secs(5),
        policy: PolicyHandle::new(allow_all(proxy::policy::Scope::Client), None),
        egress_policy: PolicyHandle::new(allow_all(proxy::policy::Scope::Egress), None),
        egress_listeners: Vec::new(),
        audit,
        admin_listen: None,
        limits: proxy::Limits::default(),
    })
}

/// Tunnels (by index) without a live, non-draining connection to every
/// edge.
fn short_of_full(clients: &[tunnel_client::Bound], edges: usize) -> usize {
    clients
        .iter()
        .filter(|c| {
            c.pool_status()
                .connections
                .iter()
                .filter(|conn| !conn.draining)
                .count()
                < edges
        })
        .count()
}

/// Waits until every client is at full strength; how long that took.
async fn full_strength(clients: &[tunnel_client::Bound], edges: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let short = short_of_full(clients, edges);
        if short == 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < FULL_STRENGTH_WITHIN,
            "{short} of {} tunnels were not connected to every edge within {FULL_STRENGTH_WITHIN:?}",
            clients.len()
        );
        tokio::time::sleep(SAMPLE).await;
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    served: AtomicU64,
    turned_away: AtomicU64,
    failed_on_killed: AtomicU64,
    failed_elsewhere: AtomicU64,
    not_sent: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
    /// Set once the killed edge has been restarted: from then on a failure
    /// on it is not one of the calls in flight when it died.
    restarted: std::sync::atomic::AtomicBool,
}

impl Tally {
    fn fail(&self, on_killed: bool, why: String) {
        if on_killed {
            self.failed_on_killed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed_elsewhere.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut f) = self.failures.lock() {
            if f.len() < 8 {
                f.push(why);
            }
        }
    }
}

/// One HTTP/2 connection per edge, redialed when it is found closed, as a
/// load balancer's pool of upstream connections.
struct EdgeCaller {
    addr: SocketAddr,
    sender: Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
}

impl EdgeCaller {
    /// A sender ready for one more request, or why the edge cannot take
    /// one (nothing was sent: the call has not started).
    async fn ready(&self) -> Result<http2::SendRequest<Full<Bytes>>, String> {
        let mut held = self.sender.lock().await;
        if let Some(s) = held.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        *held = None;
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("{}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| format!("{}: handshake: {e}", self.addr))?;
        // Ends when the connection closes.
        tokio::spawn(conn);
        *held = Some(send.clone());
        Ok(send)
    }
}

/// Whether a response turned the call away before it started, so that
/// another edge may take it.
fn turned_away(status: StatusCode, headers: &http::HeaderMap) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
        && matches!(
            headers.get("tether-error").and_then(|v| v.to_str().ok()),
            Some("tunnel-offline" | "draining")
        )
}

/// One call to tunnel `tunnel`, offered to each edge in turn from `first`.
async fn balanced_call(
    callers: &[EdgeCaller],
    first: usize,
    tunnel: usize,
    killed: usize,
    tally: &Tally,
) {
    let host = format!("echo.{}.{DOMAIN}", tunnel_name(tunnel));
    let mut last = String::new();
    for k in 0..callers.len() {
        let e = (first + k) % callers.len();
        let mut sender = match callers[e].ready().await {
            Ok(s) => s,
            Err(why) => {
                last = why;
                tally.turned_away.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if sender.ready().await.is_err() {
            last = format!("edge-{}: connection closed before the call", e + 1);
            tally.turned_away.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let req = match Request::builder()
            .method(Method::POST)
            .uri(format!("http://{host}/echo"))
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::from_static(BODY)))
        {
            Ok(r) => r,
            Err(e) => return tally.fail(false, format!("building the request: {e}")),
        };
        let on_killed = e == killed && !tally.restarted.load(Ordering::Relaxed);
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(err) => return tally.fail(on_killed, format!("edge-{}: {err}", e + 1)),
        };
        let (parts, body) = resp.into_parts();
        if turned_away(parts.status, &parts.headers) {
            last = format!("edge-{}: {}", e + 1, parts.status);
            tally.turned_away.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        return match body.collect().await.map(|b| b.to_bytes()) {
            Ok(b) if parts.status == StatusCode::OK && b.as_ref() == BODY => {
                tally.served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => tally.fail(on_killed, format!("edge-{}: {}", e + 1, parts.status)),
            Err(err) => tally.fail(on_killed, format!("edge-{}: body: {err}", e + 1)),
        };
    }
    tally.fail(false, format!("no edge took the call; last: {last}"));
}

/// The open-loop load: `rate` calls/s for `duration`, each to a random
/// tunnel through the next edge in turn.
async fn load(
    callers: Arc<Vec<EdgeCaller>>,
    cfg: FleetConfig,
    tunnels: usize,
    killed: usize,
    tally: Arc<Tally>,
) {
    let gap = Duration::from_secs_f64(1.0 / cfg.rate.max(1) as f64);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + cfg.duration;
    let mut calls = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while Instant::now() < end {
        tick.tick().await;
        n = n.wrapping_add(1);
        if in_flight.load(Ordering::Relaxed) >= cfg.max_in_flight {
            tally.not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (callers, tally, in_flight) = (callers.clone(), tally.clone(), in_flight.clone());
        let tunnel = rand::random_range(0..tunnels);
        calls.spawn(async move {
            balanced_call(&callers, n % callers.len(), tunnel, killed, &tally).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

fn rss(process: &Process, name: &str) -> u64 {
    procfs::Process::new(name, process.pid())
        .rss_kib()
        .unwrap_or(0)
}

/// Runs the fleet.
pub async fn run(cfg: &FleetConfig) -> anyhow::Result<FleetReport> {
    anyhow::ensure!(cfg.tunnels > 0, "--tunnels must be at least 1");
    anyhow::ensure!(cfg.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(cfg.rate > 0, "--rate must be at least 1");
    anyhow::ensure!(
        cfg.kill_after < cfg.duration,
        "--kill-after must be shorter than --duration (the kill happens under load)"
    );
    // Per client: a UDP socket per edge, its audit log, a connection to the
    // upstream and the upstream's end of it.
    let per_client = u64::try_from(EDGES + 4).unwrap_or(u64::MAX);
    crate::deploy::nofile::check(
        crate::deploy::nofile::BASE_NEED.saturating_add(
            u64::try_from(cfg.tunnels)
                .unwrap_or(u64::MAX)
                .saturating_mul(per_client),
        ),
    )?;
    let bins = Binaries::find(cfg.bin_dir.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-fleet-")
        .tempdir()
        .context("creating a temporary directory")?;
    let d = dir.path();
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let upstream = tether_tests::upstream::start(any).await?;

    let mut edges = Vec::with_capacity(EDGES);
    for n in 1..=EDGES {
        let edir = edge_dir(d, n)?;
        let toml = edge_toml(&edir, n, any, any, upstream.addr)?;
        let process = Process::start_program(&bins.edge, &toml).await;
        let (tunnels, plaintext) = (process.addr("tunnels"), process.addr("plaintext"));
        // Restarts listen where the first process did.
        let toml = edge_toml(&edir, n, tunnels, plaintext, upstream.addr)?;
        edges.push(Edge {
            process,
            plaintext,
            tunnels,
            toml,
        });
    }
    let mut report = FleetReport {
        tunnels: cfg.tunnels,
        edges: EDGES,
        rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        ..FleetReport::default()
    };
    report.edge_rss_idle_kib = edges
        .iter()
        .enumerate()
        .map(|(i, e)| rss(&e.process, &format!("edge-{}", i + 1)))
        .collect();

    let ca = Arc::new(Ca::load_dir(&d.join("edge-1")).context("loading the fleet's CA")?);
    let roots = proxy::tls::roots_from_pem(ca.cert_pem().as_bytes())?;
    let tunnel_addrs: Vec<SocketAddr> = edges.iter().map(|e| e.tunnels).collect();
    let audit_dir = d.join("client-audit");
    std::fs::create_dir_all(&audit_dir)?;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(cfg.tunnels);
    let mut from = 0;
    while from < cfg.tunnels {
        let to = (from + cfg.batch).min(cfg.tunnels);
        for i in from..to {
            let config = client_config(&ca, &roots, &tunnel_addrs, upstream.addr, &audit_dir, i)?;
            clients.push(
                tunnel_client::build(config).with_context(|| format!("starting tunnel {i}"))?,
            );
        }
        full_strength(&clients, EDGES).await?;
        eprintln!(
            "{} of {} tunnels connected to every edge",
            clients.len(),
            cfg.tunnels
        );
        from = to;
    }
    report.start_ms = ms(started.elapsed());
    report.edge_rss_full_kib = edges
        .iter()
        .enumerate()
        .map(|(i, e)| rss(&e.process, &format!("edge-{}", i + 1)))
        .collect();

    // The middle edge is killed: calls that reach it first and those that
    // reach it second alike must go elsewhere.
    let killed = EDGES / 2;
    report.killed_edge = killed + 1;
    let callers: Arc<Vec<EdgeCaller>> = Arc::new(
        edges
            .iter()
            .map(|e| EdgeCaller {
                addr: e.plaintext,
                sender: Mutex::new(None),
            })
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let load_task = tokio::spawn(load(
        callers,
        cfg.clone(),
        cfg.tunnels,
        killed,
        tally.clone(),
    ));
    tokio::time::sleep(cfg.kill_after).await;
    let kill_at = Instant::now();
    edges[killed].process.kill().await;
    eprintln!("edge-{} killed", killed + 1);
    tokio::time::sleep(cfg.down).await;
    let restart_at = Instant::now();
    edges[killed].process = Process::start_program(&bins.edge, &edges[killed].toml).await;
    tally.restarted.store(true, Ordering::Relaxed);
    anyhow::ensure!(
        edges[killed].process.addr("plaintext") == edges[killed].plaintext
            && edges[killed].process.addr("tunnels") == edges[killed].tunnels,
        "the restarted edge did not listen on its old addresses"
    );
    // The killed edge's connections are reset by the restarted one at the
    // client's next packet; wait until every client has one to each edge.
    // Connections to the dead process count until the client learns it is
    // dead, so first wait until some tunnel is short of full strength.
    let down_seen = tokio::time::timeout(FULL_STRENGTH_WITHIN, async {
        while short_of_full(&clients, EDGES) == 0 {
            tokio::time::sleep(SAMPLE).await;
        }
    })
    .await;
    anyhow::ensure!(
        down_seen.is_ok(),
        "no tunnel noticed the killed edge within {FULL_STRENGTH_WITHIN:?}"
    );
    full_strength(&clients, EDGES).await?;
    report.full_after_restart_ms = ms(restart_at.elapsed());
    report.full_after_kill_ms = ms(kill_at.elapsed());
    report.restarted_edge_rss_kib = rss(&edges[killed].process, "restarted edge");
    eprintln!("every tunnel back at full strength");
    load_task.await.context("the load task failed")?;
    report.served = tally.served.load(Ordering::Relaxed);
    report.turned_away = tally.turned_away.load(Ordering::Relaxed);
    report.failed_on_killed_edge = tally.failed_on_killed.load(Ordering::Relaxed);
    report.failed_elsewhere = tally.failed_elsewhere.load(Ordering::Relaxed);
    report.not_sent = tally.not_sent.load(Ordering::Relaxed);
    report.failures = tally.failures.lock().map(|f| f.clone()).unwrap_or_default();
    report.bench_rss_kib = procfs::Process::current("bench").rss_kib().unwrap_or(0);

    // Closed together: each waits for its close to reach the edges.
    futures_util::future::join_all(
        clients
            .into_iter()
            .map(|c| c.shutdown(Duration::from_secs(1))),
    )
    .await;
    drop(edges);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_before_the_call_started_is_turned_away() {
        let mut h = http::HeaderMap::new();
        h.insert("tether-error", "tunnel-offline".parse().unwrap());
        assert!(turned_away(StatusCode::SERVICE_UNAVAILABLE, &h));
        h.insert("tether-error", "draining".parse().unwrap());
        assert!(turned_away(StatusCode::SERVICE_UNAVAILABLE, &h));
        h.insert("tether-error", "upstream-unavailable".parse().unwrap());
        assert!(!turned_away(StatusCode::SERVICE_UNAVAILABLE, &h));
        assert!(!turned_away(StatusCode::OK, &http::HeaderMap::new()));
    }
}
