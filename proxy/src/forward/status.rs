//! Every way Tether can refuse or fail a call, with the HTTP status and gRPC
//! code each maps to. One table, so the edge, the client and the docs agree.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::headers::ERROR_HEADER;
use super::HttpBody;
use crate::wire::{Refuse, RefuseCode};

/// gRPC status codes Tether produces itself.
pub mod grpc {
    /// The call was cancelled.
    pub const CANCELLED: u32 = 1;
    /// The request is malformed.
    pub const INVALID_ARGUMENT: u32 = 3;
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// No such tunnel.
    pub const NOT_FOUND: u32 = 5;
    /// Policy refused the call.
    pub const PERMISSION_DENIED: u32 = 7;
    /// Too much load.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// No such service behind the tunnel.
    pub const UNIMPLEMENTED: u32 = 12;
    /// Tether failed.
    pub const INTERNAL: u32 = 13;
    /// Retry may help: tunnel or service not reachable now.
    pub const UNAVAILABLE: u32 = 14;
}

/// Why a call did not reach (or did not complete at) its service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The host does not name a tunnel service under the ingress domain.
    #[error("no route for host '{host}': use <service>.<tunnel>.{domain}")]
    NoRoute {
        /// Host the caller used.
        host: String,
        /// The ingress domain.
        domain: String,
    },
    /// No tunnel of that name has ever registered.
    #[error("unknown tunnel '{tunnel}'")]
    UnknownTunnel {
        /// Tunnel name from the host.
        tunnel: String,
    },
    /// The tunnel is known but has no live connection to this edge.
    #[error("tunnel '{tunnel}' has no live connection between its client and the edge")]
    TunnelOffline {
        /// Tunnel name.
        tunnel: String,
    },
    /// The tunnel does not offer the service.
    #[error("tunnel '{tunnel}' offers no service '{service}'")]
    UnknownService {
        /// Tunnel name.
        tunnel: String,
        /// Service name.
        service: String,
    },
    /// An egress call named an upstream the edge does not have.
    #[error("unknown upstream '{name}': the edge has no upstream of that name")]
    UnknownUpstream {
        /// The name the workload used.
        name: String,
    },
    /// The service behind the tunnel could not be reached.
    #[error("service unreachable: {reason}")]
    UpstreamUnavailable {
        /// What failed, as the far end reported it.
        reason: String,
    },
    /// The service did not answer in time.
    #[error("service timed out: {reason}")]
    UpstreamTimeout {
        /// What timed out.
        reason: String,
    },
    /// Authorisation refused the call.
    #[error("denied: {reason}")]
    Denied {
        /// Rule id or reason, never internal detail.
        reason: String,
    },
    /// The request cannot be forwarded as it is.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// Too much load right now.
    #[error("overloaded: {reason}")]
    Overloaded {
        /// Which limit was hit.
        reason: String,
    },
    /// A fair-share bound ([`crate::quota`]) refused the call before it
    /// started: retry after `retry_after`.
    #[error("over a limit: {reason}")]
    OverLimit {
        /// Which bound, and what to do.
        reason: String,
        /// When trying again may succeed (sent as `retry-after` and
        /// `grpc-retry-pushback-ms`).
        retry_after: std::time::Duration,
    },
    /// The tunnel broke while the call was being set up.
    #[error("tunnel failure: {reason}")]
    TunnelFailure {
        /// What broke.
        reason: String,
    },
    /// Tether cannot serve calls now (the audit log cannot be written):
    /// fail closed, retry later.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What is failing.
        reason: String,
    },
    /// The request head is larger than `max_http_header_bytes`.
    #[error("request headers of {size} bytes exceed the limit of {limit} bytes; send fewer or smaller headers")]
    HeadersTooLarge {
        /// The head's size, counted as an HTTP/2 header list.
        size: usize,
        /// The configured limit.
        limit: u32,
    },
    /// The process is shutting down: it takes no new calls. Retryable: the
    /// call has not started, and another edge (or this one, restarted)
    /// will take it.
    #[error("{reason}")]
    Draining {
        /// Which end is shutting down and what to do.
        reason: String,
    },
    /// The service was reached but reset the stream (or closed its
    /// connection) before answering.
    #[error("{reason}")]
    UpstreamReset {
        /// What the service did.
        reason: String,
    },
    /// Tether itself failed.
    #[error("internal error: {reason}")]
    Internal {
        /// For logs.
        reason: String,
    },
}

impl CallError {
    /// Stable short name, sent in the `tether-error` header and used as a
    /// bounded metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no-route",
            Self::UnknownTunnel { .. } => "unknown-tunnel",
            Self::TunnelOffline { .. } => "tunnel-offline",
            Self::UnknownService { .. } => "unknown-service",
            Self::UnknownUpstream { .. } => "unknown-upstream",
            Self::UpstreamUnavailable { .. } => "upstream-unavailable",
            Self::UpstreamTimeout { .. } => "upstream-timeout",
            Self::Denied { .. } => "denied",
            Self::BadRequest { .. } => "bad-request",
            Self::Overloaded { .. } => "overloaded",
            Self::OverLimit { .. } => "over-limit",
            Self::TunnelFailure { .. } => "tunnel-failure",
            Self::Unavailable { .. } => "unavailable",
            Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::UpstreamReset { .. } => "upstream-reset",
            Self::Draining { .. } => "draining",
            Self::Internal { .. } => "internal",
        }
    }

    /// The HTTP status for plain HTTP callers.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. }
            | Self::UnknownTunnel { .. }
            | Self::UnknownService { .. }
            | Self::UnknownUpstream { .. } => StatusCode::NOT_FOUND,
            Self::TunnelOffline { .. }
            | Self::Overloaded { .. }
            | Self::OverLimit { .. }
            | Self::Unavailable { .. }
            | Self::Draining { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnavailable { .. }
            | Self::TunnelFailure { .. }
            | Self::UpstreamReset { .. } => StatusCode::BAD_GATEWAY,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code for gRPC callers.
    pub fn grpc_code(&self) -> u32 {
        match self {
            Self::NoRoute { .. } | Self::UnknownTunnel { .. } | Self::UnknownUpstream { .. } => {
                grpc::NOT_FOUND
            }
            Self::UnknownService { .. } => grpc::UNIMPLEMENTED,
            Self::TunnelOffline { .. }
            | Self::UpstreamUnavailable { .. }
            | Self::TunnelFailure { .. }
            | Self::UpstreamReset { .. }
            | Self::Unavailable { .. }
            | Self::Draining { .. } => grpc::UNAVAILABLE,
            Self::UpstreamTimeout { .. } => grpc::DEADLINE_EXCEEDED,
            Self::Denied { .. } => grpc::PERMISSION_DENIED,
            Self::BadRequest { .. } => grpc::INVALID_ARGUMENT,
            Self::Overloaded { .. } | Self::OverLimit { .. } | Self::HeadersTooLarge { .. } => {
                grpc::RESOURCE_EXHAUSTED
            }
            Self::Internal { .. } => grpc::INTERNAL,
        }
    }

    /// The refusal the accepting end sends for this error.
    pub fn to_refuse(&self) -> Refuse {
        let code = match self {
            Self::Denied { .. } => RefuseCode::Denied,
            Self::UnknownService { .. } | Self::UnknownUpstream { .. } => {
                RefuseCode::UnknownService
            }
            Self::Overloaded { .. } | Self::OverLimit { .. } => RefuseCode::Overloaded,
            Self::UpstreamUnavailable { .. } | Self::UpstreamReset { .. } => {
                RefuseCode::UpstreamUnavailable
            }
            Self::HeadersTooLarge { .. } => RefuseCode::BadRequest,
            Self::UpstreamTimeout { .. } => RefuseCode::UpstreamTimeout,
            Self::BadRequest { .. } => RefuseCode::BadRequest,
            Self::Unavailable { .. } => RefuseCode::Unavailable,
            Self::Draining { .. } => RefuseCode::Draining,
            _ => RefuseCode::Internal,
        };
        let message = match self {
            Self::UpstreamUnavailable { reason }
            | Self::UpstreamTimeout { reason }
            | Self::Denied { reason }
            | Self::BadRequest { reason }
            | Self::Overloaded { reason }
            | Self::OverLimit { reason, .. }
            | Self::TunnelFailure { reason }
            | Self::UpstreamReset { reason }
            | Self::Unavailable { reason }
            | Self::Draining { reason }
            | Self::Internal { reason } => reason.clone(),
            other => other.to_string(),
        };
        Refuse { code, message }
    }

    /// The error a REFUSE from the far end stands for. `tunnel` and
    /// `service` name the target for messages.
    pub fn from_refuse(refuse: Refuse, tunnel: &str, service: &str) -> Self {
        let reason = refuse.message;
        match refuse.code {
            RefuseCode::Denied => Self::Denied { reason },
            RefuseCode::UnknownService => Self::UnknownService {
                tunnel: tunnel.to_string(),
                service: service.to_string(),
            },
            RefuseCode::Overloaded => Self::Overloaded { reason },
            RefuseCode::UpstreamUnavailable => Self::UpstreamUnavailable { reason },
            RefuseCode::UpstreamTimeout => Self::UpstreamTimeout { reason },
            RefuseCode::BadRequest => Self::BadRequest { reason },
            RefuseCode::Unavailable => Self::Unavailable { reason },
            RefuseCode::Draining => Self::Draining { reason },
            RefuseCode::Internal | RefuseCode::Unsupported => Self::Internal { reason },
        }
    }

    /// When a retry may succeed, for refusals that know.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::OverLimit { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The response a caller gets: a trailers-only gRPC status for gRPC
    /// callers, a status with a one-line text body for everyone else. Both
    /// name the Tether error in the `tether-error` header. A refusal that
    /// knows when to retry says so in `retry-after` (whole seconds, at
    /// least 1, as HTTP has it) and, for gRPC, `grpc-retry-pushback-ms`
    /// (which gRPC's retry policy honours).
    pub fn to_response(&self, grpc: bool) -> Response<HttpBody> {
        let message = self.to_string();
        let mut builder = Response::builder().header(ERROR_HEADER, self.code());
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            builder = builder.header(http::header::RETRY_AFTER, secs.max(1));
            if grpc {
                let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                builder = builder.header("grpc-retry-pushback-ms", ms.max(1));
            }
        }
        let body = if grpc {
            builder = builder
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header("grpc-status", self.grpc_code())
                .header("grpc-message", grpc_percent_encode(&message));
            Bytes::new()
        } else {
            builder = builder
                .status(self.http_status())
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
            Bytes::from(format!("{message}\n"))
        };
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        match builder.body(body) {
            Ok(resp) => resp,
            // Only reachable if a header above were invalid; they are static.
            Err(_) => {
                let mut resp = Response::new(
                    Full::new(Bytes::new())
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }
        }
    }
}

/// Percent-encodes a gRPC status message as the gRPC HTTP/2 spec requires:
/// bytes outside printable ASCII, and `%`, become `%XX`.
pub fn grpc_percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_refusals_have_distinct_codes() {
        let errs = [
            CallError::UnknownTunnel { tunnel: "a".into() },
            CallError::TunnelOffline { tunnel: "a".into() },
            CallError::UnknownService {
                tunnel: "a".into(),
                service: "b".into(),
            },
            CallError::UpstreamUnavailable { reason: "x".into() },
        ];
        let pairs: std::collections::HashSet<_> = errs
            .iter()
            .map(|e| (e.http_status(), e.grpc_code()))
            .collect();
        assert_eq!(pairs.len(), errs.len());
    }

    #[test]
    fn over_limit_refusals_say_when_to_retry() {
        let e = CallError::OverLimit {
            reason: "r".into(),
            retry_after: std::time::Duration::from_millis(1500),
        };
        let http = e.to_response(false);
        assert_eq!(http.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http.headers()["retry-after"], "2");
        assert!(http.headers().get("grpc-retry-pushback-ms").is_none());
        let grpc = e.to_response(true);
        assert_eq!(grpc.headers()["grpc-status"], "8");
        assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "1500");
        assert_eq!(grpc.headers()["tether-error"], "over-limit");
        let short = CallError::OverLimit {
            reason: "r".into(),
            retry_after: std::time::Duration::from_millis(3),
        };
        assert_eq!(short.to_response(false).headers()["retry-after"], "1");
        let other = CallError::Overloaded { reason: "r".into() };
        assert!(other
            .to_response(false)
            .headers()
            .get("retry-after")
            .is_none());
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_percent_encode("a 100% é"), "a 100%25 %C3%A9");
    }
}
