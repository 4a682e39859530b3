//! The data-plane side of Tether.
//!
//! The client dials out to an edge over QUIC with mutual TLS ([`dial`]),
//! registers the services it offers, and serves every stream the edge opens
//! by forwarding it to the local service ([`serve`]) through pooled HTTP
//! clients (`proxy::upstream`). It never listens for inbound connections from
//! outside. [`build`] starts it and returns a [`Bound`].

pub mod client_metrics;
pub mod config;
pub mod dial;
pub mod egress;
pub mod pool;
pub mod resolver;
pub mod serve;
pub mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use std::future::Future;
use std::time::Duration;

use proxy::audit::AuditLog;
use proxy::credentials::Credentials;
use proxy::identity::IdentityRule;
use proxy::lifecycle::{Ending, Lifecycle};
use proxy::tls::client_config_live;
use proxy::wire::ALPN;
use tokio::sync::watch;

pub use config::Config;
pub use dial::TunnelState;

/// State the dialer and every stream handler share.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Pooled clients per local service.
    pub upstreams: HashMap<String, proxy::upstream::Upstream>,
    /// Where every stream is recorded before it is forwarded.
    pub audit: AuditLog,
    /// Numbers streams for audit records.
    pub next_stream: AtomicU64,
    /// The connections to the edges, for egress calls and status.
    pub pool: Arc<pool::Pool>,
    /// Where the edges are.
    pub resolver: resolver::Resolver,
    /// Owns every task of the client, and its shutdown phase.
    pub life: Lifecycle,
    /// The certificate, key and trust bundle new handshakes use.
    pub credentials: Arc<Credentials>,
    /// Every authenticated edge connection, closed when a reloaded policy
    /// revokes the edge.
    pub sessions: Arc<proxy::revocation::LiveSessions>,
    /// The process's metrics, served at `/metrics`.
    pub metrics: Arc<proxy::metrics::Metrics>,
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// TLS configuration could not be assembled.
    #[error(transparent)]
    Tls(#[from] proxy::tls::TlsError),
    /// The audit log could not be opened (fail closed: no audit, no tunnel).
    #[error("audit log: {0}")]
    Audit(#[from] proxy::audit::AuditError),
    /// A listener (admin or egress) could not be bound.
    #[error("cannot listen on {addr} ({listener} listener): {source}")]
    Listen {
        /// Which listener: `admin` or `egress`.
        listener: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics registry could not be built.
    #[error(transparent)]
    Metrics(#[from] proxy::metrics::MetricsError),
    /// The local UDP socket could not be bound.
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
}

/// Binds one TCP listener, naming it in the error.
fn listen(addr: SocketAddr, listener: &'static str) -> Result<tokio::net::TcpListener, BuildError> {
    let err = |source| BuildError::Listen {
        listener,
        addr,
        source,
    };
    let std = std::net::TcpListener::bind(addr).map_err(err)?;
    std.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(std).map_err(err)
}

/// A running client.
pub struct Bound {
    /// The admin listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The egress listeners, in configuration order.
    pub egress_addrs: Vec<SocketAddr>,
    /// The audit log, for status and tests.
    pub audit: AuditLog,
    /// The live TLS credentials, for status and tests.
    pub credentials: Arc<Credentials>,
    /// The process's metrics (what `/metrics` serves), for tests.
    pub metrics: Arc<proxy::metrics::Metrics>,
    state: watch::Receiver<TunnelState>,
    life: Lifecycle,
    // Not the whole `Shared`: its upstream pools own connection tasks the
    // shutdown waits for, so only the tasks may keep it alive.
    pool: Arc<pool::Pool>,
}

impl Bound {
    /// Current tunnel state.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Waits until the tunnel is registered with an edge.
    pub async fn connected(&mut self) {
        let _ = self
            .state
            .wait_for(|s| matches!(s, TunnelState::Connected { .. }))
            .await;
    }

    /// A watch of the tunnel state.
    pub fn watch(&self) -> watch::Receiver<TunnelState> {
        self.state.clone()
    }

    /// The connections to the edges and what each slot is doing.
    pub fn pool_status(&self) -> pool::PoolStatus {
        self.pool.status()
    }

    /// The client's lifecycle: its phase and how many tasks and calls it
    /// owns, for status and tests.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.life
    }

    /// The addresses actually bound, for `run --ready-file`: with port 0
    /// in the configuration, this is how a supervisor learns the ports.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            egress: self.egress_addrs.clone(),
            admin: self.admin_addr,
        }
    }

    /// Shuts the client down in phases (see `proxy::lifecycle`): egress
    /// listeners closed and new calls (from the edge or from workloads)
    /// refused with `draining`, the calls in flight given up to `grace`,
    /// then the tunnel closed with `GOING_AWAY`. Returns once every task
    /// the client owns has ended.
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
}

/// Every address a running client bound, as `run --ready-file` reports
/// it (one JSON object, written once the tunnel is connected).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Addresses {
    /// The egress proxy listeners, in configuration order.
    pub egress: Vec<SocketAddr>,
    /// The admin listener, if configured (`null` otherwise).
    pub admin: Option<SocketAddr>,
}

/// Starts the client: builds TLS and upstream pools, then dials.
pub fn build(config: Config) -> Result<Bound, BuildError> {
    let td = config.identity.id.trust_domain().to_string();
    let credentials = Credentials::new(
        config.identity.clone(),
        config.trust.clone(),
        config.tls_files.clone(),
    )?;
    let tls = client_config_live(
        &credentials,
        IdentityRule {
            trust_domain: td,
            kind: Some("edge"),
        },
        &[ALPN],
    )?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| proxy::tls::TlsError::Config(e.to_string()))?;
    let mut client_cfg = quinn::ClientConfig::new(Arc::new(crypto));
    client_cfg.transport_config(config.limits.transport_config());
    // One UDP socket per slot: behind a load balancer that hashes flows by
    // source port, each slot can land on a different edge.
    let v6 = config
        .edges
        .first()
        .is_some_and(|e| e.address.starts_with('['));
    let bind = if v6 {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    let slots = config.max_edges * config.connections_per_edge;
    let mut endpoints = Vec::with_capacity(slots);
    for _ in 0..slots {
        endpoints.push(
            proxy::udp::endpoint(bind, config.limits.udp_buffer_bytes as usize, None)
                .map_err(BuildError::Bind)?,
        );
    }
    let life = Lifecycle::new();
    let upstreams = proxy::upstream::build(&config.services, &config.limits, &life)?;
    let admin = match config.admin_listen {
        Some(addr) => Some(listen(addr, "admin")?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let mut egress = Vec::new();
    for l in &config.egress_listeners {
        egress.push((listen(l.listen, "egress")?, l.workload.clone()));
    }
    let egress_addrs = egress
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    if let Some(dir) = config.audit.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| proxy::audit::AuditError::Open {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    let audit = AuditLog::open(config.audit.clone())?;
    let metrics = proxy::metrics::Metrics::new("client")?;
    audit.attach_metrics(metrics.clone());
    let (tx, rx) = watch::channel(TunnelState::Connecting);
    let pool = Arc::new(pool::Pool::new(
        config.tunnel_name().to_string(),
        config.max_edges,
        config.connections_per_edge,
        proxy::liveness::silence_bound(config.limits.keepalive),
        tx,
    ));
    let sessions = proxy::revocation::LiveSessions::new(
        vec![config.policy.clone(), config.egress_policy.clone()],
        audit.clone(),
    );
    let resolver = resolver::Resolver::new(config.edges.clone(), config.resolve_interval);
    let shared = Arc::new(Shared {
        config,
        upstreams,
        audit: audit.clone(),
        next_stream: AtomicU64::new(0),
        pool: pool.clone(),
        resolver,
        life: life.clone(),
        credentials: credentials.clone(),
        sessions: sessions.clone(),
        metrics: metrics.clone(),
    });
    metrics.on_scrape(client_metrics::refresh(Arc::downgrade(&shared)));
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
    if let Some(listener) = admin {
        let (log, state, phase) = (audit.clone(), rx.clone(), life.clone());
        let readiness: proxy::admin::Readiness = Arc::new(move || {
            let tunnel = match &*state.borrow() {
                TunnelState::Connected { .. } => Ok(()),
                other => Err(format!("{other:?}")),
            };
            let audit = if log.healthy() {
                Ok(())
            } else {
                Err(log
                    .last_error()
                    .unwrap_or_else(|| "audit log unhealthy".into()))
            };
            vec![
                proxy::admin::lifecycle_check(&phase),
                ("tunnel", tunnel),
                ("audit", audit),
            ]
        });
        let status_of = pool.clone();
        let status: proxy::admin::Status = Arc::new(move || {
            serde_json::to_string_pretty(&status_of.status())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
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
                pages.push(proxy::admin::Page::json("/connections", status));
                pages.push(proxy::admin::Page::metrics(metrics.clone()));
                pages
            },
            life.clone(),
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
    for (listener, workload) in egress {
        life.spawn(egress::serve(listener, workload, shared.clone()));
    }
    life.spawn(dial::run(endpoints, client_cfg, shared.clone()));
    Ok(Bound {
        admin_addr,
        egress_addrs,
        audit,
        credentials,
        metrics,
        state: rx,
        life,
        pool,
    })
}
