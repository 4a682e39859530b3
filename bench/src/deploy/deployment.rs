//! Where the components under load run, behind one interface every
//! scenario uses: which address and authority each path calls, what the
//! `ceiling` path needs, and which processes are measured.
//!
//! - *processes* (the default, [`processes`](crate::deploy::processes)): the
//!   release edge and client binaries and an upstream, each its own
//!   process, measured one by one;
//! - *in-process* (`--in-process`): everything in the bench process on the
//!   test [`Topology`], as the smoke tests run it;
//! - *target* (`--target`, [`target`](crate::deploy::target)): an existing edge
//!   over mTLS; only the `tunnel` path (and `direct` with `--direct`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use certs::{Ca, IdentityKind};
use proxy::audit::AuditStats;
use tether_tests::files;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{tls_identity, Options, Topology, DOMAIN, TRUST_DOMAIN, TUNNEL};

use crate::deploy::audit::AuditModes;
use crate::deploy::processes::{Binaries, Processes};
use crate::deploy::target::{Target, TargetSpec};
use crate::measure::procfs::Process;
use crate::measure::usage::{self, ProcessInfo};
use crate::paths::{self, CeilingKeys, Endpoint, Path};

/// How long the tunnel may take to carry its first call after the client
/// reports it connected (the edge registers it a moment after answering).
const TUNNEL_DEADLINE: Duration = Duration::from_secs(10);

/// The pause between tries of that first call: short, as the gap is
/// microseconds; it only paces the retries, it synchronises nothing.
const TUNNEL_RETRY: Duration = Duration::from_millis(20);

/// Why `bench tunnels` cannot run against `--target`.
pub const TARGET_HAS_NO_TUNNEL_SITE: &str =
    "bench tunnels is not available against --target: each emulated tunnel needs an \
     identity of its own, minted from the edge's CA private key, and the per-tunnel \
     memory and CPU are read from the edge's process in /proc, which only a deployment \
     bench starts has; run it on the default process deployment (or --in-process)";

/// Which deployment to measure, as the command line chose it.
#[derive(Clone, Debug)]
pub enum Spec {
    /// Every component in this process.
    InProcess,
    /// Edge, client and upstream as child processes; binaries from this
    /// directory, or next to bench when `None`.
    Processes {
        /// `--bin-dir`.
        bin_dir: Option<PathBuf>,
    },
    /// An existing edge.
    Target(TargetSpec),
}

impl Spec {
    /// The deployment's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Spec::InProcess => "in-process",
            Spec::Processes { .. } => "processes",
            Spec::Target(_) => "target",
        }
    }

    /// The paths this deployment can measure, in `--paths` order.
    pub fn available(&self) -> Vec<Path> {
        match self {
            Spec::InProcess | Spec::Processes { .. } => Path::ALL.to_vec(),
            Spec::Target(t) if t.direct.is_some() => vec![Path::Direct, Path::Tunnel],
            Spec::Target(_) => vec![Path::Tunnel],
        }
    }

    /// `asked`, or every available path when nothing was asked; fails,
    /// saying why, for a path this deployment does not have.
    pub fn paths(&self, asked: &[Path]) -> anyhow::Result<Vec<Path>> {
        let available = self.available();
        if asked.is_empty() {
            return Ok(available);
        }
        for p in asked {
            anyhow::ensure!(
                available.contains(p),
                "the {p} path is not available against --target: {}",
                match p {
                    Path::Direct => "pass --direct HOST:PORT (the upstream's own address)",
                    Path::Egress => "egress starts at a tunnel client bench does not run",
                    Path::Ceiling =>
                        "the ceiling needs the edge's private key and a bare QUIC echo \
                         beside it, which only a deployment bench starts has",
                    Path::Tunnel => "unreachable",
                }
            );
        }
        Ok(asked.to_vec())
    }
}

/// Where `bench tunnels` registers tunnels of its own, and what it needs
/// to be admitted there.
pub struct TunnelSite {
    /// The edge's QUIC tunnel listener.
    pub addr: SocketAddr,
    /// The name the edge's certificate is verified for.
    pub server_name: String,
    /// The deployment's CA: the edge admits any `/tunnel/<name>` it
    /// signed, so each emulated tunnel gets an identity of its own from it.
    pub ca: Ca,
    /// The process whose memory and CPU are the edge's: the edge child, or
    /// this whole process in process (then the emulated tunnels' own state
    /// is counted too).
    pub edge: Process,
}

enum Inner {
    InProcess(Box<Topology>),
    Processes(Box<Processes>),
    Target(Box<Target>),
}

/// A running deployment. Dropping it stops everything it started;
/// [`Deployment::shutdown`] also waits for it.
pub struct Deployment {
    inner: Inner,
    processes: Vec<Process>,
    idle: Vec<ProcessInfo>,
}

impl Deployment {
    /// Starts (or, for a target, resolves) the deployment `spec` names,
    /// with audit logs in `audit` mode where bench writes the
    /// configuration. Returns once the tunnel carries calls; each
    /// process's idle RSS is read before the first of them.
    pub async fn start(spec: &Spec, audit: AuditModes) -> anyhow::Result<Self> {
        let (inner, processes, idle) = match spec {
            Spec::InProcess => {
                let topo = Topology::start_with(Options {
                    audit_durability: audit.edge,
                    client_audit_durability: Some(audit.client),
                    ..Options::default()
                })
                .await?;
                let processes = vec![Process::current("bench")];
                let idle = usage::idle(&processes);
                (Inner::InProcess(Box::new(topo)), processes, idle)
            }
            Spec::Processes { bin_dir } => {
                let bins = Binaries::find(bin_dir.as_deref())?;
                let children = Processes::start(&bins, audit).await?;
                let mut processes = vec![Process::current("gen")];
                processes.extend(children.processes());
                let idle = usage::idle(&processes);
                (Inner::Processes(Box::new(children)), processes, idle)
            }
            Spec::Target(t) => {
                let target = Target::resolve(t).await?;
                let processes = vec![Process::current("gen")];
                let idle = usage::idle(&processes);
                (Inner::Target(Box::new(target)), processes, idle)
            }
        };
        let deployment = Self {
            inner,
            processes,
            idle,
        };
        if let Err(e) = deployment.first_call().await {
            let tails = match &deployment.inner {
                Inner::Processes(p) => format!("\n{}", p.stderr_tails()),
                _ => String::new(),
            };
            deployment.shutdown().await;
            return Err(e.context(format!("no call got through the tunnel{tails}")));
        }
        Ok(deployment)
    }

    /// One call over the tunnel path, retried until [`TUNNEL_DEADLINE`]:
    /// the client reports itself connected as the edge answers it, and
    /// the edge registers the tunnel a moment later.
    async fn first_call(&self) -> anyhow::Result<()> {
        let endpoint = self.endpoint(Path::Tunnel)?;
        let deadline = Instant::now() + TUNNEL_DEADLINE;
        loop {
            let attempt = async {
                let mut client = paths::grpc(&endpoint).await?;
                client.unary(EchoRequest::default()).await?;
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("still failing after {TUNNEL_DEADLINE:?}")))
                }
                Err(_) => tokio::time::sleep(TUNNEL_RETRY).await,
            }
        }
    }

    /// `in-process`, `processes` or `target`.
    pub fn name(&self) -> &'static str {
        match self.inner {
            Inner::InProcess(_) => "in-process",
            Inner::Processes(_) => "processes",
            Inner::Target(_) => "target",
        }
    }

    /// Where `path`'s calls go (not for `ceiling`: see
    /// [`Deployment::ceiling`]).
    pub fn endpoint(&self, path: Path) -> anyhow::Result<Endpoint> {
        let plain = |addr: SocketAddr, authority: String| Endpoint {
            addr,
            authority,
            tls: None,
        };
        let routed = format!("echo.{TUNNEL}.{DOMAIN}");
        let egress_name = "cp-echo".to_string();
        match (&self.inner, path) {
            (_, Path::Ceiling) => anyhow::bail!("the ceiling path has no gRPC endpoint"),
            // The upstream ignores the authority; the tunnel's keeps parity.
            (Inner::InProcess(t), Path::Direct) => Ok(plain(t.upstream.addr, routed)),
            (Inner::InProcess(t), Path::Tunnel) => Ok(plain(t.plaintext_addr, routed)),
            (Inner::InProcess(t), Path::Egress) => Ok(plain(
                t.egress_addr
                    .context("the topology has no egress listener")?,
                egress_name,
            )),
            (Inner::Processes(p), Path::Direct) => Ok(plain(p.upstream, routed)),
            (Inner::Processes(p), Path::Tunnel) => Ok(plain(p.plaintext, routed)),
            (Inner::Processes(p), Path::Egress) => Ok(plain(p.egress, egress_name)),
            (Inner::Target(t), Path::Direct) => Ok(plain(
                t.direct
                    .context("the direct path needs --direct HOST:PORT")?,
                t.authority.clone(),
            )),
            (Inner::Target(t), Path::Tunnel) => Ok(Endpoint {
                addr: t.addr,
                authority: t.authority.clone(),
                tls: Some((t.tls.clone(), t.server_name.clone())),
            }),
            (Inner::Target(_), Path::Egress) => {
                anyhow::bail!("the egress path is not available against --target")
            }
        }
    }

    /// The identities and trust the `ceiling` path's bare QUIC endpoints
    /// use: the deployment's own edge identity and a tunnel identity.
    pub fn ceiling(&self) -> anyhow::Result<CeilingKeys> {
        match &self.inner {
            Inner::InProcess(t) => Ok(CeilingKeys {
                roots: t.pki.roots()?,
                edge: tls_identity(&t.edge_cert)?,
                tunnel: tls_identity(&t.pki.leaf(IdentityKind::Tunnel, "bench-ceiling")?)?,
                trust_domain: TRUST_DOMAIN.to_string(),
            }),
            Inner::Processes(p) => {
                let pem = |stem: &str, ext: &str| p.dir().join(format!("{stem}.{ext}"));
                let load =
                    |stem: &str| proxy::tls::load_identity(&pem(stem, "pem"), &pem(stem, "key"));
                Ok(CeilingKeys {
                    roots: proxy::tls::load_trust_bundle(&p.dir().join(files::CA_CERT))?,
                    edge: load(files::EDGE_CERT)?,
                    tunnel: load(files::TUNNEL_CERT)?,
                    trust_domain: TRUST_DOMAIN.to_string(),
                })
            }
            Inner::Target(_) => anyhow::bail!("the ceiling path is not available against --target"),
        }
    }

    /// Where emulated tunnels register (for `bench tunnels`); not against
    /// `--target`, whose CA key and process bench does not have.
    pub fn tunnel_site(&self) -> anyhow::Result<TunnelSite> {
        match &self.inner {
            Inner::InProcess(t) => Ok(TunnelSite {
                addr: t.tunnel_addr,
                server_name: "localhost".to_string(),
                ca: Ca::load(&t.pki.ca.cert_pem(), &t.pki.ca.key_pem())?,
                edge: Process::current("bench"),
            }),
            Inner::Processes(p) => Ok(TunnelSite {
                addr: p.tunnels,
                server_name: "localhost".to_string(),
                ca: Ca::load_dir(p.dir()).context("loading the deployment's CA")?,
                edge: p
                    .processes()
                    .into_iter()
                    .find(|p| p.name == "edge")
                    .context("the deployment has no edge process")?,
            }),
            Inner::Target(_) => anyhow::bail!(TARGET_HAS_NO_TUNNEL_SITE),
        }
    }

    /// The processes measured: the load generator first.
    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// Each measured process's idle RSS (read at start-up) and peak RSS
    /// (read now): call at the end of the run, before shutting down.
    pub fn process_report(&self) -> Vec<ProcessInfo> {
        usage::with_peaks(self.idle.clone(), &self.processes)
    }

    /// The edge audit log's counters, where bench can read them (in
    /// process only).
    pub fn edge_audit_stats(&self) -> Option<AuditStats> {
        match &self.inner {
            Inner::InProcess(t) => Some(t.edge_audit_log.stats()),
            _ => None,
        }
    }

    /// Stops what was started and waits for it.
    pub async fn shutdown(self) {
        match self.inner {
            Inner::InProcess(t) => t.shutdown().await,
            Inner::Processes(p) => p.stop().await,
            Inner::Target(_) => {}
        }
    }
}
