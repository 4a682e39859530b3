//! The one place a stream's audit fields are built. Every field a caller
//! controls is bounded the same way, with a visible marker when cut, so a
//! record never grows with the request and a cut value never passes for a
//! whole one.

use crate::audit::{AuditEvent, Direction};

/// Longest path kept in an audit record, in bytes.
pub const MAX_AUDIT_PATH: usize = 2048;

/// Longest identity, name, method or id kept in an audit record, in bytes.
/// SPIFFE IDs, DNS labels and request ids are far shorter; anything longer
/// is hostile or broken and is cut.
pub const MAX_AUDIT_FIELD: usize = 256;

/// What marks a cut field: the value was longer than kept.
pub const CUT_MARKER: &str = "…";

/// What a flow knows of a stream when it starts, as received.
#[derive(Debug, Clone, Copy)]
pub struct StreamFields<'a> {
    /// Which way the traffic goes.
    pub direction: Direction,
    /// The process-local stream number (pairs open and close records).
    pub stream_id: u64,
    /// The request id shared by both ends' logs.
    pub request_id: &'a str,
    /// The W3C trace id, if the request carried one.
    pub trace_id: Option<&'a str>,
    /// The caller's identity (SPIFFE ID).
    pub caller: &'a str,
    /// The tunnel, as far as known yet (SPIFFE ID, or empty).
    pub tunnel: &'a str,
    /// The service or upstream, as far as known yet.
    pub service: &'a str,
    /// HTTP method (`CONNECT` for raw TCP).
    pub method: &'a str,
    /// The request target as received (path and query), before validation.
    pub path: &'a str,
    /// The egress workload label, if any.
    pub workload: Option<&'a str>,
}

impl StreamFields<'_> {
    /// The span every log line of the stream is written in, at `info` so
    /// the lines a stream logs carry its stream id, request id, trace id,
    /// tunnel and service. Tunnel and service not known yet are filled in
    /// when the flow routes ([`super::Pending::set_tunnel`],
    /// [`super::Pending::set_service`]).
    pub fn span(&self) -> tracing::Span {
        let known = |v: &str| (!v.is_empty()).then(|| bounded(v, MAX_AUDIT_FIELD));
        tracing::info_span!(
            "stream",
            direction = self.direction.as_str(),
            stream_id = self.stream_id,
            request_id = %bounded(self.request_id, MAX_AUDIT_FIELD),
            trace_id = self.trace_id.map(|t| bounded(t, MAX_AUDIT_FIELD)),
            tunnel = known(self.tunnel),
            service = known(self.service),
        )
    }
}

/// `value` cut to at most `max` bytes on a character boundary, with
/// [`CUT_MARKER`] appended when anything was cut.
pub fn bounded(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let cut = (0..=max)
        .rev()
        .find(|&i| value.is_char_boundary(i))
        .unwrap_or(0);
    let mut out = String::with_capacity(cut + CUT_MARKER.len());
    out.push_str(&value[..cut]);
    out.push_str(CUT_MARKER);
    out
}

/// Sets a name-like field (service, tunnel) learnt after the start.
pub(crate) fn bounded_name(value: &str) -> String {
    bounded(value, MAX_AUDIT_FIELD)
}

impl StreamFields<'_> {
    /// The audit event both records of the stream start from.
    pub(crate) fn event(&self) -> AuditEvent {
        AuditEvent {
            direction: self.direction,
            stream_id: self.stream_id,
            request_id: bounded(self.request_id, MAX_AUDIT_FIELD),
            trace_id: self.trace_id.map(|t| bounded(t, MAX_AUDIT_FIELD)),
            caller: bounded(self.caller, MAX_AUDIT_FIELD),
            tunnel: bounded(self.tunnel, MAX_AUDIT_FIELD),
            service: bounded(self.service, MAX_AUDIT_FIELD),
            method: bounded(self.method, MAX_AUDIT_FIELD),
            path: bounded(self.path, MAX_AUDIT_PATH),
            labels: self
                .workload
                .map(|w| [("workload".to_string(), bounded(w, MAX_AUDIT_FIELD))].into()),
            ..AuditEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_whole() {
        assert_eq!(bounded("/hello", 10), "/hello");
        assert_eq!(bounded("", 0), "");
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        assert_eq!(bounded("abcdef", 3), "abc…");
        // Never inside a character: 'é' is two bytes.
        assert_eq!(bounded("aé", 2), "a…");
    }

    #[test]
    fn every_caller_controlled_field_is_bounded() {
        let long = "x".repeat(10_000);
        let f = StreamFields {
            direction: Direction::Egress,
            stream_id: 1,
            request_id: &long,
            trace_id: Some(&long),
            caller: &long,
            tunnel: &long,
            service: &long,
            method: &long,
            path: &long,
            workload: Some(&long),
        };
        let e = f.event();
        for v in [
            &e.request_id,
            e.trace_id.as_ref().unwrap_or(&String::new()),
            &e.caller,
            &e.tunnel,
            &e.service,
            &e.method,
        ] {
            assert_eq!(v.len(), MAX_AUDIT_FIELD + CUT_MARKER.len());
            assert!(v.ends_with(CUT_MARKER));
        }
        assert_eq!(e.path.len(), MAX_AUDIT_PATH + CUT_MARKER.len());
        let labels = e.labels.unwrap_or_default();
        assert!(labels["workload"].ends_with(CUT_MARKER));
    }
}
