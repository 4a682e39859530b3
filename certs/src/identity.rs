//! SPIFFE naming: identity kinds, trust-domain and name validation, and SPIFFE IDs.

use std::fmt;
use std::str::FromStr;

use crate::CertError;

/// Which role an identity plays; it becomes the first path segment of the SPIFFE ID,
/// so a certificate can never be mistaken for another role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A tunnel client that exposes a private service (`/tunnel/<name>`).
    Tunnel,
    /// A public edge / tunnel server (`/edge/<name>`).
    Edge,
    /// A client calling a service through the edge (`/caller/<name>`).
    Caller,
}

impl IdentityKind {
    /// Every kind, for iteration in help text and tests.
    pub const ALL: [IdentityKind; 3] = [
        IdentityKind::Tunnel,
        IdentityKind::Edge,
        IdentityKind::Caller,
    ];

    /// The SPIFFE path segment for this kind, used to build and recognise IDs.
    pub fn path_segment(&self) -> &'static str {
        match self {
            IdentityKind::Tunnel => "tunnel",
            IdentityKind::Edge => "edge",
            IdentityKind::Caller => "caller",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path_segment())
    }
}

impl FromStr for IdentityKind {
    type Err = CertError;

    /// Parses the path segment form ("tunnel", "edge", "caller").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentityKind::ALL
            .into_iter()
            .find(|k| k.path_segment() == s)
            .ok_or_else(|| CertError::InvalidSpiffeId {
                value: s.to_owned(),
                reason: "identity kind must be one of tunnel, edge, caller",
            })
    }
}

/// Checks a trust domain against the SPIFFE rules so every ID we mint is valid:
/// lowercase `a-z 0-9 . - _`, 1..=255 characters, no leading, trailing or doubled dot.
pub fn validate_trust_domain(td: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::InvalidTrustDomain {
            value: td.to_owned(),
            reason,
        })
    };
    if td.is_empty() {
        return bad("must not be empty");
    }
    if td.len() > 255 {
        return bad("must be at most 255 characters");
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return bad("only lowercase letters a-z, digits 0-9, '.', '-' and '_' are allowed");
    }
    if td.starts_with('.') || td.ends_with('.') {
        return bad("must not start or end with '.'");
    }
    if td.contains("..") {
        return bad("must not contain an empty label ('..')");
    }
    Ok(())
}

/// Checks an identity name; names double as DNS host labels for routing, so they
/// must be `a-z 0-9 -`, 1..=63 characters, not starting or ending with '-'.
pub fn validate_name(name: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::InvalidName {
            value: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > 63 {
        return bad("must be at most 63 characters (it is used as a DNS label)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only lowercase letters a-z, digits 0-9 and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    Ok(())
}

/// Builds `spiffe://<td>/<kind>/<name>` after validating both parts, so an
/// invalid ID can never reach a certificate.
pub fn spiffe_id(td: &str, kind: IdentityKind, name: &str) -> Result<String, CertError> {
    validate_trust_domain(td)?;
    validate_name(name)?;
    Ok(format!("spiffe://{td}/{}/{name}", kind.path_segment()))
}

/// The URI of a trust domain itself (`spiffe://<td>`), carried by the CA certificate.
pub fn trust_domain_id(td: &str) -> Result<String, CertError> {
    validate_trust_domain(td)?;
    Ok(format!("spiffe://{td}"))
}

/// A parsed Tether SPIFFE ID; peers derive a caller's or tunnel's name from this,
/// never from what the peer claims about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The trust domain (`tether.local`).
    pub trust_domain: String,
    /// The role, from the first path segment.
    pub kind: IdentityKind,
    /// The identity name, from the second path segment.
    pub name: String,
}

impl SpiffeId {
    /// Parses and strictly validates `spiffe://<td>/<kind>/<name>`; anything else
    /// (extra segments, query, fragment, port, uppercase) is refused.
    pub fn parse(uri: &str) -> Result<SpiffeId, CertError> {
        let bad = |reason| CertError::InvalidSpiffeId {
            value: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("must start with spiffe://"))?;
        let mut parts = rest.split('/');
        let td = parts.next().unwrap_or_default();
        let kind = parts
            .next()
            .ok_or_else(|| bad("missing /<kind>/<name> path"))?;
        let name = parts
            .next()
            .ok_or_else(|| bad("missing /<name> after the kind"))?;
        if parts.next().is_some() {
            return Err(bad("path must be exactly /<kind>/<name>"));
        }
        validate_trust_domain(td).map_err(|_| bad("trust domain is not valid"))?;
        let kind = IdentityKind::from_str(kind)
            .map_err(|_| bad("kind must be one of tunnel, edge, caller"))?;
        validate_name(name).map_err(|_| bad("name is not a valid DNS label"))?;
        Ok(SpiffeId {
            trust_domain: td.to_owned(),
            kind,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.trust_domain,
            self.kind.path_segment(),
            self.name
        )
    }
}

/// Checks a DNS subject alternative name (optionally with a leading `*.` wildcard
/// label) before it is written, so certificates only carry names TLS stacks accept.
pub fn validate_dns_name(dns: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::InvalidDnsName {
            value: dns.to_owned(),
            reason,
        })
    };
    if dns.is_empty() {
        return bad("must not be empty");
    }
    if dns.len() > 253 {
        return bad("must be at most 253 characters");
    }
    let body = dns.strip_prefix("*.").unwrap_or(dns);
    for label in body.split('.') {
        if label.is_empty() {
            return bad("has an empty label (leading, trailing or doubled '.')");
        }
        if label.len() > 63 {
            return bad("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad(
                "labels may only contain letters, digits and '-' (a leading '*.' is allowed)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("labels must not start or end with '-'");
        }
    }
    Ok(())
}
