//! Shared configuration plumbing: TOML loading with line-precise errors,
//! collecting every problem at once, and the `[limits]` table both binaries
//! accept.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::limits::Limits;
use crate::wire::WireLimits;

/// Every problem found in a config file, each naming its key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// Records a problem with `key`.
    pub fn push(&mut self, key: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// `Ok(value)` if nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a TOML file; syntax and unknown-key errors carry line
/// and column from the parser.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    toml::from_str(&text).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))
}

/// The `[limits]` table; every key optional, defaults from [`Limits`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// See [`Limits::max_streams`].
    pub max_streams: Option<u32>,
    /// See [`Limits::stream_window`].
    pub stream_window: Option<u32>,
    /// See [`Limits::connection_window`].
    pub connection_window: Option<u32>,
    /// See [`WireLimits::max_header_bytes`].
    pub max_header_bytes: Option<usize>,
    /// See [`WireLimits::max_data_frame`].
    pub max_data_frame: Option<usize>,
    /// See [`WireLimits::max_headers`].
    pub max_headers: Option<usize>,
    /// See [`Limits::handshake_timeout`].
    pub handshake_timeout_ms: Option<u64>,
    /// See [`Limits::response_timeout`].
    pub response_timeout_ms: Option<u64>,
    /// See [`Limits::connect_timeout`].
    pub connect_timeout_ms: Option<u64>,
    /// See [`Limits::idle_timeout`].
    pub idle_timeout_ms: Option<u64>,
    /// See [`Limits::keepalive`].
    pub keepalive_ms: Option<u64>,
    /// See [`Limits::max_http_header_bytes`].
    pub max_http_header_bytes: Option<u32>,
    /// See [`Limits::udp_buffer_bytes`].
    pub udp_buffer_bytes: Option<u32>,
    /// See [`Limits::shutdown_grace`].
    pub shutdown_grace_ms: Option<u64>,
    /// See [`Limits::retry_buffer_bytes`].
    pub retry_buffer_bytes: Option<u32>,
    /// See [`crate::quota::QuotaLimits::max_tunnel_streams`].
    pub max_tunnel_streams: Option<u32>,
    /// See [`crate::quota::QuotaLimits::max_caller_calls`].
    pub max_caller_calls: Option<u32>,
    /// See [`crate::quota::QuotaLimits::caller_rate`].
    pub caller_rate: Option<u32>,
    /// See [`crate::quota::QuotaLimits::caller_burst`].
    pub caller_burst: Option<u32>,
    /// See [`crate::quota::QuotaLimits::max_callers`].
    pub max_callers: Option<usize>,
}

impl RawLimits {
    /// Validated limits; problems are recorded under `limits.<key>`.
    pub fn into_limits(self, errors: &mut ConfigErrors) -> Limits {
        let d = Limits::default();
        let ms = |v: Option<u64>, dflt: Duration| v.map(Duration::from_millis).unwrap_or(dflt);
        let limits = Limits {
            wire: WireLimits {
                max_header_bytes: self.max_header_bytes.unwrap_or(d.wire.max_header_bytes),
                max_data_frame: self.max_data_frame.unwrap_or(d.wire.max_data_frame),
                max_headers: self.max_headers.unwrap_or(d.wire.max_headers),
            },
            max_streams: self.max_streams.unwrap_or(d.max_streams),
            stream_window: self.stream_window.unwrap_or(d.stream_window),
            connection_window: self.connection_window.unwrap_or(d.connection_window),
            handshake_timeout: ms(self.handshake_timeout_ms, d.handshake_timeout),
            response_timeout: ms(self.response_timeout_ms, d.response_timeout),
            connect_timeout: ms(self.connect_timeout_ms, d.connect_timeout),
            idle_timeout: ms(self.idle_timeout_ms, d.idle_timeout),
            keepalive: ms(self.keepalive_ms, d.keepalive),
            max_http_header_bytes: self
                .max_http_header_bytes
                .unwrap_or(d.max_http_header_bytes),
            udp_buffer_bytes: self.udp_buffer_bytes.unwrap_or(d.udp_buffer_bytes),
            shutdown_grace: ms(self.shutdown_grace_ms, d.shutdown_grace),
            retry_buffer_bytes: self.retry_buffer_bytes.unwrap_or(d.retry_buffer_bytes),
            quota: crate::quota::QuotaLimits {
                max_tunnel_streams: self
                    .max_tunnel_streams
                    .unwrap_or(d.quota.max_tunnel_streams),
                max_caller_calls: self.max_caller_calls.unwrap_or(d.quota.max_caller_calls),
                caller_rate: self.caller_rate.unwrap_or(d.quota.caller_rate),
                caller_burst: self.caller_burst.unwrap_or(d.quota.caller_burst),
                max_callers: self.max_callers.unwrap_or(d.quota.max_callers),
            },
        };
        if let Err(e) = limits.validate() {
            errors.push("limits", e);
        }
        limits
    }
}

/// Parses a socket address, recording a problem under `key`.
pub fn socket_addr(
    key: &str,
    value: &str,
    errors: &mut ConfigErrors,
) -> Option<std::net::SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(
                key,
                format!("'{value}' is not an address like 127.0.0.1:8080"),
            );
            None
        }
    }
}

/// The `[audit]` table both binaries require.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The live log file; its directory is created if missing.
    pub path: Option<std::path::PathBuf>,
    /// `always` (default), `interval` or `none`.
    pub durability: Option<String>,
    /// fsync period for `interval`, in ms (default 100); under `always`,
    /// the longest a close record waits for an fsync.
    pub interval_ms: Option<u64>,
    /// Rotate the live file past this size (default 64 MiB).
    pub max_file_bytes: Option<u64>,
}

impl RawAudit {
    /// Validated audit settings; problems are recorded under `audit.<key>`.
    pub fn into_config(
        self,
        base: &Path,
        side: crate::audit::Side,
        errors: &mut ConfigErrors,
    ) -> Option<crate::audit::AuditConfig> {
        use crate::audit::{AuditConfig, Durability};
        let Some(path) = self.path else {
            errors.push(
                "audit.path",
                "required: every stream is recorded in an audit log before a byte is forwarded; add [audit] path = \"audit/tether.log\"",
            );
            return None;
        };
        let mut cfg = AuditConfig::new(base.join(path), side);
        let interval = Duration::from_millis(self.interval_ms.unwrap_or(100).max(1));
        cfg.close_sync = interval;
        cfg.durability = match self.durability.as_deref() {
            None | Some("always") => Durability::Always,
            Some("interval") => Durability::Interval(interval),
            Some("none") => Durability::None,
            Some(other) => {
                errors.push(
                    "audit.durability",
                    format!("'{other}' is not one of always, interval, none"),
                );
                Durability::Always
            }
        };
        if let Some(max) = self.max_file_bytes {
            if max < 4096 {
                errors.push("audit.max_file_bytes", "must be at least 4096");
            }
            cfg.max_file_bytes = max;
        }
        Some(cfg)
    }
}

/// The `[admin]` table: where `/healthz` and `/readyz` are served.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// TCP address; omit to serve no admin endpoints.
    pub listen: Option<String>,
}

/// Loads the policy file a config names (if any) into a live handle. No
/// file means deny everything: default deny, never fail open. Problems are
/// recorded under `key`.
pub fn policy_handle(
    file: Option<&Path>,
    base: &Path,
    scope: crate::policy::Scope,
    key: &str,
    errors: &mut ConfigErrors,
) -> std::sync::Arc<crate::policy::PolicyHandle> {
    use crate::policy::{load_policy, Policy, PolicyHandle};
    let Some(file) = file else {
        return PolicyHandle::new(Policy::deny_all(scope), None);
    };
    let path = base.join(file);
    match load_policy(&path, scope) {
        Ok(p) => PolicyHandle::new(p, Some(path)),
        Err(e) => {
            for msg in e.0 {
                errors.push(key, msg);
            }
            PolicyHandle::new(Policy::deny_all(scope), None)
        }
    }
}
