//! The edge's configuration: TOML → [`RawConfig`] → validated [`Config`].
//! Every problem in a file is reported at once, each naming its key.

use std::net::SocketAddr;
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
use proxy::{Limits, SpiffeId};
use rustls::RootCertStore;
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[edge]`
    #[serde(default)]
    pub edge: RawEdge,
    /// `[tls]`
    pub tls: RawTls,
    /// `[tunnels]`
    pub tunnels: RawTunnels,
    /// `[ingress]`
    pub ingress: RawIngress,
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

/// `[egress]`: what data-plane workloads may reach through their tunnel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    /// Egress policy file (docs/policy.md, egress scope). Without one every
    /// egress call is denied.
    pub policy: Option<PathBuf>,
    /// Named upstreams: a workload names one of these, never an address.
    #[serde(default)]
    pub upstreams: std::collections::BTreeMap<String, proxy::upstream::RawUpstream>,
}

/// `[policy]`: who may call what through which tunnel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Policy file (docs/policy.md). Without one every call is denied.
    pub file: Option<PathBuf>,
}

/// `[edge]`: who this edge is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Edge name in logs and WELCOME; default: from the certificate.
    pub id: Option<String>,
}

/// `[tls]`: this edge's identity and whom it trusts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain (leaf first) with a `spiffe://<td>/edge/<name>` URI SAN.
    pub cert: PathBuf,
    /// PEM private key for `cert`.
    pub key: PathBuf,
    /// PEM CA certificates that tunnel clients and callers chain to.
    pub trust_bundle: PathBuf,
}

/// `[tunnels]`: the QUIC listener tunnel clients dial.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnels {
    /// UDP address, e.g. `0.0.0.0:4433`.
    pub listen: String,
    /// Tunnel names expected here; calls to them while disconnected get
    /// "tunnel offline" rather than "unknown tunnel" even before they first
    /// connect.
    #[serde(default)]
    pub known: Vec<String>,
    /// Streams one tunnel may have open towards the edge at once (its
    /// egress calls); default [`DEFAULT_MAX_EGRESS_STREAMS`].
    pub max_egress_streams: Option<u32>,
    /// Tunnel connections the edge holds at once (handshaking or
    /// registered); default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: Option<usize>,
    /// QUIC handshakes and registrations in progress at once; default
    /// [`DEFAULT_MAX_HANDSHAKES`].
    pub max_handshakes: Option<usize>,
    /// Registered connections one tunnel name may hold at this edge (all
    /// its replicas and slots together); default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_TUNNEL`].
    pub max_connections_per_tunnel: Option<usize>,
    /// The retry-after, in milliseconds, sent with a registration refused
    /// as overloaded or draining; default
    /// [`DEFAULT_REGISTRATION_RETRY_AFTER`].
    pub registration_retry_after_ms: Option<u64>,
    /// For this long after start, calls to a tunnel name the edge has not
    /// seen are answered `tunnel-offline` (retryable), not unknown;
    /// default [`DEFAULT_WARMUP`].
    pub warmup_ms: Option<u64>,
    /// A secret file (at least 32 bytes) the QUIC stateless-reset key is
    /// derived from; default: derived from the edge's private key. Give
    /// every edge process behind one address the same file.
    pub stateless_reset_key_file: Option<PathBuf>,
    /// Least time between two stateless resets the edge sends, in
    /// microseconds; default [`DEFAULT_STATELESS_RESET_INTERVAL`].
    pub stateless_reset_interval_us: Option<u64>,
}

/// Default of `[tunnels] stateless_reset_interval_us`: 100 µs, so a
/// restarted edge resets ten thousand stale tunnel connections a second
/// (quinn's own default, 20 ms, would take 20 s for a thousand). A reset is
/// always smaller than the packet that caused it, so this bounds work, not
/// amplification.
pub const DEFAULT_STATELESS_RESET_INTERVAL: Duration = Duration::from_micros(100);

/// Default of `[tunnels] max_connections`: 20,000 tunnel connections,
/// ~1 GiB of edge memory at ~40 KiB each (docs/performance.md); the edge
/// refuses more rather than running out of memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// Default of `[tunnels] max_handshakes`: 256 in progress at once. A
/// handshake costs a signature and a few round trips; 256 keeps the
/// measured registration rate (~900/s at 64 in flight) with room for a
/// reconnect storm, while a flood of Initials cannot queue unbounded
/// TLS work.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// Default of `[tunnels] max_connections_per_tunnel`: 1,024 registered
/// connections per tunnel name, room for hundreds of replicas of one
/// sidecar while one tunnel identity cannot take the whole of
/// `max_connections` from the others.
pub const DEFAULT_MAX_CONNECTIONS_PER_TUNNEL: usize = 1024;

/// Default of `[tunnels] warmup_ms`: 30 s, the client's backoff cap, by
/// which every client that lost this edge in a restart has redialed it.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(30);

/// Default of `[tunnels] registration_retry_after_ms`: 5 s, long enough
/// for a drained edge's replacement to come up or a peer connection to
/// end, short against the client's 30 s backoff cap.
pub const DEFAULT_REGISTRATION_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Default of `[tunnels] max_egress_streams`: 128 concurrent egress calls
/// per tunnel connection (more wait for a free stream). quinn reserves
/// per-connection state for every stream a peer may open, so this, not
/// Tether's own state, is what an idle tunnel costs the edge: ~40 KiB per
/// tunnel at 128, ~370 KiB at 4096 (measured with `bench tunnels`).
pub const DEFAULT_MAX_EGRESS_STREAMS: u32 = 128;

/// `[ingress]`: where control-plane callers send requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    /// Hosts are `<service>.<tunnel>.<domain>`.
    pub domain: String,
    /// TCP address of the mTLS listener (HTTP/1.1 and HTTP/2); omit to disable.
    pub listen: Option<String>,
    /// Development listener without TLS; loopback only.
    pub plaintext: Option<RawPlaintext>,
    /// `[[ingress.tcp]]`: raw TCP listeners (mTLS) mapped to a tunnel's TCP
    /// service.
    #[serde(default)]
    pub tcp: Vec<RawTcpIngress>,
}

/// `[[ingress.tcp]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpIngress {
    /// TCP address; callers connect with TLS and a client certificate.
    pub listen: String,
    /// The tunnel (by name) whose service this listener reaches.
    pub tunnel: String,
    /// The tunnel's TCP service.
    pub service: String,
}

/// One validated raw TCP ingress listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpIngress {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Tunnel name.
    pub tunnel: String,
    /// Service name within the tunnel.
    pub service: String,
}

/// `[ingress.plaintext]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaintext {
    /// Loopback TCP address.
    pub listen: String,
    /// The identity every call on this listener is attributed to.
    pub caller_identity: String,
}

/// Validated edge configuration. Tests build this directly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Edge name.
    pub edge_id: String,
    /// This edge's certificate, key and identity.
    pub identity: TlsIdentity,
    /// CAs trusted for tunnel clients and callers.
    pub trust: Arc<RootCertStore>,
    /// Where `identity` and `trust` were loaded from, so they reload live
    /// (SIGHUP or a file change); `None`: they never change.
    pub tls_files: Option<TlsFiles>,
    /// QUIC listener.
    pub tunnel_listen: SocketAddr,
    /// Tunnel names expected even before they connect.
    pub known_tunnels: Vec<String>,
    /// Streams one tunnel connection may open towards the edge at once.
    pub max_egress_streams: u32,
    /// Tunnel connections held at once.
    pub max_connections: usize,
    /// Handshakes and registrations in progress at once.
    pub max_handshakes: usize,
    /// Registered connections per tunnel name; more are refused at HELLO
    /// as overloaded.
    pub max_connections_per_tunnel: usize,
    /// The retry-after of a registration refused as overloaded or
    /// draining.
    pub registration_retry_after: Duration,
    /// How long after start an unseen tunnel name counts as offline.
    pub warmup: Duration,
    /// Secret file for the stateless-reset key; `None`: derived from
    /// [`Config::identity`]'s private key.
    pub stateless_reset_key_file: Option<PathBuf>,
    /// Least time between two stateless resets.
    pub stateless_reset_interval: Duration,
    /// Routing domain.
    pub domain: String,
    /// mTLS ingress listener.
    pub ingress_listen: Option<SocketAddr>,
    /// Plaintext development listener and the identity it asserts.
    pub plaintext: Option<(SocketAddr, SpiffeId)>,
    /// Raw TCP ingress listeners.
    pub tcp_ingress: Vec<TcpIngress>,
    /// The live authorisation policy.
    pub policy: Arc<PolicyHandle>,
    /// The live egress policy.
    pub egress_policy: Arc<PolicyHandle>,
    /// Named egress upstreams.
    pub upstreams: std::collections::BTreeMap<String, proxy::upstream::UpstreamSpec>,
    /// Where and how streams are audited.
    pub audit: AuditConfig,
    /// Admin listener (`/healthz`, `/readyz`).
    pub admin_listen: Option<std::net::SocketAddr>,
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

    /// Validates a parsed file; relative paths resolve against `base`.
    pub fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let identity = match load_identity(&base.join(&raw.tls.cert), &base.join(&raw.tls.key)) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push("tls.cert / tls.key", e);
                None
            }
        };
        let trust = match load_trust_bundle(&base.join(&raw.tls.trust_bundle)) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push("tls.trust_bundle", e);
                None
            }
        };
        let tunnel_listen = socket_addr("tunnels.listen", &raw.tunnels.listen, &mut errors);
        for name in &raw.tunnels.known {
            if let Err(e) = crate::route::validate_label(name) {
                errors.push("tunnels.known", format!("'{name}': {e}"));
            }
        }
        let domain = raw
            .ingress
            .domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty()
            || domain
                .split('.')
                .any(|l| crate::route::validate_label(l).is_err())
        {
            errors.push(
                "ingress.domain",
                format!("'{}' is not a DNS name", raw.ingress.domain),
            );
        }
        let ingress_listen = raw
            .ingress
            .listen
            .as_deref()
            .and_then(|l| socket_addr("ingress.listen", l, &mut errors));
        let plaintext = raw.ingress.plaintext.and_then(|p| {
            let addr = socket_addr("ingress.plaintext.listen", &p.listen, &mut errors)?;
            if !addr.ip().is_loopback() {
                errors.push(
                    "ingress.plaintext.listen",
                    "the plaintext listener carries no authentication and may bind only to loopback (127.0.0.1 or ::1)",
                );
            }
            match SpiffeId::parse(&p.caller_identity) {
                Ok(id) => Some((addr, id)),
                Err(e) => {
                    errors.push("ingress.plaintext.caller_identity", e);
                    None
                }
            }
        });
        let mut tcp_ingress = Vec::new();
        for (i, t) in raw.ingress.tcp.iter().enumerate() {
            let key = format!("ingress.tcp[{i}]");
            for (k, v) in [("tunnel", &t.tunnel), ("service", &t.service)] {
                if let Err(e) = crate::route::validate_label(v) {
                    errors.push(&format!("{key}.{k}"), format!("'{v}' {e}"));
                }
            }
            if let Some(listen) = socket_addr(&format!("{key}.listen"), &t.listen, &mut errors) {
                tcp_ingress.push(TcpIngress {
                    listen,
                    tunnel: t.tunnel.clone(),
                    service: t.service.clone(),
                });
            }
        }
        if ingress_listen.is_none() && plaintext.is_none() && tcp_ingress.is_empty() {
            errors.push(
                "ingress",
                "set listen (mTLS) or [ingress.plaintext], or callers cannot reach any tunnel",
            );
        }
        let limits = raw.limits.into_limits(&mut errors);
        let policy = policy_handle(
            raw.policy.file.as_deref(),
            base,
            Scope::Edge,
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
        let upstreams = proxy::upstream::specs_from_raw(
            "egress.upstreams",
            raw.egress.upstreams,
            base,
            &mut errors,
        );
        let edge_id = raw.edge.id.clone().unwrap_or_else(|| {
            identity
                .as_ref()
                .and_then(|i| i.id.name_of_kind("edge").map(str::to_string))
                .unwrap_or_else(|| "edge".to_string())
        });
        let max_egress_streams = raw
            .tunnels
            .max_egress_streams
            .unwrap_or(DEFAULT_MAX_EGRESS_STREAMS);
        if max_egress_streams == 0 {
            errors.push(
                "tunnels.max_egress_streams",
                "must be at least 1 (tunnels need a stream per egress call)",
            );
        }
        let max_connections = raw
            .tunnels
            .max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let max_handshakes = raw.tunnels.max_handshakes.unwrap_or(DEFAULT_MAX_HANDSHAKES);
        if max_connections == 0 || max_handshakes == 0 {
            errors.push(
                "tunnels.max_connections / tunnels.max_handshakes",
                "must be at least 1 (0 would refuse every tunnel)",
            );
        }
        let max_connections_per_tunnel = raw
            .tunnels
            .max_connections_per_tunnel
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_TUNNEL);
        if max_connections_per_tunnel == 0 {
            errors.push(
                "tunnels.max_connections_per_tunnel",
                "must be at least 1 (0 would refuse every tunnel)",
            );
        }
        let registration_retry_after = raw
            .tunnels
            .registration_retry_after_ms
            .map_or(DEFAULT_REGISTRATION_RETRY_AFTER, Duration::from_millis);
        if registration_retry_after.is_zero() {
            errors.push(
                "tunnels.registration_retry_after_ms",
                "must be at least 1 (0 would mean no hint, and clients refused together would return together)",
            );
        }
        let warmup = raw
            .tunnels
            .warmup_ms
            .map_or(DEFAULT_WARMUP, Duration::from_millis);
        let stateless_reset_key_file = raw
            .tunnels
            .stateless_reset_key_file
            .as_ref()
            .map(|p| base.join(p));
        if let Some(path) = &stateless_reset_key_file {
            if let Err(e) = proxy::reset_key::from_file(path) {
                errors.push("tunnels.stateless_reset_key_file", e);
            }
        }
        let stateless_reset_interval = raw
            .tunnels
            .stateless_reset_interval_us
            .map_or(DEFAULT_STATELESS_RESET_INTERVAL, Duration::from_micros);
        let audit = raw.audit.into_config(base, Side::Edge, &mut errors);
        let admin_listen = raw
            .admin
            .listen
            .as_deref()
            .and_then(|l| socket_addr("admin.listen", l, &mut errors));
        match (identity, trust, tunnel_listen, audit) {
            (Some(identity), Some(trust), Some(tunnel_listen), Some(audit)) => {
                errors.finish(Config {
                    edge_id,
                    identity,
                    trust,
                    tls_files: Some(TlsFiles {
                        cert: base.join(&raw.tls.cert),
                        key: base.join(&raw.tls.key),
                        trust_bundle: base.join(&raw.tls.trust_bundle),
                    }),
                    tunnel_listen,
                    known_tunnels: raw.tunnels.known,
                    max_egress_streams,
                    max_connections,
                    max_handshakes,
                    max_connections_per_tunnel,
                    registration_retry_after,
                    warmup,
                    stateless_reset_key_file,
                    stateless_reset_interval,
                    domain,
                    ingress_listen,
                    plaintext,
                    tcp_ingress,
                    policy,
                    egress_policy,
                    upstreams,
                    audit,
                    admin_listen,
                    limits,
                })
            }
            _ => Err(errors),
        }
    }
}
