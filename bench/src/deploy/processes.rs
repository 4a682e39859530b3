//! The process deployment, bench's default: the release `tunnel-server`
//! and `tunnel-client` binaries and an upstream (bench itself, as `bench
//! upstream`), each its own process on loopback, so each one's CPU and
//! memory can be read from `/proc` on its own and the load generator does
//! not share an address space, allocator or runtime with what it measures.
//!
//! Start-up, in order: the upstream; a development PKI and the edge's
//! configuration ([`tether_tests::files`], the same
//! files the quick start writes, every listener on port 0); the edge; the
//! client's configuration with the edge's real tunnel port; the client.
//! Each child reports the addresses it bound on stdout once ready (`run
//! --ready-file -`), so nothing is guessed and nothing waits on a timer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};

use crate::deploy::audit::AuditModes;
use crate::deploy::child::Child;
use crate::measure::procfs::Process;

/// How long a child may take to report ready: a release binary is ready
/// in milliseconds, a debug one under a loaded test run in seconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The command that builds what this mode runs, quoted in errors.
pub const BUILD_HINT: &str = "cargo build --release -p tunnel-server -p tunnel-client -p bench";

/// The executables the process deployment runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `tunnel-server`.
    pub edge: PathBuf,
    /// `tunnel-client`.
    pub client: PathBuf,
    /// This bench, re-executed as `bench upstream`.
    pub bench: PathBuf,
}

impl Binaries {
    /// The binaries in `bin_dir`, or else next to the running bench (where
    /// cargo puts every binary of a profile). Fails naming the missing
    /// file and the command that builds it.
    pub fn find(bin_dir: Option<&Path>) -> anyhow::Result<Self> {
        let bench = std::env::current_exe().context("locating the bench executable")?;
        let dir = match bin_dir {
            Some(d) => d.to_path_buf(),
            None => bench
                .parent()
                .context("the bench executable has no directory")?
                .to_path_buf(),
        };
        let exe = |name: &str| {
            let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow::anyhow!(
                    "{} not found: build the binaries with `{BUILD_HINT}` (the release \
                     binaries are in target/release), pass --bin-dir DIR where \
                     tunnel-server and tunnel-client are, or run everything in this \
                     process with --in-process",
                    path.display()
                ))
            }
        };
        Ok(Self {
            edge: exe("tunnel-server")?,
            client: exe("tunnel-client")?,
            bench,
        })
    }
}

/// What the edge reports when ready (a subset of `tunnel_server::Addresses`).
#[derive(Deserialize)]
struct EdgeReady {
    tunnels: SocketAddr,
    admin: Option<SocketAddr>,
    ingress: Option<SocketAddr>,
    plaintext: Option<SocketAddr>,
}

/// What the client reports once connected.
#[derive(Deserialize)]
struct ClientReady {
    egress: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// What `bench upstream` reports when ready.
#[derive(Deserialize, serde::Serialize)]
pub struct UpstreamReady {
    /// Where it listens.
    pub listen: SocketAddr,
}

/// The running processes and the addresses each path uses. Dropping it
/// kills every child; [`Processes::stop`] also waits for them.
pub struct Processes {
    /// The edge's plaintext development ingress (the `tunnel` path).
    pub plaintext: SocketAddr,
    /// The edge's mTLS ingress.
    pub ingress: SocketAddr,
    /// The client's egress listener (the `egress` path).
    pub egress: SocketAddr,
    /// The example upstream (the `direct` path, and behind both others).
    pub upstream: SocketAddr,
    /// The edge's QUIC tunnel listener, where `bench tunnels` registers
    /// tunnels of its own beside the real client's.
    pub tunnels: SocketAddr,
    /// The edge's and the client's admin listeners, by process name:
    /// where their probes are read.
    admins: Vec<(String, SocketAddr)>,
    /// The PKI, configurations, audit logs and children's stderr; removed
    /// on drop, after the children are killed (fields drop in order).
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Processes {
    /// Starts upstream, edge and client from `bins`, and returns once the
    /// client reports its tunnel connected.
    pub async fn start(bins: &Binaries, audit: AuditModes) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let d = dir.path();
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut children = Vec::new();

        let mut upstream = Child::spawn(
            "upstream",
            &bins.bench,
            [
                "upstream",
                "--listen",
                &any.to_string(),
                "--ready-file",
                "-",
            ],
            d,
        )?;
        let up: UpstreamReady = upstream.ready(READY_TIMEOUT).await?;
        children.push(upstream);

        files::ensure_dev_pki(d).context("writing the development PKI")?;
        let policies = Policies::allow_all();
        let writer = "bench (process deployment)".to_string();
        let edge_toml = files::write_edge(
            d,
            &EdgeFiles {
                writer: writer.clone(),
                tunnel_listen: any,
                ingress_listen: any,
                plaintext_listen: any,
                // Where the probes are read (bench::measure::probes).
                admin_listen: Some(any),
                cp_upstream: up.listen,
                audit: audit.edge,
            },
            &policies,
        )?;
        let mut edge = Child::spawn("edge", &bins.edge, run_args(&edge_toml), d)?;
        let e: EdgeReady = edge.ready(READY_TIMEOUT).await?;
        children.push(edge);

        let client_toml = files::write_client(
            d,
            &ClientFiles {
                writer,
                edge_address: e.tunnels,
                upstream: up.listen,
                admin_listen: Some(any),
                egress_listen: any,
                audit: audit.client,
            },
            &policies,
        )?;
        let mut client = Child::spawn("client", &bins.client, run_args(&client_toml), d)?;
        let c: ClientReady = client.ready(READY_TIMEOUT).await?;
        children.push(client);

        Ok(Self {
            plaintext: e
                .plaintext
                .context("the edge reported no plaintext ingress")?,
            ingress: e.ingress.context("the edge reported no mTLS ingress")?,
            egress: *c
                .egress
                .first()
                .context("the client reported no egress listener")?,
            upstream: up.listen,
            tunnels: e.tunnels,
            admins: [("edge", e.admin), ("client", c.admin)]
                .into_iter()
                .filter_map(|(name, a)| Some((name.to_string(), a?)))
                .collect(),
            children,
            dir,
        })
    }

    /// The directory holding the PKI (`ca.pem`, `edge-edge-1.pem`, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The children, for the per-process figures: edge, client, upstream
    /// (the order of the path a tunnel call takes).
    pub fn processes(&self) -> Vec<Process> {
        let mut all: Vec<Process> = self
            .children
            .iter()
            .map(|c| {
                let mut p = c.process();
                p.admin = self
                    .admins
                    .iter()
                    .find(|(name, _)| *name == p.name)
                    .map(|(_, a)| *a);
                p
            })
            .collect();
        let rank = |p: &Process| {
            ["edge", "client", "upstream"]
                .iter()
                .position(|n| *n == p.name)
        };
        all.sort_by_key(rank);
        all
    }

    /// The stderr tail of each child, for an error that may be theirs.
    pub fn stderr_tails(&self) -> String {
        self.children
            .iter()
            .map(|c| format!("--- {} ---\n{}", c.process().name, c.stderr_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills every child (client first, so the edge never sees a tunnel
    /// outlive it), waits for each, and removes the directory.
    pub async fn stop(mut self) {
        while let Some(child) = self.children.pop() {
            child.stop().await;
        }
    }
}

fn run_args(config: &Path) -> [std::ffi::OsString; 5] {
    [
        "run".into(),
        "--config".into(),
        config.as_os_str().to_owned(),
        "--ready-file".into(),
        "-".into(),
    ]
}
