//! The target deployment: an edge bench did not start, reached on its
//! mTLS ingress with a caller identity from PEM files, e.g. a staging edge
//! with a tunnel client and example upstream behind it. Only the `tunnel`
//! path exists there (and `direct`, when the upstream's address is given
//! with `--direct`); bench knows nothing of the edge's processes, so only
//! the load generator's own CPU and memory are measured.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tether_tests::callers::identity_tls;

/// The command line's description of the target.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// `HOST:PORT` of the edge's mTLS ingress.
    pub target: String,
    /// PEM CA bundle the edge's certificate chains to.
    pub ca: PathBuf,
    /// PEM certificate of the caller identity.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// The routing host calls carry, `<service>.<tunnel>.<domain>`.
    pub authority: String,
    /// The name the edge's certificate is verified for; the authority's
    /// host when absent (an edge's certificate covers
    /// `*.<tunnel>.<domain>` for that reason).
    pub server_name: Option<String>,
    /// `HOST:PORT` of the upstream itself, for the `direct` baseline.
    pub direct: Option<String>,
}

/// A resolved target, ready to connect to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The ingress address `target` resolved to.
    pub addr: SocketAddr,
    /// TLS presenting the caller identity, offering h2.
    pub tls: rustls::ClientConfig,
    /// See [`TargetSpec::authority`].
    pub authority: String,
    /// The name the edge's certificate is verified for.
    pub server_name: String,
    /// The upstream's own address (see [`TargetSpec::direct`]).
    pub direct: Option<SocketAddr>,
}

impl Target {
    /// Loads the identity and trust bundle and resolves the address;
    /// every failure names the flag to fix.
    pub async fn resolve(spec: &TargetSpec) -> anyhow::Result<Self> {
        let roots = proxy::tls::load_trust_bundle(&spec.ca)
            .with_context(|| format!("--ca {}", spec.ca.display()))?;
        let id = proxy::tls::load_identity(&spec.cert, &spec.key).with_context(|| {
            format!(
                "--cert {} / --key {}",
                spec.cert.display(),
                spec.key.display()
            )
        })?;
        let tls = identity_tls(id, roots, &[b"h2"])?;
        let addr = resolve("--target", &spec.target).await?;
        let direct = match &spec.direct {
            Some(d) => Some(resolve("--direct", d).await?),
            None => None,
        };
        let host = spec
            .authority
            .rsplit_once(':')
            .map_or(spec.authority.as_str(), |(h, _)| h);
        Ok(Self {
            addr,
            tls,
            authority: spec.authority.clone(),
            server_name: spec.server_name.clone().unwrap_or_else(|| host.to_string()),
            direct,
        })
    }
}

/// The first address `host_port` resolves to; errors name `flag`.
async fn resolve(flag: &str, host_port: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("{flag} {host_port}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("{flag} {host_port} resolves to no address"))
}
