//! The control-plane edge of Tether.
//!
//! It owns a QUIC listener that tunnel clients dial out to ([`tunnels`]),
//! the registry of live tunnels by certificate name ([`registry`]), and the
//! ingress listeners callers use ([`ingress`]), whose requests are routed
//! by host ([`route`]) and forwarded one QUIC stream per call ([`call`]).
//! [`build`] binds everything and returns a [`Bound`] with the real
//! addresses, so tests run the whole edge in process on port 0.

pub mod admit;
pub mod bounds;
pub mod call;
pub mod config;
pub mod edge_metrics;
pub mod egress;
pub mod ingress;
pub mod registry;
pub mod route;
pub mod status;
pub mod tcp_ingress;
pub mod tunnels;

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use std::future::Future;
use std::time::Duration;

use proxy::audit::AuditLog;
use proxy::credentials::Credentials;
use proxy::identity::IdentityRule;
use proxy::lifecycle::{Ending, Lifecycle};
use proxy::tls::server_config_live;
use proxy::wire::ALPN;
use tokio::net::TcpListener;
use tracing::info;

pub use config::Config;
pub use registry::Registry;

/// State every connection handler shares.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Live tunnels.
    pub registry: Arc<Registry>,
    /// Where every stream is recorded before it is forwarded.
    pub audit: AuditLog,
    /// Numbers streams for audit records.
    pub next_stream: AtomicU64,
    /// Pooled clients for the named egress upstreams.
    pub egress_upstreams: std::collections::HashMap<String, proxy::upstream::Upstream>,
    /// Owns every task of the edge, and its shutdown phase.
    pub life: Lifecycle,
    /// The certificate, key and trust bundle new handshakes use.
    pub credentials: Arc<Credentials>,
    /// Every authenticated tunnel and caller connection, closed when a
    /// reloaded policy revokes its peer.
    pub sessions: Arc<proxy::revocation::LiveSessions>,
    /// Tunnel connections and handshakes in progress, bounded.
    pub bounds: bounds::Bounds,
    /// Fair shares of calls per tunnel and per caller (`[limits]`).
    pub quotas: Arc<proxy::quota::Quotas>,
    /// The process's metrics, served at `/metrics`.
    pub metrics: Arc<proxy::metrics::Metrics>,
}

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// TLS configuration could not be assembled.
    #[error(transparent)]
    Tls(#[from] proxy::tls::TlsError),
    /// The stateless-reset secret file is unusable.
    #[error(transparent)]
    ResetKey(#[from] proxy::reset_key::ResetKeyError),
    /// The audit log could not be opened (fail closed: no audit, no edge).
    #[error("audit log: {0}")]
    Audit(#[from] proxy::audit::AuditError),
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] proxy::metrics::MetricsError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running edge: its bound addresses and the handle to stop it.
pub struct Bound {
    /// Where tunnel clients dial (UDP).
    pub tunnel_addr: SocketAddr,
    /// The mTLS ingress listener, if configured.
    pub ingress_addr: Option<SocketAddr>,
    /// The plaintext development listener, if configured.
    pub plaintext_addr: Option<SocketAddr>,
    /// The raw TCP ingress listeners, in configuration order.
    pub tcp_addrs: Vec<SocketAddr>,
    /// Live tunnels, for status and tests.
    pub registry: Arc<Registry>,
    /// The admin listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The audit log, for status and tests.
    pub audit: AuditLog,
    /// The live TLS credentials, for status and tests.
    pub credentials: Arc<Credentials>,
    /// The authenticated connections, for status and tests.
    pub sessions: Arc<proxy::revocation::LiveSessions>,
    /// The fair shares and their refusal counts, for status and tests.
    pub quotas: Arc<proxy::quota::Quotas>,
    /// The process's metrics (what `/metrics` serves), for tests.
    pub metrics: Arc<proxy::metrics::Metrics>,
    life: Lifecycle,
}

impl Bound {
    /// Shuts the edge down in phases (see `proxy::lifecycle`): listeners
    /// closed and new calls refused with `draining`, the calls in flight
    /// given up to `grace`, then every tunnel closed with `GOING_AWAY`.
    /// Returns once every task the edge owns has ended.
    pub async fn shutdown(self, grace: Duration) -> Ending {
        self.shutdown_or_force(grace, std::future::pending()).await
    }

    /// [`Bound::shutdown`], cutting the wait for calls short when `force`
    /// resolves (a second signal).
    pub async fn shutdown_or_force(
        self,
        grace: Duration,
        force: impl Future<Output = ()>,
    ) -> Ending {
        let ending = self.life.shutdown(grace, force).await;
        // Every record queued so far (the close records of the calls that
        // just ended or were cut included) is on disk before the process
        // exits: the writer handles requests in order. A disk that hangs
        // gets the grace period again (at least a second), not forever.
        let flush_bound = grace.max(Duration::from_secs(1));
        match tokio::time::timeout(flush_bound, self.audit.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the audit log could not be flushed at shutdown")
            }
            Err(_) => tracing::error!("the audit log did not flush within the grace period"),
        }
        ending
    }

    /// The edge's lifecycle: its phase and how many tasks and calls it
    /// owns, for status and tests.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.life
    }

    /// The addresses actually bound, for `run --ready-file`: with port 0
    /// in the configuration, this is how a supervisor learns the ports.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            tunnels: self.tunnel_addr,
            ingress: self.ingress_addr,
            plaintext: self.plaintext_addr,
            tcp: self.tcp_addrs.clone(),
            admin: self.admin_addr,
        }
    }
}

/// Every address a running edge bound, as `run --ready-file` reports it
/// (one JSON object; absent listeners are `null`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Addresses {
    /// The QUIC tunnel listener (UDP).
    pub tunnels: SocketAddr,
    /// The mTLS ingress listener.
    pub ingress: Option<SocketAddr>,
    /// The plaintext development listener.
    pub plaintext: Option<SocketAddr>,
    /// The raw TCP ingress listeners, in configuration order.
    pub tcp: Vec<SocketAddr>,
    /// The admin listener.
    pub admin: Option<SocketAddr>,
}

fn bind_err(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Bind { addr, source }
}

/// Binds every listener of `config` and starts serving. Nothing is bound if
/// any part of the configuration is unusable.
pub async fn build(config: Config) -> Result<Bound, BuildError> {
    let td = config.identity.id.trust_domain().to_string();
    let credentials = Credentials::new(
        config.identity.clone(),
        config.trust.clone(),
        config.tls_files.clone(),
    )?;
    let quic_tls = server_config_live(
        &credentials,
        IdentityRule {
            trust_domain: td.clone(),
            kind: Some("tunnel"),
        },
        &[ALPN],
    )?;
    let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(quic_tls)
        .map_err(|e| proxy::tls::TlsError::Config(e.to_string()))?;
    let mut quic_cfg = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
    quic_cfg.transport_config(
        config
            .limits
            .transport_config_for(config.max_egress_streams),
    );
    let tcp_tls = if config.tcp_ingress.is_empty() {
        None
    } else {
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            server_config_live(
                &credentials,
                IdentityRule {
                    trust_domain: td.clone(),
                    kind: None,
                },
                &[],
            )?,
        )))
    };
    let ingress_tls = match config.ingress_listen {
        Some(_) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            server_config_live(
                &credentials,
                IdentityRule {
                    trust_domain: td,
                    kind: None,
                },
                &[b"h2", b"http/1.1"],
            )?,
        ))),
        None => None,
    };

    // The stateless-reset key outlives this process, so a client still
    // talking to its predecessor is reset at its first packet.
    let reset_key = match &config.stateless_reset_key_file {
        Some(path) => proxy::reset_key::from_file(path)?,
        None => proxy::reset_key::derive(config.identity.key.secret_der()),
    };
    let endpoint = proxy::udp::endpoint_with(
        config.tunnel_listen,
        config.limits.udp_buffer_bytes as usize,
        Some(quic_cfg),
        proxy::reset_key::endpoint_config(reset_key, config.stateless_reset_interval),
    )
    .map_err(bind_err(config.tunnel_listen))?;
    let tunnel_addr = endpoint
        .local_addr()
        .map_err(bind_err(config.tunnel_listen))?;
    let ingress = match config.ingress_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_err(addr))?),
        None => None,
    };
    let plaintext = match &config.plaintext {
        Some((addr, id)) => Some((
            TcpListener::bind(addr).await.map_err(bind_err(*addr))?,
            id.clone(),
        )),
        None => None,
    };
    let mut tcp_listeners = Vec::new();
    for route in &config.tcp_ingress {
        let l = TcpListener::bind(route.listen)
            .await
            .map_err(bind_err(route.listen))?;
        tcp_listeners.push((l, route.clone()));
    }
    let tcp_addrs = tcp_listeners
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let ingress_addr = ingress.as_ref().and_then(|l| l.local_addr().ok());
    let plaintext_addr = plaintext.as_ref().and_then(|(l, _)| l.local_addr().ok());

    let admin = match config.admin_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_err(addr))?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(dir) = config.audit.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| proxy::audit::AuditError::Open {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    let audit = AuditLog::open(config.audit.clone())?;
    let metrics = proxy::metrics::Metrics::new("edge")?;
    audit.attach_metrics(metrics.clone());
    let life = Lifecycle::new();
    let egress_upstreams = proxy::upstream::build(&config.upstreams, &config.limits, &life)?;
    let registry = Arc::new(Registry::new(
        config.known_tunnels.clone(),
        proxy::liveness::silence_bound(config.limits.keepalive),
        config.warmup,
    ));
    let sessions = proxy::revocation::LiveSessions::new(
        vec![config.policy.clone(), config.egress_policy.clone()],
        audit.clone(),
    );
    info!(edge = %config.edge_id, identity = %config.identity.id, %tunnel_addr, ?ingress_addr, ?plaintext_addr, "edge listening");
    let bounds = bounds::Bounds::new(config.max_connections, config.max_handshakes);
    let config_quota = config.limits.quota;
    let shared = Arc::new(Shared {
        config,
        registry: registry.clone(),
        audit: audit.clone(),
        next_stream: AtomicU64::new(0),
        egress_upstreams,
        life: life.clone(),
        credentials: credentials.clone(),
        sessions: sessions.clone(),
        bounds,
        quotas: proxy::quota::Quotas::new(config_quota),
        metrics: metrics.clone(),
    });
    metrics.on_scrape(edge_metrics::refresh(Arc::downgrade(&shared)));
    for policy in [&shared.config.policy, &shared.config.egress_policy] {
        life.spawn(proxy::revocation::enforce(
            sessions.clone(),
            policy.clone(),
            life.close_token(),
        ));
    }
    if credentials.files().is_some() {
        life.spawn(proxy::credentials::watch(
            credentials.clone(),
            proxy::credentials::POLL_INTERVAL,
            life.close_token(),
        ));
    }
    for policy in [&shared.config.policy, &shared.config.egress_policy] {
        if policy.source().is_some() {
            life.spawn(proxy::policy::reload::watch(
                policy.clone(),
                proxy::policy::reload::POLL_INTERVAL,
                life.close_token(),
            ));
        }
    }
    life.spawn(tunnels::accept_loop(endpoint, shared.clone()));
    if let (Some(listener), Some(acceptor)) = (ingress, ingress_tls) {
        life.spawn(ingress::serve_tls(listener, acceptor, shared.clone()));
    }
    if let Some(acceptor) = tcp_tls {
        for (listener, route) in tcp_listeners {
            life.spawn(tcp_ingress::serve(
                listener,
                acceptor.clone(),
                route,
                shared.clone(),
            ));
        }
    }
    if let Some(listener) = admin {
        let (log, state) = (audit.clone(), life.clone());
        let readiness: proxy::admin::Readiness = Arc::new(move || {
            let audit = if log.healthy() {
                Ok(())
            } else {
                Err(log
                    .last_error()
                    .unwrap_or_else(|| "audit log unhealthy".into()))
            };
            vec![proxy::admin::lifecycle_check(&state), ("audit", audit)]
        });
        life.spawn(proxy::admin::serve(
            listener,
            readiness,
            {
                let weak = Arc::downgrade(&shared);
                let mut pages = proxy::admin::Page::status(
                    Arc::new(move || status::snapshot(&weak)),
                    status::view,
                );
                pages.push(proxy::admin::Page::metrics(metrics.clone()));
                pages
            },
            life.clone(),
        ));
    }
    if let Some((listener, caller)) = plaintext {
        life.spawn(ingress::serve_plaintext(listener, caller, shared.clone()));
    }
    Ok(Bound {
        tunnel_addr,
        ingress_addr,
        plaintext_addr,
        tcp_addrs,
        registry,
        admin_addr,
        audit,
        credentials,
        sessions,
        quotas: shared.quotas.clone(),
        metrics,
        life,
    })
}
