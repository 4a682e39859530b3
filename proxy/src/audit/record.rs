//! The audit record: what one JSON line holds, and the caller-supplied part
//! of it ([`AuditEvent`]) that leaves the chain fields to the writer.
//!
//! Field order in [`AuditRecord`] is the on-disk key order and part of the
//! hash (see [`super::chain`]); changing it breaks verification of existing
//! logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which record of a stream this is. A stream has exactly one `open`,
/// written before its first byte is forwarded, and one `close`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The stream was admitted or denied; durable before any byte moves.
    /// The default only so [`AuditEvent`] can be built with
    /// `..Default::default()`.
    #[default]
    Open,
    /// The stream ended (cleanly or not); carries status, bytes and duration.
    Close,
    /// Not a stream: a connection authenticated by a revoked identity or
    /// certificate was closed or refused (`caller` is the identity,
    /// `reason` names what was revoked, `labels.connection` what kind of
    /// connection it was). `stream_id` is 0.
    Revoke,
}

/// Which end of the tunnel wrote a log; stamped on every record by the
/// writer from [`super::AuditConfig::side`], so one process cannot mix sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The edge (`tunnel-server`).
    Edge,
    /// The tunnel client (`tunnel-client`).
    Client,
}

impl Side {
    /// The value written to the `side` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Edge => "edge",
            Side::Client => "client",
        }
    }
}

/// Which way a stream's traffic goes, on every record: one log can hold
/// both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A control-plane caller to a data-plane service (edge → client).
    /// The default only so [`AuditEvent`] can be built with
    /// `..Default::default()`.
    #[default]
    Ingress,
    /// A data-plane workload to a control-plane upstream (client → edge).
    Egress,
}

impl Direction {
    /// The value written to the `direction` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl PartialEq<&str> for Direction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What the admission path decided, on every `open` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditDecision {
    /// A policy allowed the stream.
    Allow,
    /// A policy denied the stream (`rule` names the rule, or none for the
    /// default deny).
    Deny,
    /// A dry-run policy would have denied it; it was forwarded.
    WouldDeny,
    /// Refused before any policy decided (bad request, unknown tunnel or
    /// service, no route, oversized headers, draining…); `reason` holds the
    /// refusal's `tether-error` code.
    Refuse,
}

impl AuditDecision {
    /// The value written to the `decision` field.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
            AuditDecision::WouldDeny => "would-deny",
            AuditDecision::Refuse => "refuse",
        }
    }
}

impl PartialEq<&str> for AuditDecision {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One line of the audit log, in on-disk key order.
///
/// `None` fields are omitted from the line. `hash` is always last, which is
/// what makes the canonical form "the line minus its trailing
/// `,"hash":"…"`" (see [`super::chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain; consecutive across rotated files.
    pub seq: u64,
    /// `hash` of the previous record; 64 zeros for seq 0.
    pub prev: String,
    /// When the writer sealed the record: RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// `open` or `close`.
    pub event: Event,
    /// `edge` or `client`: which end wrote this log.
    pub side: String,
    /// `ingress` or `egress`, so one log can hold both traffic directions.
    pub direction: Direction,
    /// Process-local stream counter; pairs an `open` with its `close`.
    pub stream_id: u64,
    /// Request id, to correlate with access logs and the caller.
    pub request_id: String,
    /// W3C trace id when the request carried `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The caller's SPIFFE ID.
    pub caller: String,
    /// The tunnel (client) name the stream is routed through.
    pub tunnel: String,
    /// The service addressed behind the tunnel.
    pub service: String,
    /// HTTP method.
    pub method: String,
    /// HTTP request path, as the caller of [`super::AuditLog::append`] gave it.
    pub path: String,
    /// `allow`, `deny`, `would-deny` (dry-run policy) or `refuse`
    /// (refused before a policy decided); on `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<AuditDecision>,
    /// The policy rule that decided, so a denial can be traced to config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why the decision was made, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// HTTP status of the response; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// `grpc-status` of a gRPC call; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Body bytes received from the caller; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Body bytes sent to the caller; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Stream lifetime; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why the stream failed, if it did; on `close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free-form extra context, reserved for later use (ordered, so the
    /// serialisation stays deterministic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `hex(SHA-256(prev ‖ canonical record))`; empty only while sealing.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// What a caller supplies for one record: everything except the chain
/// fields (`seq`, `prev`, `ts`, `hash`), which only the writer may assign,
/// and `side`, which comes from the log's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// See [`AuditRecord::event`].
    pub event: Event,
    /// See [`AuditRecord::direction`].
    pub direction: Direction,
    /// See [`AuditRecord::stream_id`].
    pub stream_id: u64,
    /// See [`AuditRecord::request_id`].
    pub request_id: String,
    /// See [`AuditRecord::trace_id`].
    pub trace_id: Option<String>,
    /// See [`AuditRecord::caller`].
    pub caller: String,
    /// See [`AuditRecord::tunnel`].
    pub tunnel: String,
    /// See [`AuditRecord::service`].
    pub service: String,
    /// See [`AuditRecord::method`].
    pub method: String,
    /// See [`AuditRecord::path`].
    pub path: String,
    /// See [`AuditRecord::decision`].
    pub decision: Option<AuditDecision>,
    /// See [`AuditRecord::rule`].
    pub rule: Option<String>,
    /// See [`AuditRecord::reason`].
    pub reason: Option<String>,
    /// See [`AuditRecord::http_status`].
    pub http_status: Option<u16>,
    /// See [`AuditRecord::grpc_status`].
    pub grpc_status: Option<u32>,
    /// See [`AuditRecord::bytes_in`].
    pub bytes_in: Option<u64>,
    /// See [`AuditRecord::bytes_out`].
    pub bytes_out: Option<u64>,
    /// See [`AuditRecord::duration_ms`].
    pub duration_ms: Option<u64>,
    /// See [`AuditRecord::error`].
    pub error: Option<String>,
    /// See [`AuditRecord::labels`].
    pub labels: Option<BTreeMap<String, String>>,
}

/// The part of a record after the chain fields (`event` … `labels`), as a
/// borrowed view of an [`AuditEvent`]: serialising it gives the exact bytes
/// the same fields take inside an [`AuditRecord`] line, so the appender can
/// encode its record on its own thread and the single writer only adds the
/// chain fields and the hash. Field order and attributes must match
/// [`AuditRecord`]; a test compares the two encodings.
#[derive(Serialize)]
struct EventView<'a> {
    event: Event,
    side: &'static str,
    direction: Direction,
    stream_id: u64,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    caller: &'a str,
    tunnel: &'a str,
    service: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<AuditDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a BTreeMap<String, String>>,
}

/// An event encoded for the writer: the JSON object of every field from
/// `event` to `labels` (`{"event":"open",…}`), whose members the writer
/// places after `seq`, `prev` and `ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EncodedEvent(Vec<u8>);

impl EncodedEvent {
    /// The members without the enclosing braces.
    pub(super) fn members(&self) -> &[u8] {
        match self.0.as_slice() {
            [b'{', inner @ .., b'}'] => inner,
            other => other,
        }
    }
}

impl AuditEvent {
    /// Encodes this event as written by `side`, off the writer thread.
    pub(super) fn encode(&self, side: Side) -> Result<EncodedEvent, serde_json::Error> {
        let view = EventView {
            event: self.event,
            side: side.as_str(),
            direction: self.direction,
            stream_id: self.stream_id,
            request_id: &self.request_id,
            trace_id: self.trace_id.as_deref(),
            caller: &self.caller,
            tunnel: &self.tunnel,
            service: &self.service,
            method: &self.method,
            path: &self.path,
            decision: self.decision,
            rule: self.rule.as_deref(),
            reason: self.reason.as_deref(),
            http_status: self.http_status,
            grpc_status: self.grpc_status,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: self.duration_ms,
            error: self.error.as_deref(),
            labels: self.labels.as_ref(),
        };
        Ok(EncodedEvent(serde_json::to_vec(&view)?))
    }
}

#[cfg(test)]
impl AuditRecord {
    /// Builds an unsealed record (empty `hash`) from an event and a chain
    /// position: the reference the writer's encoding is tested against.
    pub(super) fn unsealed(
        event: AuditEvent,
        side: Side,
        seq: u64,
        prev: String,
        ts: String,
    ) -> Self {
        AuditRecord {
            seq,
            prev,
            ts,
            event: event.event,
            side: side.as_str().to_owned(),
            direction: event.direction,
            stream_id: event.stream_id,
            request_id: event.request_id,
            trace_id: event.trace_id,
            caller: event.caller,
            tunnel: event.tunnel,
            service: event.service,
            method: event.method,
            path: event.path,
            decision: event.decision,
            rule: event.rule,
            reason: event.reason,
            http_status: event.http_status,
            grpc_status: event.grpc_status,
            bytes_in: event.bytes_in,
            bytes_out: event.bytes_out,
            duration_ms: event.duration_ms,
            error: event.error,
            labels: event.labels,
            hash: String::new(),
        }
    }
}
