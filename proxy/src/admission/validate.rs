//! Checks every HTTP flow applies to a request head before it is routed,
//! the same at both listeners (the edge's ingress, the client's egress).

use http::request;

use crate::forward::head::request_authority;
use crate::forward::CallError;
use crate::policy::{canonical_authority, canonical_path};
use crate::Limits;

/// Per-field overhead in the HTTP/2 header list size (RFC 9113 §6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// The size of a request head as HTTP/2 counts a header list: every field's
/// name and value plus 32 bytes, pseudo-headers included. HTTP/1.1 heads
/// are measured the same way, so one limit means one thing.
pub fn header_list_size(parts: &request::Parts) -> usize {
    let pseudo = [
        parts.method.as_str().len() + ":method".len(),
        parts.uri.path_and_query().map_or(1, |p| p.as_str().len()) + ":path".len(),
        parts
            .uri
            .scheme_str()
            .map_or(0, |s| s.len() + ":scheme".len()),
        parts
            .uri
            .authority()
            .map_or(0, |a| a.as_str().len() + ":authority".len()),
    ];
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + FIELD_OVERHEAD)
        .sum();
    fields + pseudo.iter().map(|n| n + FIELD_OVERHEAD).sum::<usize>()
}

/// Refuses a head larger than `max_http_header_bytes` with 431 and its
/// `tether-error`, audited like any refusal. The HTTP parsers below are
/// given a higher ceiling ([`Limits::http_parser_header_bytes`]) so that
/// requests up to it reach this check instead of being dropped by the
/// parser without a record.
pub fn check_header_size(parts: &request::Parts, limits: &Limits) -> Result<(), CallError> {
    let size = header_list_size(parts);
    let limit = limits.max_http_header_bytes;
    if size > limit as usize {
        return Err(CallError::HeadersTooLarge { size, limit });
    }
    Ok(())
}

/// What to do when a request carries both an authority in its target
/// and a `Host` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRule {
    /// An origin server (the edge's ingress): the two must agree, or the
    /// request is refused — a caller cannot route by one and be decided
    /// by the other.
    MustAgree,
    /// A forward proxy (the client's egress listener): the target's
    /// authority wins and `Host` is ignored (RFC 9112 §3.2.2).
    TargetWins,
}

/// The authority a request addresses, validated strictly: present,
/// agreeing with `Host` when `rule` asks, canonical (lowercase, no
/// userinfo, a numeric port). Returns the host without port.
pub fn authority(
    parts: &request::Parts,
    missing: &str,
    rule: HostRule,
) -> Result<String, CallError> {
    let authority = request_authority(parts).ok_or_else(|| CallError::BadRequest {
        reason: missing.to_string(),
    })?;
    if let (HostRule::MustAgree, Some(uri_auth), Some(host)) = (
        rule,
        parts.uri.authority(),
        parts.headers.get(http::header::HOST),
    ) {
        if !host
            .as_bytes()
            .eq_ignore_ascii_case(uri_auth.as_str().as_bytes())
        {
            return Err(CallError::BadRequest {
                reason: "Host header and request authority disagree".into(),
            });
        }
    }
    canonical_authority(&authority).map_err(|e| CallError::BadRequest {
        reason: format!("authority: {e}"),
    })
}

/// The canonical path of a request target (no query), or a refusal that
/// says to send it canonically: a non-canonical path is refused, never
/// normalised.
pub fn path(target: &str, grpc: bool) -> Result<&str, CallError> {
    canonical_path(target, grpc).map_err(|e| CallError::BadRequest {
        reason: format!("{e}; send the path in canonical form"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(extra: usize) -> request::Parts {
        let (parts, ()) = http::Request::builder()
            .uri("http://a/b")
            .header("x-big", "v".repeat(extra))
            .body(())
            .unwrap_or_default()
            .into_parts();
        parts
    }

    #[test]
    fn heads_over_the_limit_are_refused_with_431() {
        let limits = Limits::default();
        assert!(check_header_size(&parts(10), &limits).is_ok());
        let big = parts(limits.max_http_header_bytes as usize);
        let err = check_header_size(&big, &limits).err();
        assert!(
            matches!(err, Some(CallError::HeadersTooLarge { .. })),
            "{err:?}"
        );
        assert_eq!(err.map(|e| e.http_status().as_u16()), Some(431));
    }

    #[test]
    fn every_field_counts_with_its_overhead() {
        let small = header_list_size(&parts(0));
        assert_eq!(header_list_size(&parts(100)), small + 100);
    }
}
