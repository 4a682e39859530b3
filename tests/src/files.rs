//! The files a file-configured Tether runs from, written into one
//! directory: a development PKI, the edge's and the client's TOML
//! configurations and their four policy files. The quick start (which
//! starts the libraries from these files) and bench's process mode (which
//! starts the release binaries) both write them here, so the two cannot
//! drift apart, and both exercise the same loading path as production.
//!
//! File names are fixed ([`EDGE_CONFIG`], [`CLIENT_CONFIG`], the
//! certificate stems below); paths inside the configurations are relative
//! to the directory, as the binaries resolve them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certs::{Ca, IdentityKind, LeafSpec};
use proxy::audit::Durability;

use crate::topology::{allow_all_text, DEV_CALLER, DOMAIN, TRUST_DOMAIN, TUNNEL};

/// The edge's configuration file.
pub const EDGE_CONFIG: &str = "edge.toml";
/// The tunnel client's configuration file.
pub const CLIENT_CONFIG: &str = "client.toml";
/// Stem of the edge's certificate and key (`.pem`, `.key`).
pub const EDGE_CERT: &str = "edge-edge-1";
/// Stem of the demo tunnel's certificate and key.
pub const TUNNEL_CERT: &str = "tunnel-demo";
/// Stem of the development caller's certificate and key.
pub const CALLER_CERT: &str = "caller-dev";
/// The CA certificate every process trusts.
pub const CA_CERT: &str = "ca.pem";

/// How long the development certificates last: long enough for a quick
/// start left running for weeks, short enough to be obviously not for
/// production.
const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Copies the files (not directories) of `from` into `to`, created if
/// missing: a second process beside the first with the same PKI and a
/// directory (audit log, configuration) of its own.
pub fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Another edge's directory beside `first` (which holds the development
/// PKI): the same CA and trust, and an edge identity of its own
/// (`spiffe://…/edge/<name>`) in the files the edge configuration names.
pub fn edge_pki_beside(first: &Path, to: &Path, name: &str) -> anyhow::Result<()> {
    copy_files(first, to)?;
    Ca::load_dir(first)?
        .issue(&LeafSpec::new(IdentityKind::Edge, name))?
        .write_files(to, EDGE_CERT, true)?;
    Ok(())
}

/// Writes a development CA and the edge (`edge-1`, also valid for
/// `*.demo.<domain>` so mTLS callers can verify it by routing host), demo
/// tunnel and dev caller identities into `dir`, unless they are there
/// already (a rerun keeps the certificates users may have copied).
pub fn ensure_dev_pki(dir: &Path) -> anyhow::Result<()> {
    if [
        CA_CERT,
        "tunnel-demo.pem",
        "caller-dev.pem",
        "edge-edge-1.pem",
    ]
    .iter()
    .all(|f| dir.join(f).exists())
    {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let ca = Ca::create(TRUST_DOMAIN, Duration::from_secs(365 * 24 * 3600))?;
    ca.write_files(dir, true)?;
    let mut edge = LeafSpec::new(IdentityKind::Edge, "edge-1");
    edge.dns_names.push(format!("*.{TUNNEL}.{DOMAIN}"));
    edge.lifetime = LEAF_LIFETIME;
    ca.issue(&edge)?.write_files(dir, EDGE_CERT, true)?;
    for (kind, name) in [
        (IdentityKind::Tunnel, TUNNEL),
        (IdentityKind::Caller, "dev"),
    ] {
        let mut spec = LeafSpec::new(kind, name);
        spec.lifetime = LEAF_LIFETIME;
        ca.issue(&spec)?.write_files(dir, &spec.file_stem(), true)?;
    }
    Ok(())
}

/// The four policy files' contents (format: docs/policy.md).
#[derive(Clone, Debug)]
pub struct Policies {
    /// The edge's ingress policy (`edge-policy.toml`).
    pub edge: String,
    /// The client's own policy (`client-policy.toml`).
    pub client: String,
    /// The edge's egress policy (`edge-egress-policy.toml`).
    pub edge_egress: String,
    /// The client's egress policy (`client-egress-policy.toml`).
    pub client_egress: String,
}

impl Policies {
    /// Every identity of the trust domain may do everything, at both ends
    /// and both ways: for measurements and tests not about authorisation.
    pub fn allow_all() -> Self {
        let text = allow_all_text();
        Self {
            edge: text.clone(),
            client: text.clone(),
            edge_egress: text.clone(),
            client_egress: text,
        }
    }
}

/// What the edge's configuration says beyond the fixed layout.
#[derive(Clone, Debug)]
pub struct EdgeFiles {
    /// Who wrote the files, for the header comment.
    pub writer: String,
    /// The QUIC tunnel listener (port 0: any).
    pub tunnel_listen: SocketAddr,
    /// The mTLS ingress listener.
    pub ingress_listen: SocketAddr,
    /// The plaintext development listener (asserts [`DEV_CALLER`]).
    pub plaintext_listen: SocketAddr,
    /// The admin listener, if any.
    pub admin_listen: Option<SocketAddr>,
    /// The control-plane example upstream, named `cp-echo` (h2c) and
    /// `cp-web` (HTTP/1.1) for egress.
    pub cp_upstream: SocketAddr,
    /// The audit log's durability.
    pub audit: Durability,
}

/// What the client's configuration says beyond the fixed layout.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    /// Who wrote the files, for the header comment.
    pub writer: String,
    /// The edge's tunnel listener (the real port, not 0).
    pub edge_address: SocketAddr,
    /// The data-plane example upstream, offered as `echo` (h2c) and `web`
    /// (HTTP/1.1).
    pub upstream: SocketAddr,
    /// The admin listener, if any.
    pub admin_listen: Option<SocketAddr>,
    /// The egress proxy listener, labelled workload `demo-app`.
    pub egress_listen: SocketAddr,
    /// The audit log's durability.
    pub audit: Durability,
}

/// The `[audit]` keys for `durability`.
fn durability_keys(d: Durability) -> String {
    match d {
        Durability::Always => "durability = \"always\"".into(),
        Durability::Interval(p) => format!(
            "durability = \"interval\"\ninterval_ms = {}",
            p.as_millis().max(1)
        ),
        Durability::None => "durability = \"none\"".into(),
    }
}

fn admin_section(listen: Option<SocketAddr>) -> String {
    listen.map_or_else(String::new, |a| format!("\n[admin]\nlisten = \"{a}\"\n"))
}

/// Writes `edge.toml` and the edge's two policy files into `dir` (which
/// holds the PKI of [`ensure_dev_pki`]); returns the configuration's path.
pub fn write_edge(dir: &Path, e: &EdgeFiles, policies: &Policies) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"# Edge configuration written by {writer}. See docs/configuration.md.
[edge]
id = "edge-1"

[tls]
cert = "{EDGE_CERT}.pem"
key = "{EDGE_CERT}.key"
trust_bundle = "{CA_CERT}"

[tunnels]
listen = "{tunnel}"
known = ["{TUNNEL}"]

[ingress]
domain = "{DOMAIN}"
listen = "{ingress}"

[ingress.plaintext]
listen = "{plain}"
caller_identity = "{DEV_CALLER}"

[policy]
file = "edge-policy.toml"

[audit]
path = "audit/edge.log"
{durability}
{admin}
# Egress: what data-plane workloads may reach, by name, never by address.
[egress]
policy = "edge-egress-policy.toml"

[egress.upstreams.cp-web]
url = "http://{cp}"
protocol = "http1"

[egress.upstreams.cp-echo]
url = "http://{cp}"
protocol = "h2c"
"#,
        writer = e.writer,
        tunnel = e.tunnel_listen,
        ingress = e.ingress_listen,
        plain = e.plaintext_listen,
        durability = durability_keys(e.audit),
        admin = admin_section(e.admin_listen),
        cp = e.cp_upstream,
    );
    std::fs::write(dir.join("edge-policy.toml"), &policies.edge)?;
    std::fs::write(dir.join("edge-egress-policy.toml"), &policies.edge_egress)?;
    let path = dir.join(EDGE_CONFIG);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes `client.toml` and the client's two policy files into `dir`;
/// returns the configuration's path.
pub fn write_client(dir: &Path, c: &ClientFiles, policies: &Policies) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"# Tunnel client configuration written by {writer}. See docs/configuration.md.
[tls]
cert = "{TUNNEL_CERT}.pem"
key = "{TUNNEL_CERT}.key"
trust_bundle = "{CA_CERT}"

[edge]
address = "{edge}"
server_name = "localhost"

# gRPC over HTTP/2 cleartext.
[services.echo]
url = "http://{upstream}"
protocol = "h2c"

# Plain HTTP/1.1.
[services.web]
url = "http://{upstream}"
protocol = "http1"

[labels]
cluster = "quickstart"

[policy]
file = "client-policy.toml"

[audit]
path = "audit/client-{TUNNEL}.log"
{durability}
{admin}
# The sidecar's local egress proxy: workloads set http_proxy to it, or point
# a gRPC client at it with the upstream's name as authority.
[egress]
policy = "client-egress-policy.toml"

[[egress.listener]]
listen = "{egress}"
workload = "demo-app"
"#,
        writer = c.writer,
        edge = c.edge_address,
        upstream = c.upstream,
        durability = durability_keys(c.audit),
        admin = admin_section(c.admin_listen),
        egress = c.egress_listen,
    );
    std::fs::write(dir.join("client-policy.toml"), &policies.client)?;
    std::fs::write(
        dir.join("client-egress-policy.toml"),
        &policies.client_egress,
    )?;
    let path = dir.join(CLIENT_CONFIG);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What bench's process mode writes loads as the binaries load it.
    #[test]
    fn written_files_load() {
        let dir = tempfile::tempdir().unwrap();
        ensure_dev_pki(dir.path()).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let edge = write_edge(
            dir.path(),
            &EdgeFiles {
                writer: "a test".into(),
                tunnel_listen: any,
                ingress_listen: any,
                plaintext_listen: any,
                admin_listen: Some(any),
                cp_upstream: "127.0.0.1:7000".parse().unwrap(),
                audit: Durability::Interval(Duration::from_millis(250)),
            },
            &Policies::allow_all(),
        )
        .unwrap();
        let cfg = tunnel_server::Config::load(&edge).unwrap();
        assert_eq!(
            cfg.audit.durability,
            Durability::Interval(Duration::from_millis(250))
        );
        assert!(cfg.upstreams.contains_key("cp-echo"));
        let client = write_client(
            dir.path(),
            &ClientFiles {
                writer: "a test".into(),
                edge_address: "127.0.0.1:4433".parse().unwrap(),
                upstream: "127.0.0.1:9000".parse().unwrap(),
                admin_listen: None,
                egress_listen: any,
                audit: Durability::None,
            },
            &Policies::allow_all(),
        )
        .unwrap();
        let cfg = tunnel_client::Config::load(&client).unwrap();
        assert_eq!(cfg.audit.durability, Durability::None);
        assert_eq!(cfg.tunnel_name(), TUNNEL);
        assert_eq!(cfg.egress_listeners.len(), 1);
    }
}
