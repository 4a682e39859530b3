//! The data-plane side of Tether.
//!
//! The client dials out to an edge over QUIC with mutual TLS ([`dial`]),
//! registers the services it offers, and serves every stream the edge opens
//! by forwarding it to the local service ([`serve`]) through pooled HTTP
//! clients (`proxy::upstream`). It never listens for inbound connections from
//! outside. [`build`] starts it and returns a [`Bound`].

pub mod config;
pub mod dial;
pub mod egress;
pub mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::AtomicU64;

use std::future::Future;
use std::time::Duration;

use proxy::audit::AuditLog;
use proxy::identity::IdentityRule;
use proxy::lifecycle::{Ending, Lifecycle};
use proxy::tls::client_config;
use proxy::wire::ALPN;
use tokio::sync::{watch, Mutex};

pub use config::Config;
pub use dial::TunnelState;

/// State the dialer and every stream handler share.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Pooled clients per local service.
    pub upstreams: HashMap<String, proxy::upstream::Upstream>,
    /// Our half of the live control stream, if connected: held so it
    /// stays open for the connection's life.
    pub control_send: Mutex<Option<quinn::SendStream>>,
    /// Where every stream is recorded before it is forwarded.
    pub audit: AuditLog,
    /// Numbers streams for audit records.
    pub next_stream: AtomicU64,
    /// The live connection to the edge, for egress calls.
    pub conn: std::sync::Mutex<Option<quinn::Connection>>,
    /// Owns every task of the client, and its shutdown phase.
    pub life: Lifecycle,
}

impl Shared {
    /// The live connection to the edge, if the tunnel is up.
    pub fn connection(&self) -> Option<quinn::Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records the live connection (or its loss).
    pub fn set_connection(&self, conn: Option<quinn::Connection>) {
        *self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
    }

    /// Forgets `conn` if it is still the live connection: a draining
    /// edge's connection that closed before its replacement registered.
    pub fn forget_connection(&self, conn: &quinn::Connection) {
        let mut live = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if live
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            *live = None;
        }
    }
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
    state: watch::Receiver<TunnelState>,
    life: Lifecycle,
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
    let tls = client_config(
        &config.identity,
        config.trust.clone(),
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
    let bind: SocketAddr = if config.edge_address.starts_with('[') {
        "[::]:0"
            .parse()
            .map_err(|_| BuildError::Bind(std::io::Error::other("bad bind")))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| BuildError::Bind(std::io::Error::other("bad bind")))?
    };
    let endpoint = proxy::udp::endpoint(bind, config.limits.udp_buffer_bytes as usize, None)
        .map_err(BuildError::Bind)?;
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
    let shared = Arc::new(Shared {
        config,
        upstreams,
        control_send: Mutex::new(None),
        audit: audit.clone(),
        next_stream: AtomicU64::new(0),
        conn: std::sync::Mutex::new(None),
        life: life.clone(),
    });
    let (tx, rx) = watch::channel(TunnelState::Connecting);
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
        life.spawn(proxy::admin::serve(listener, readiness, life.clone()));
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
    life.spawn(dial::run(endpoint, client_cfg, shared, tx));
    Ok(Bound {
        admin_addr,
        egress_addrs,
        audit,
        state: rx,
        life,
    })
}
