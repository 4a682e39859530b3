//! Where the edges are: the configured `host:port` entries resolved to
//! socket addresses. A name may resolve to many (a Kubernetes headless
//! Service gives one address per edge pod), so the answer is re-resolved
//! when it is older than `[edge] resolve_interval_ms` and after a failed
//! dial (at most once a second), which is how the client learns of edges
//! that came and went.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::config::EdgeAddress;
use crate::dial::DialError;

/// A resolved edge address and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where to send the handshake.
    pub addr: SocketAddr,
    /// The DNS name verified in the edge's certificate.
    pub server_name: String,
}

/// How soon after a refresh a failed dial may force another.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Caches the resolved candidates of every configured edge address.
pub struct Resolver {
    entries: Vec<EdgeAddress>,
    interval: Duration,
    cache: Mutex<Option<(Instant, Vec<Candidate>)>>,
}

impl Resolver {
    /// A resolver for `entries`, re-resolving after `interval`.
    pub fn new(entries: Vec<EdgeAddress>, interval: Duration) -> Self {
        Self {
            entries,
            interval,
            cache: Mutex::new(None),
        }
    }

    /// Every candidate, in configuration order, then resolution order.
    /// `after_failure` asks for a fresh answer (rate-limited). When every
    /// lookup fails the last good answer is kept, so a DNS outage does
    /// not take away edges that are still up.
    pub async fn candidates(&self, after_failure: bool) -> Result<Vec<Candidate>, DialError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.as_ref() {
            let age = at.elapsed();
            let fresh = age < self.interval && !(after_failure && age >= MIN_REFRESH);
            if fresh {
                return Ok(list.clone());
            }
        }
        let mut resolved = Vec::new();
        let mut errors = Vec::new();
        for entry in &self.entries {
            match tokio::net::lookup_host(&entry.address).await {
                Ok(addrs) => {
                    for addr in addrs {
                        let c = Candidate {
                            addr,
                            server_name: entry.server_name.clone(),
                        };
                        if !resolved.contains(&c) {
                            resolved.push(c);
                        }
                    }
                }
                Err(e) => errors.push(format!("{}: {e}", entry.address)),
            }
        }
        if resolved.is_empty() {
            let why = if errors.is_empty() {
                "no addresses".to_string()
            } else {
                errors.join("; ")
            };
            if let Some((at, list)) = cache.as_mut() {
                warn!(error = %why, "cannot resolve the edge addresses; keeping the last answer");
                // Do not retry the lookup on every dial of every slot.
                *at = Instant::now();
                return Ok(list.clone());
            }
            let names: Vec<&str> = self.entries.iter().map(|e| e.address.as_str()).collect();
            return Err(DialError::Resolve(names.join(", "), why));
        }
        if !errors.is_empty() {
            warn!(errors = %errors.join("; "), "some edge addresses did not resolve");
        }
        debug!(count = resolved.len(), "edge addresses resolved");
        *cache = Some((Instant::now(), resolved.clone()));
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: &str) -> EdgeAddress {
        EdgeAddress {
            address: address.into(),
            server_name: "localhost".into(),
        }
    }

    #[tokio::test]
    async fn every_entry_is_resolved_and_duplicates_dropped() {
        let r = Resolver::new(
            vec![
                entry("127.0.0.1:4433"),
                entry("127.0.0.2:4433"),
                entry("127.0.0.1:4433"),
            ],
            Duration::from_secs(30),
        );
        let got: Vec<SocketAddr> = r
            .candidates(false)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.addr)
            .collect();
        assert_eq!(
            got,
            ["127.0.0.1:4433".parse().ok(), "127.0.0.2:4433".parse().ok()]
                .into_iter()
                .flatten()
                .collect::<Vec<SocketAddr>>()
        );
    }

    #[tokio::test]
    async fn a_name_that_never_resolved_is_an_error_naming_it() {
        let r = Resolver::new(
            vec![entry("no-such-edge.invalid:4433")],
            Duration::from_secs(30),
        );
        match r.candidates(false).await {
            Err(DialError::Resolve(names, _)) => assert_eq!(names, "no-such-edge.invalid:4433"),
            other => panic!("expected a resolve error, got {other:?}"),
        }
    }
}
