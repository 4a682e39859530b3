//! The emulated tunnels' identities for `bench tunnels`. The edge's
//! registry keys tunnels by the name in their certificate
//! (`spiffe://<td>/tunnel/<name>`), so N tunnels need N certificates: they
//! are minted from the deployment's CA with the `certs` library (ECDSA
//! P-256, as every Tether identity) before anything is timed, on every
//! core, and each is turned into the QUIC client configuration its tunnel
//! dials with: Tether's TLS (`proxy::tls::client_config`, admitting only
//! `edge` identities), ALPN `tether/1`, and `Limits::default()`'s
//! transport (keepalive and idle timeout included), as the real client's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use certs::{Ca, IdentityKind, LeafSpec};
use proxy::identity::IdentityRule;
use proxy::tls::client_config;
use proxy::wire::ALPN;
use proxy::Limits;
use tether_tests::topology::tls_identity;

/// The QUIC client configuration of every emulated tunnel, in order, and
/// how long minting them took.
pub struct Identities {
    /// One per tunnel; tunnel `i` is `bench-<i>`.
    pub configs: Vec<quinn::ClientConfig>,
    /// Wall-clock time of minting and building them all.
    pub minted_in: Duration,
}

/// Tunnel `i`'s name: a DNS label, as the edge requires.
pub fn tunnel_name(i: usize) -> String {
    format!("bench-{i}")
}

/// Mints `count` tunnel identities from `ca`, each trusting `roots` for
/// the edge, split over the machine's cores (minting is CPU work: a key
/// pair and a signature each).
pub async fn mint(
    ca: Arc<Ca>,
    roots: Arc<rustls::RootCertStore>,
    count: usize,
) -> anyhow::Result<Identities> {
    let started = Instant::now();
    let transport = Limits::default().transport_config();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(workers.max(1)).max(1);
    let mut jobs = Vec::new();
    for from in (0..count).step_by(per) {
        let to = (from + per).min(count);
        let (ca, roots, transport) = (ca.clone(), roots.clone(), transport.clone());
        jobs.push(tokio::task::spawn_blocking(move || {
            (from..to)
                .map(|i| one(&ca, &roots, &transport, i))
                .collect::<anyhow::Result<Vec<_>>>()
        }));
    }
    let mut configs = Vec::with_capacity(count);
    for job in jobs {
        configs.extend(job.await.context("a minting thread failed")??);
    }
    Ok(Identities {
        configs,
        minted_in: started.elapsed(),
    })
}

fn one(
    ca: &Ca,
    roots: &Arc<rustls::RootCertStore>,
    transport: &Arc<quinn::TransportConfig>,
    i: usize,
) -> anyhow::Result<quinn::ClientConfig> {
    let name = tunnel_name(i);
    let cert = ca
        .issue(&LeafSpec::new(IdentityKind::Tunnel, &name))
        .with_context(|| format!("minting the identity of tunnel {name}"))?;
    let identity = tls_identity(&cert)?;
    let rule = IdentityRule {
        trust_domain: ca.trust_domain().to_string(),
        kind: Some("edge"),
    };
    let tls = client_config(&identity, roots.clone(), rule, &[ALPN])?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    cfg.transport_config(transport.clone());
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_tunnel_gets_its_own_identity() {
        let ca = Ca::create("tether.local", Duration::from_secs(7 * 24 * 3600)).unwrap();
        let roots = proxy::tls::roots_from_pem(ca.cert_pem().as_bytes()).unwrap();
        let ids = mint(Arc::new(ca), roots, 5).await.unwrap();
        assert_eq!(ids.configs.len(), 5);
        assert_eq!(tunnel_name(3), "bench-3");
        certs::validate_name(&tunnel_name(123_456)).unwrap();
    }
}
