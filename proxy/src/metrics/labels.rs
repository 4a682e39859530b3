//! Label values for stream metrics, derived from a stream's audit events
//! (sans-IO, so the bound on every label's values is tested without a
//! registry). Every value is from a fixed set or from configuration
//! (tunnel and service names the edge has routed, policy rule ids): never
//! a path, a caller identity, a serial or a trace id.

use crate::audit::{AuditDecision, AuditEvent};

/// Every `tether-error` code (`CallError::code`); a refusal reason outside
/// it is counted as `other`.
pub const CAUSES: &[&str] = &[
    "no-route",
    "unknown-tunnel",
    "tunnel-offline",
    "unknown-service",
    "unknown-upstream",
    "upstream-unavailable",
    "upstream-timeout",
    "denied",
    "bad-request",
    "overloaded",
    "over-limit",
    "tunnel-failure",
    "unavailable",
    "headers-too-large",
    "upstream-reset",
    "draining",
    "internal",
];

/// `tcp` for a raw byte stream (the admission path records those with
/// method `CONNECT`), `http` for every HTTP or gRPC call.
pub fn kind(event: &AuditEvent) -> &'static str {
    if event.method == "CONNECT" {
        "tcp"
    } else {
        "http"
    }
}

/// The decision on an open record; `refuse` when none was recorded.
pub fn decision(event: &AuditEvent) -> &'static str {
    event.decision.unwrap_or(AuditDecision::Refuse).as_str()
}

/// Whether the stream reached a route the edge or client knows (a policy
/// decided it), so its tunnel and service names are bounded by
/// configuration and registration. A refused stream's names may be
/// whatever a caller typed, so they are not labels.
pub fn routed(event: &AuditEvent) -> bool {
    !matches!(event.decision, None | Some(AuditDecision::Refuse))
}

/// The tunnel and service labels of a stream: its names when routed,
/// `-` otherwise. Audit records name the tunnel by its identity
/// (`spiffe://<td>/tunnel/<name>`); the label is the name.
pub fn route(event: &AuditEvent, routed: bool) -> (&str, &str) {
    if routed {
        let tunnel = event.tunnel.as_str();
        let name = tunnel.rsplit_once("/tunnel/").map_or(tunnel, |(_, n)| n);
        (name, event.service.as_str())
    } else {
        ("-", "-")
    }
}

/// The refusal cause: the `tether-error` code in `reason`, or `other`.
pub fn cause(event: &AuditEvent) -> &'static str {
    let reason = event.reason.as_deref().unwrap_or("");
    CAUSES
        .iter()
        .find(|c| **c == reason)
        .copied()
        .unwrap_or("other")
}

/// The rule that decided, by id; `default` for the default deny (no rule).
pub fn rule(event: &AuditEvent) -> &str {
    event.rule.as_deref().unwrap_or("default")
}

/// How a stream ended, from its close record: `error` when it did not end
/// cleanly (reset, cut, upstream failure), else by status: a gRPC status
/// other than OK is `grpc_error`; HTTP 5xx `server_error`, 4xx
/// `client_error`, anything else `ok`.
pub fn outcome(event: &AuditEvent) -> &'static str {
    if event.error.is_some() {
        return "error";
    }
    if event.grpc_status.is_some_and(|g| g != 0) {
        return "grpc_error";
    }
    match event.http_status {
        Some(s) if s >= 500 => "server_error",
        Some(s) if s >= 400 => "client_error",
        _ => "ok",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            tunnel: "demo".into(),
            service: "echo".into(),
            method: "POST".into(),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn a_refused_streams_caller_chosen_names_are_not_labels() {
        let mut e = event();
        e.tunnel = "anything-a-caller-typed".into();
        assert!(!routed(&e));
        assert_eq!(route(&e, routed(&e)), ("-", "-"));
        e.decision = Some(AuditDecision::Refuse);
        assert!(!routed(&e));
        e.decision = Some(AuditDecision::Deny);
        assert!(routed(&e));
        assert_eq!(route(&e, true), ("anything-a-caller-typed", "echo"));
        e.tunnel = "spiffe://tether.local/tunnel/demo".into();
        assert_eq!(route(&e, true), ("demo", "echo"));
    }

    #[test]
    fn causes_outside_the_codes_are_other() {
        let mut e = event();
        e.reason = Some("over-limit".into());
        assert_eq!(cause(&e), "over-limit");
        e.reason = Some("/some/path?x=1".into());
        assert_eq!(cause(&e), "other");
        e.reason = None;
        assert_eq!(cause(&e), "other");
    }

    #[test]
    fn outcomes_come_from_error_then_grpc_then_http_status() {
        let mut e = event();
        assert_eq!(outcome(&e), "ok");
        e.http_status = Some(404);
        assert_eq!(outcome(&e), "client_error");
        e.http_status = Some(503);
        assert_eq!(outcome(&e), "server_error");
        e.http_status = Some(200);
        e.grpc_status = Some(0);
        assert_eq!(outcome(&e), "ok");
        e.grpc_status = Some(14);
        assert_eq!(outcome(&e), "grpc_error");
        e.error = Some("reset".into());
        assert_eq!(outcome(&e), "error");
    }

    #[test]
    fn kinds_and_rules() {
        let mut e = event();
        assert_eq!(kind(&e), "http");
        e.method = "CONNECT".into();
        assert_eq!(kind(&e), "tcp");
        assert_eq!(rule(&e), "default");
        e.rule = Some("ops-read".into());
        assert_eq!(rule(&e), "ops-read");
        assert_eq!(decision(&e), "refuse");
    }
}
