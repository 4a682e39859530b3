//! The tunnel client's configuration: TOML → [`RawConfig`] → [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proxy::audit::{AuditConfig, Side};
use proxy::config::{
    load_toml, policy_handle, socket_addr, ConfigErrors, RawAdmin, RawAudit, RawLimits,
};
use proxy::credentials::TlsFiles;
use proxy::policy::{PolicyHandle, Scope};
use proxy::tls::{load_identity, load_trust_bundle, TlsIdentity};
use proxy::upstream::{specs_from_raw, RawUpstream};
pub use proxy::upstream::{Protocol, UpstreamSpec as Service};
use proxy::Limits;
use rustls::RootCertStore;
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[tls]`
    pub tls: RawTls,
    /// `[edge]`
    pub edge: RawEdge,
    /// `[services.<name>]`
    #[serde(default)]
    pub services: BTreeMap<String, RawUpstream>,
    /// `[labels]`: free-form, sent in HELLO.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `[reconnect]`
    #[serde(default)]
    pub reconnect: RawReconnect,
    /// `[policy]`
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[egress]`
    #[serde(default)]
    pub egress: RawEgress,
    /// `[audit]`
    #[serde(default)]
    pub audit: RawAudit,
    /// `[admin]`
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
}

/// `[egress]`: the local proxy data-plane workloads use to reach
/// control-plane upstreams through the tunnel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    /// The client's own egress policy (docs/policy.md, egress scope).
    /// Without one every egress call is denied here.
    pub policy: Option<PathBuf>,
    /// `[[egress.listener]]`: proxy listeners for workloads.
    #[serde(default)]
    pub listener: Vec<RawEgressListener>,
}

/// `[[egress.listener]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgressListener {
    /// TCP address; loopback unless `allow_remote`.
    pub listen: String,
    /// Label for the workloads using this listener; recorded in audit and
    /// matched by egress policies (`workloads`).
    pub workload: Option<String>,
    /// Permit a non-loopback address (a standalone client serving several
    /// workloads); anyone who can reach it can call the control plane as
    /// this tunnel.
    #[serde(default)]
    pub allow_remote: bool,
}

/// One validated egress listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressListener {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The workload label, if any.
    pub workload: Option<String>,
}

/// `[policy]`: the data-plane owner's veto over what callers may reach.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Policy file (docs/policy.md). Without one every incoming call is denied.
    pub file: Option<PathBuf>,
}

/// `[tls]`: the tunnel's identity and whom it trusts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM chain with a `spiffe://<td>/tunnel/<name>` URI SAN; the name is
    /// the tunnel's routing name.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates the edge's certificate chains to.
    pub trust_bundle: PathBuf,
}

/// `[edge]`: where to dial, and how many edges to stay connected to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// `host:port` of an edge's tunnel listener (UDP).
    pub address: Option<String>,
    /// More `host:port` entries; each may resolve to many edges.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Name to verify in every edge certificate; default: the host of
    /// each address.
    pub server_name: Option<String>,
    /// Distinct edges (by certificate identity) to keep connections to
    /// (default 2).
    pub max_edges: Option<usize>,
    /// Connections to each of them (default 1).
    pub connections_per_edge: Option<usize>,
    /// Re-resolve the addresses when the last answer is older than this
    /// (default 30 s).
    pub resolve_interval_ms: Option<u64>,
}

/// Default `[edge] max_edges`: a second edge keeps the tunnel up through
/// the loss of one.
pub const DEFAULT_MAX_EDGES: usize = 2;
/// Upper bound of `max_edges × connections_per_edge`: each slot is a
/// socket and a connection.
pub const MAX_SLOTS: usize = 64;

/// One configured edge address and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeAddress {
    /// `host:port`, resolved before each dial (see `crate::resolver`).
    pub address: String,
    /// The DNS name verified in the edge's certificate.
    pub server_name: String,
}

impl EdgeAddress {
    /// An address whose certificate name is its host.
    pub fn new(address: impl Into<String>, server_name: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            server_name: server_name.into(),
        }
    }
}

/// `[reconnect]`: redial backoff.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconnect {
    /// First delay after a failure (default 200 ms).
    pub initial_backoff_ms: Option<u64>,
    /// Largest delay (default 30 s).
    pub max_backoff_ms: Option<u64>,
    /// Bound of the first QUIC handshake attempt (default 1 s); doubled
    /// after each attempt that times out, up to `limits.handshake_timeout_ms`.
    pub dial_timeout_ms: Option<u64>,
    /// How long a connection must stay up before the backoff starts again
    /// from `initial_backoff_ms` (default 5 s).
    pub stable_after_ms: Option<u64>,
}

/// Validated client configuration. Tests build this directly.
#[derive(Debug, Clone)]
pub struct Config {
    /// The tunnel's certificate, key and identity.
    pub identity: TlsIdentity,
    /// CAs trusted for the edge.
    pub trust: Arc<RootCertStore>,
    /// Where `identity` and `trust` were loaded from, so they reload live
    /// (SIGHUP or a file change); `None`: they never change.
    pub tls_files: Option<TlsFiles>,
    /// The edges' addresses (at least one).
    pub edges: Vec<EdgeAddress>,
    /// Distinct edges to keep connections to.
    pub max_edges: usize,
    /// Connections to each edge.
    pub connections_per_edge: usize,
    /// How long a resolved address list is used before it is resolved again.
    pub resolve_interval: Duration,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Labels sent in HELLO.
    pub labels: BTreeMap<String, String>,
    /// First redial delay.
    pub initial_backoff: Duration,
    /// Largest redial delay.
    pub max_backoff: Duration,
    /// Bound of the first handshake attempt of a dial.
    pub dial_timeout: Duration,
    /// Uptime after which a lost connection's redial backs off from the start.
    pub stable_after: Duration,
    /// The live authorisation policy.
    pub policy: Arc<PolicyHandle>,
    /// Where and how streams are audited.
    pub audit: AuditConfig,
    /// Admin listener (`/healthz`, `/readyz`).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The client's own egress policy.
    pub egress_policy: Arc<PolicyHandle>,
    /// Egress proxy listeners.
    pub egress_listeners: Vec<EgressListener>,
    /// Every bound.
    pub limits: Limits,
}

impl Config {
    /// Loads and validates a file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = load_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_raw(raw, base)
    }

    /// The tunnel's routing name (from its certificate).
    pub fn tunnel_name(&self) -> &str {
        self.identity.id.name_of_kind("tunnel").unwrap_or("")
    }

    /// Validates a parsed file; relative paths resolve against `base`.
    pub fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let identity = match load_identity(&base.join(&raw.tls.cert), &base.join(&raw.tls.key)) {
            Ok(id) if id.id.name_of_kind("tunnel").is_none() => {
                errors.push(
                    "tls.cert",
                    format!(
                        "identity {} is not a tunnel identity (spiffe://<td>/tunnel/<name>)",
                        id.id
                    ),
                );
                None
            }
            Ok(id) => Some(id),
            Err(e) => {
                errors.push("tls.cert / tls.key", e);
                None
            }
        };
        let trust = load_trust_bundle(&base.join(&raw.tls.trust_bundle))
            .map_err(|e| errors.push("tls.trust_bundle", e))
            .ok();
        let edges = edge_addresses(&raw.edge, &mut errors);
        let max_edges = raw.edge.max_edges.unwrap_or(DEFAULT_MAX_EDGES);
        let connections_per_edge = raw.edge.connections_per_edge.unwrap_or(1);
        if max_edges == 0 || connections_per_edge == 0 {
            errors.push(
                "edge.max_edges / edge.connections_per_edge",
                "must be at least 1",
            );
        } else if max_edges.saturating_mul(connections_per_edge) > MAX_SLOTS {
            errors.push(
                "edge.max_edges / edge.connections_per_edge",
                format!("max_edges × connections_per_edge must be at most {MAX_SLOTS}"),
            );
        }
        let resolve_interval =
            Duration::from_millis(raw.edge.resolve_interval_ms.unwrap_or(30_000));
        if resolve_interval < Duration::from_secs(1) {
            errors.push("edge.resolve_interval_ms", "must be at least 1000");
        }
        let mut services = BTreeMap::new();
        if raw.services.is_empty() {
            errors.push(
                "services",
                "no service configured; add [services.<name>] with url = \"http://127.0.0.1:PORT\"",
            );
        }
        services.extend(specs_from_raw("services", raw.services, base, &mut errors));
        let initial_backoff =
            Duration::from_millis(raw.reconnect.initial_backoff_ms.unwrap_or(200));
        let max_backoff = Duration::from_millis(raw.reconnect.max_backoff_ms.unwrap_or(30_000));
        if initial_backoff.is_zero() || initial_backoff > max_backoff {
            errors.push(
                "reconnect",
                "initial_backoff_ms must be > 0 and ≤ max_backoff_ms",
            );
        }
        let dial_timeout = Duration::from_millis(raw.reconnect.dial_timeout_ms.unwrap_or(1000));
        if dial_timeout.is_zero() {
            errors.push("reconnect.dial_timeout_ms", "must be > 0");
        }
        let stable_after = Duration::from_millis(raw.reconnect.stable_after_ms.unwrap_or(5000));
        let limits = raw.limits.into_limits(&mut errors);
        let policy = policy_handle(
            raw.policy.file.as_deref(),
            base,
            Scope::Client,
            "policy.file",
            &mut errors,
        );
        let egress_policy = policy_handle(
            raw.egress.policy.as_deref(),
            base,
            Scope::Egress,
            "egress.policy",
            &mut errors,
        );
        let mut egress_listeners = Vec::new();
        for (i, l) in raw.egress.listener.iter().enumerate() {
            let key = format!("egress.listener[{i}]");
            let Some(addr) = socket_addr(&format!("{key}.listen"), &l.listen, &mut errors) else {
                continue;
            };
            if !addr.ip().is_loopback() && !l.allow_remote {
                errors.push(
                    &format!("{key}.listen"),
                    "egress listeners bind to loopback (127.0.0.1 or ::1); set allow_remote = true to serve other hosts",
                );
            }
            if let Some(w) = &l.workload {
                if let Err(e) = proxy::upstream::validate_name(w) {
                    errors.push(&format!("{key}.workload"), format!("'{w}' {e}"));
                }
            }
            egress_listeners.push(EgressListener {
                listen: addr,
                workload: l.workload.clone(),
            });
        }
        let audit = raw.audit.into_config(base, Side::Client, &mut errors);
        let admin_listen = raw
            .admin
            .listen
            .as_deref()
            .and_then(|l| socket_addr("admin.listen", l, &mut errors));
        match (identity, trust, audit) {
            (Some(identity), Some(trust), Some(audit)) => errors.finish(Config {
                identity,
                trust,
                tls_files: Some(TlsFiles {
                    cert: base.join(&raw.tls.cert),
                    key: base.join(&raw.tls.key),
                    trust_bundle: base.join(&raw.tls.trust_bundle),
                }),
                edges,
                max_edges,
                connections_per_edge,
                resolve_interval,
                services,
                labels: raw.labels,
                initial_backoff,
                max_backoff,
                dial_timeout,
                stable_after,
                policy,
                egress_policy,
                egress_listeners,
                audit,
                admin_listen,
                limits,
            }),
            _ => Err(errors),
        }
    }
}

/// `[edge] address` and `addresses`, each checked and given the name its
/// certificate must carry.
fn edge_addresses(raw: &RawEdge, errors: &mut ConfigErrors) -> Vec<EdgeAddress> {
    let all: Vec<&String> = raw.address.iter().chain(&raw.addresses).collect();
    if all.is_empty() {
        errors.push(
            "edge.address",
            "no edge address; set address = \"edge.example.com:4433\" (or addresses = [...])",
        );
    }
    let mut edges = Vec::new();
    for address in all {
        match split_host(address) {
            Some(host) => edges.push(EdgeAddress::new(
                address.clone(),
                raw.server_name.clone().unwrap_or_else(|| host.to_string()),
            )),
            None => errors.push("edge.address", format!("'{address}' is not host:port")),
        }
    }
    edges
}

fn split_host(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(host)
}
