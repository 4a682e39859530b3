//! An in-process Tether topology on ephemeral loopback ports: a dev CA, an
//! edge (mTLS and plaintext ingress), a tunnel client and the example
//! upstream. Every end-to-end test, the quick start and bench use it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use certs::{Ca, IdentityKind, IssuedCert, LeafSpec};
use proxy::audit::{AuditConfig, AuditLog, Durability, Side};
use proxy::policy::{parse_policy, Policy, PolicyHandle, Scope};
use proxy::tls::{identity_from_pem, roots_from_pem};
use proxy::{Limits, SpiffeId};
use tunnel_client::config::{Protocol, Service};

use crate::upstream::{self, Upstream};

/// The trust domain of every test topology.
pub const TRUST_DOMAIN: &str = "tether.local";
/// The ingress routing domain.
pub const DOMAIN: &str = "tunnel.local";
/// The tunnel's name.
pub const TUNNEL: &str = "demo";
/// The identity the plaintext listener asserts.
pub const DEV_CALLER: &str = "spiffe://tether.local/caller/dev";

/// Issues identities from one CA.
pub struct Pki {
    /// The CA.
    pub ca: Ca,
}

impl Pki {
    /// A fresh CA for [`TRUST_DOMAIN`].
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ca: Ca::create(TRUST_DOMAIN, Duration::from_secs(30 * 24 * 3600))?,
        })
    }

    /// A leaf of `kind` named `name` with default settings.
    pub fn leaf(&self, kind: IdentityKind, name: &str) -> anyhow::Result<IssuedCert> {
        Ok(self.ca.issue(&LeafSpec::new(kind, name))?)
    }

    /// Writes `leaf` and the CA as `cert.pem`, `key.pem` and `ca.pem` in
    /// `dir` (each replaced by a rename, as rotation tools do), for a
    /// process that loads and reloads its credentials from files.
    pub fn write_tls_files(
        &self,
        dir: &std::path::Path,
        leaf: &IssuedCert,
    ) -> anyhow::Result<proxy::credentials::TlsFiles> {
        std::fs::create_dir_all(dir)?;
        let files = proxy::credentials::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            trust_bundle: dir.join("ca.pem"),
        };
        for (path, text) in [
            (&files.cert, &leaf.cert_pem),
            (&files.key, &leaf.key_pem),
            (&files.trust_bundle, &self.ca.cert_pem()),
        ] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)?;
        }
        Ok(files)
    }

    /// The CA as a trust bundle.
    pub fn roots(&self) -> anyhow::Result<Arc<rustls::RootCertStore>> {
        Ok(roots_from_pem(self.ca.cert_pem().as_bytes())?)
    }
}

/// Turns an issued certificate into the identity type the binaries use.
pub fn tls_identity(cert: &IssuedCert) -> anyhow::Result<proxy::tls::TlsIdentity> {
    Ok(identity_from_pem(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )?)
}

/// Options for [`Topology::start_with`].
#[derive(Clone)]
pub struct Options {
    /// Limits for edge and client.
    pub limits: Limits,
    /// Extra client services by name (besides `echo` → the example upstream
    /// over h2c and `web` → the same over HTTP/1.1).
    pub extra_services: BTreeMap<String, Service>,
    /// Start the tunnel client (false for tests of a tunnel that never came).
    pub start_client: bool,
    /// Tunnel names the edge expects.
    pub known_tunnels: Vec<String>,
    /// The edge policy (default: [`allow_all`]).
    pub edge_policy: Policy,
    /// The client policy (default: [`allow_all`]).
    pub client_policy: Policy,
    /// Durability of both audit logs.
    pub audit_durability: Durability,
    /// Durability of the client's audit log, when it differs from the edge's.
    pub client_audit_durability: Option<Durability>,
    /// The edge's egress policy (default: [`allow_all`]).
    pub edge_egress_policy: Policy,
    /// The client's egress policy (default: [`allow_all`]).
    pub client_egress_policy: Policy,
    /// Extra edge upstreams by name (besides `cp-echo` → the control-plane
    /// example upstream over h2c and `cp-web` → the same over HTTP/1.1).
    pub extra_upstreams: BTreeMap<String, Service>,
    /// The workload label of the client's egress listener.
    pub egress_workload: Option<String>,
    /// Directory for the edge's audit log (default: the topology's state dir).
    pub edge_audit_dir: Option<PathBuf>,
    /// Directory for the demo client's audit log (default: the state dir).
    pub client_audit_dir: Option<PathBuf>,
    /// Write the edge's certificate, key and trust bundle to
    /// `cert.pem`, `key.pem` and `ca.pem` in this directory and load them
    /// from there (reloaded live) instead of holding them in memory.
    pub edge_tls_dir: Option<PathBuf>,
    /// The edge's `[tunnels] max_connections`, when not the default.
    pub edge_max_connections: Option<usize>,
    /// The edge's `[tunnels] max_connections_per_tunnel`, when not the
    /// default.
    pub edge_max_connections_per_tunnel: Option<usize>,
    /// The edge's `[tunnels] registration_retry_after_ms`, when not the
    /// default.
    pub edge_registration_retry_after: Option<Duration>,
}

/// The text of a policy allowing every identity of [`TRUST_DOMAIN`]
/// everything, in any scope: for policy files written for tests and bench.
pub fn allow_all_text() -> String {
    format!(
        "[[rule]]\nid = \"allow-all\"\neffect = \"allow\"\ncallers = [\"spiffe://{TRUST_DOMAIN}/*\"]\n"
    )
}

/// A policy allowing every identity of [`TRUST_DOMAIN`] everything: for
/// tests that are not about authorisation.
pub fn allow_all(scope: Scope) -> Policy {
    match parse_policy(&allow_all_text(), scope) {
        Ok(p) => p,
        // The text above is fixed and valid; deny-all keeps a bug here safe.
        Err(_) => Policy::deny_all(scope),
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            extra_services: BTreeMap::new(),
            start_client: true,
            known_tunnels: Vec::new(),
            edge_policy: allow_all(Scope::Edge),
            client_policy: allow_all(Scope::Client),
            audit_durability: Durability::Always,
            client_audit_durability: None,
            edge_egress_policy: allow_all(Scope::Egress),
            client_egress_policy: allow_all(Scope::Egress),
            extra_upstreams: BTreeMap::new(),
            egress_workload: Some("app".into()),
            edge_audit_dir: None,
            client_audit_dir: None,
            edge_tls_dir: None,
            edge_max_connections: None,
            edge_max_connections_per_tunnel: None,
            edge_registration_retry_after: None,
        }
    }
}

/// A running topology. Dropping it stops everything.
pub struct Topology {
    /// Issues more identities (callers, rogue clients).
    pub pki: Pki,
    /// The edge.
    pub edge: Option<tunnel_server::Bound>,
    /// The tunnel client.
    pub client: Option<tunnel_client::Bound>,
    /// The example upstream in the data plane (behind the tunnel).
    pub upstream: Upstream,
    /// The example upstream in the control plane (egress target).
    pub cp_upstream: Upstream,
    /// A TCP echo service in the data plane (the tunnel's `tcp-echo`).
    pub tcp_echo: upstream::TcpEcho,
    /// A TCP echo service in the control plane (the edge's `cp-tcp`).
    pub cp_tcp_echo: upstream::TcpEcho,
    /// The edge's raw TCP ingress listener for `tcp-echo` on the demo tunnel.
    pub tcp_ingress_addr: SocketAddr,
    /// The client's egress proxy listener (when a client was started).
    pub egress_addr: Option<SocketAddr>,
    /// The edge's live egress policy.
    pub edge_egress_policy: Arc<PolicyHandle>,
    /// Edge QUIC address.
    pub tunnel_addr: SocketAddr,
    /// Edge mTLS ingress address.
    pub ingress_addr: SocketAddr,
    /// Edge plaintext ingress address.
    pub plaintext_addr: SocketAddr,
    /// The edge's live-tunnel registry.
    pub registry: Arc<tunnel_server::Registry>,
    /// The edge's certificate (to start more clients against it).
    pub edge_cert: IssuedCert,
    /// The edge's live policy (swap it to test reloads).
    pub edge_policy: Arc<PolicyHandle>,
    /// The demo client's live policy.
    pub client_policy: Arc<PolicyHandle>,
    /// The edge's audit log file.
    pub edge_audit: PathBuf,
    /// The demo client's audit log file.
    pub client_audit: PathBuf,
    /// The edge's audit log handle.
    pub edge_audit_log: AuditLog,
    /// Holds the audit logs; removed when the topology is dropped.
    pub state_dir: tempfile::TempDir,
    /// The edge's configuration as first built, for [`Topology::restart_edge`].
    edge_config: tunnel_server::Config,
    audit_durability: Durability,
}

impl Topology {
    /// Default topology: everything up and the tunnel registered.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default()).await
    }

    /// A topology with options; returns once the tunnel is registered (when
    /// a client is started).
    pub async fn start_with(opts: Options) -> anyhow::Result<Self> {
        proxy::telemetry::init("warn");
        let pki = Pki::new()?;
        let state_dir = tempfile::tempdir()?;
        let edge_audit = opts
            .edge_audit_dir
            .clone()
            .unwrap_or_else(|| state_dir.path().join("audit"))
            .join("edge.log");
        let mut edge_audit_cfg = AuditConfig::new(&edge_audit, Side::Edge);
        edge_audit_cfg.durability = opts.audit_durability;
        let upstream = upstream::start("127.0.0.1:0".parse()?).await?;
        let cp_upstream = upstream::start("127.0.0.1:0".parse()?).await?;
        let tcp_echo = upstream::start_tcp_echo("127.0.0.1:0".parse()?).await?;
        let cp_tcp_echo = upstream::start_tcp_echo("127.0.0.1:0".parse()?).await?;
        let cp_base: http::Uri = format!("http://{}", cp_upstream.addr).parse()?;
        let mut upstreams = BTreeMap::new();
        for (name, protocol) in [("cp-echo", Protocol::H2c), ("cp-web", Protocol::Http1)] {
            upstreams.insert(
                name.to_string(),
                Service {
                    url: cp_base.clone(),
                    protocol,
                    ca: None,
                    client_identity: None,
                },
            );
        }
        upstreams.insert(
            "cp-tcp".to_string(),
            Service {
                url: format!("tcp://{}", cp_tcp_echo.addr).parse()?,
                protocol: Protocol::Tcp,
                ca: None,
                client_identity: None,
            },
        );
        upstreams.extend(opts.extra_upstreams.clone());
        let edge_egress_policy = PolicyHandle::new(opts.edge_egress_policy.clone(), None);
        let edge_cert = pki.leaf(IdentityKind::Edge, "edge-1")?;
        let edge_cfg = tunnel_server::Config {
            edge_id: "edge-1".into(),
            identity: tls_identity(&edge_cert)?,
            trust: pki.roots()?,
            tls_files: match &opts.edge_tls_dir {
                Some(dir) => Some(pki.write_tls_files(dir, &edge_cert)?),
                None => None,
            },
            tunnel_listen: "127.0.0.1:0".parse()?,
            known_tunnels: opts.known_tunnels.clone(),
            max_egress_streams: tunnel_server::config::DEFAULT_MAX_EGRESS_STREAMS,
            max_connections: opts
                .edge_max_connections
                .unwrap_or(tunnel_server::config::DEFAULT_MAX_CONNECTIONS),
            max_handshakes: tunnel_server::config::DEFAULT_MAX_HANDSHAKES,
            max_connections_per_tunnel: opts
                .edge_max_connections_per_tunnel
                .unwrap_or(tunnel_server::config::DEFAULT_MAX_CONNECTIONS_PER_TUNNEL),
            registration_retry_after: opts
                .edge_registration_retry_after
                .unwrap_or(tunnel_server::config::DEFAULT_REGISTRATION_RETRY_AFTER),
            // Tests of unknown tunnels expect the answer at once.
            warmup: Duration::ZERO,
            stateless_reset_key_file: None,
            stateless_reset_interval: tunnel_server::config::DEFAULT_STATELESS_RESET_INTERVAL,
            domain: DOMAIN.into(),
            ingress_listen: Some("127.0.0.1:0".parse()?),
            plaintext: Some(("127.0.0.1:0".parse()?, SpiffeId::parse(DEV_CALLER)?)),
            policy: PolicyHandle::new(opts.edge_policy.clone(), None),
            egress_policy: edge_egress_policy.clone(),
            upstreams,
            tcp_ingress: vec![tunnel_server::config::TcpIngress {
                listen: "127.0.0.1:0".parse()?,
                tunnel: TUNNEL.into(),
                service: "tcp-echo".into(),
            }],
            audit: edge_audit_cfg,
            admin_listen: None,
            limits: opts.limits,
        };
        let edge_policy = edge_cfg.policy.clone();
        let edge_config = edge_cfg.clone();
        let edge = tunnel_server::build(edge_cfg).await?;
        let tcp_ingress_addr = *edge.tcp_addrs.first().context("tcp ingress bound")?;
        let mut topo = Self {
            tunnel_addr: edge.tunnel_addr,
            ingress_addr: edge.ingress_addr.context("ingress bound")?,
            plaintext_addr: edge.plaintext_addr.context("plaintext bound")?,
            registry: edge.registry.clone(),
            edge_audit_log: edge.audit.clone(),
            edge_audit,
            client_audit: opts
                .client_audit_dir
                .clone()
                .unwrap_or_else(|| state_dir.path().join("audit"))
                .join(format!("client-{TUNNEL}.log")),
            state_dir,
            audit_durability: opts
                .client_audit_durability
                .unwrap_or(opts.audit_durability),
            edge: Some(edge),
            client: None,
            upstream,
            cp_upstream,
            tcp_ingress_addr,
            tcp_echo,
            cp_tcp_echo,
            egress_addr: None,
            edge_egress_policy,
            pki,
            edge_cert,
            edge_policy,
            client_policy: PolicyHandle::new(opts.client_policy.clone(), None),
            edge_config,
        };
        if opts.start_client {
            let mut cfg = topo.client_config(TUNNEL, &opts)?;
            cfg.policy = topo.client_policy.clone();
            cfg.audit.path = topo.client_audit.clone();
            let mut client = tunnel_client::build(cfg)?;
            client.connected().await;
            topo.registry.wait_live(TUNNEL).await;
            topo.egress_addr = client.egress_addrs.first().copied();
            topo.client = Some(client);
        }
        Ok(topo)
    }

    /// A client configuration for tunnel `name` pointing at this edge and
    /// the example upstream.
    pub fn client_config(
        &self,
        name: &str,
        opts: &Options,
    ) -> anyhow::Result<tunnel_client::Config> {
        let cert = self.pki.leaf(IdentityKind::Tunnel, name)?;
        let base: http::Uri = format!("http://{}", self.upstream.addr).parse()?;
        let mut services = BTreeMap::new();
        services.insert(
            "echo".to_string(),
            Service {
                url: base.clone(),
                protocol: Protocol::H2c,
                ca: None,
                client_identity: None,
            },
        );
        services.insert(
            "web".to_string(),
            Service {
                url: base,
                protocol: Protocol::Http1,
                ca: None,
                client_identity: None,
            },
        );
        services.insert(
            "tcp-echo".to_string(),
            Service {
                url: format!("tcp://{}", self.tcp_echo.addr).parse()?,
                protocol: Protocol::Tcp,
                ca: None,
                client_identity: None,
            },
        );
        services.extend(opts.extra_services.clone());
        Ok(tunnel_client::Config {
            identity: tls_identity(&cert)?,
            trust: self.pki.roots()?,
            tls_files: None,
            edges: vec![tunnel_client::config::EdgeAddress::new(
                self.tunnel_addr.to_string(),
                "localhost",
            )],
            // One edge here; tests of several edges raise it.
            max_edges: 1,
            connections_per_edge: 1,
            resolve_interval: Duration::from_secs(30),
            services,
            labels: BTreeMap::new(),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            dial_timeout: Duration::from_secs(1),
            stable_after: Duration::from_secs(5),
            policy: PolicyHandle::new(opts.client_policy.clone(), None),
            egress_policy: PolicyHandle::new(opts.client_egress_policy.clone(), None),
            egress_listeners: vec![tunnel_client::config::EgressListener {
                listen: "127.0.0.1:0".parse()?,
                workload: opts.egress_workload.clone(),
            }],
            audit: {
                let mut a = AuditConfig::new(
                    self.state_dir
                        .path()
                        .join("audit")
                        .join(format!("client-{name}.log")),
                    Side::Client,
                );
                a.durability = self.audit_durability;
                a
            },
            admin_listen: None,
            limits: opts.limits,
        })
    }

    /// The host a caller uses for `service` on the demo tunnel.
    pub fn host(&self, service: &str) -> String {
        format!("{service}.{TUNNEL}.{DOMAIN}")
    }

    /// The plaintext ingress as a base URL. The URL's authority is not the
    /// routing host, so callers set `Host` themselves (see [`crate::callers`]).
    pub fn plaintext_base(&self) -> String {
        format!("http://{}", self.plaintext_addr)
    }

    /// Stops the client (the tunnel goes offline) and waits until the edge
    /// has noticed.
    pub async fn stop_client(&mut self) {
        if let Some(c) = self.client.take() {
            c.shutdown(std::time::Duration::ZERO).await;
        }
        self.registry.wait_offline(TUNNEL).await;
    }

    /// Stops the edge at once (its tunnels see `GOING_AWAY` together) and
    /// starts a new one on the same tunnel address, with the same key and
    /// audit log; its other listeners get new ports.
    pub async fn restart_edge(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.edge.take() {
            e.shutdown(std::time::Duration::ZERO).await;
        }
        let mut cfg = self.edge_config.clone();
        cfg.tunnel_listen = self.tunnel_addr;
        let edge = tunnel_server::build(cfg).await?;
        self.ingress_addr = edge.ingress_addr.context("ingress bound")?;
        self.plaintext_addr = edge.plaintext_addr.context("plaintext bound")?;
        self.tcp_ingress_addr = *edge.tcp_addrs.first().context("tcp ingress bound")?;
        self.registry = edge.registry.clone();
        self.edge_audit_log = edge.audit.clone();
        self.edge = Some(edge);
        Ok(())
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        if let Some(c) = self.client.take() {
            c.shutdown(std::time::Duration::ZERO).await;
        }
        if let Some(e) = self.edge.take() {
            e.shutdown(std::time::Duration::ZERO).await;
        }
    }

    /// A certificate directory for processes started from files.
    pub fn write_pki(&self, dir: &std::path::Path) -> anyhow::Result<PathBuf> {
        self.pki.ca.write_files(dir, true)?;
        Ok(dir.to_path_buf())
    }
}
