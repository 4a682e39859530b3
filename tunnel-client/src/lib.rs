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

use proxy::audit::AuditLog;
use proxy::identity::IdentityRule;
use proxy::tls::client_config;
use proxy::wire::ALPN;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use dial::TunnelState;

/// State the dialer and every stream handler share.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Pooled clients per local service.
    pub upstreams: HashMap<String, proxy::upstream::Upstream>,
    /// Our half of the live control stream (for GOAWAY), if connected.
    pub control_send: Mutex<Option<quinn::SendStream>>,
    /// Where every stream is recorded before it is forwarded.
    pub audit: AuditLog,
    /// Numbers streams for audit records.
    pub next_stream: AtomicU64,
    /// The live connection to the edge, for egress calls.
    pub conn: std::sync::Mutex<Option<quinn::Connection>>,
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
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
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

    /// A token that stops the client when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The addresses actually bound, for `run --ready-file`: with port 0
    /// in the configuration, this is how a supervisor learns the ports.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            egress: self.egress_addrs.clone(),
            admin: self.admin_addr,
        }
    }

    /// Runs until stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Closes the tunnel and waits for the dialer to stop.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
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
    let upstreams = proxy::upstream::build(&config.services, &config.limits)?;
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
    });
    let (tx, rx) = watch::channel(TunnelState::Connecting);
    let cancel = CancellationToken::new();
    if let Some(listener) = admin {
        let (log, state) = (audit.clone(), rx.clone());
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
            vec![("tunnel", tunnel), ("audit", audit)]
        });
        // Ends when the client's cancel token fires.
        tokio::spawn(proxy::admin::serve(listener, readiness, cancel.clone()));
    }
    if shared.config.policy.source().is_some() {
        // Ends when the client's cancel token fires.
        tokio::spawn(proxy::policy::reload::watch(
            shared.config.policy.clone(),
            proxy::policy::reload::POLL_INTERVAL,
            cancel.clone(),
        ));
    }
    for (listener, workload) in egress {
        // Ends when the client's cancel token fires.
        tokio::spawn(egress::serve(
            listener,
            workload,
            shared.clone(),
            cancel.clone(),
        ));
    }
    if shared.config.egress_policy.source().is_some() {
        // Ends when the client's cancel token fires.
        tokio::spawn(proxy::policy::reload::watch(
            shared.config.egress_policy.clone(),
            proxy::policy::reload::POLL_INTERVAL,
            cancel.clone(),
        ));
    }
    let task = tokio::spawn(dial::run(endpoint, client_cfg, shared, tx, cancel.clone()));
    Ok(Bound {
        admin_addr,
        egress_addrs,
        audit,
        state: rx,
        cancel,
        task,
    })
}
