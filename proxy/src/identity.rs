//! Who a peer is, taken from its certificate and nowhere else.
//!
//! An identity is a SPIFFE ID (`spiffe://<trust-domain>/<path>`) carried as
//! the one and only URI SAN of an X.509 leaf. Chain and validity checks are
//! rustls-webpki's job (see `tls`); this module adds the SVID rules on top and
//! turns a verified leaf into a [`SpiffeId`].

use std::fmt;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate does not carry a usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not an X.509 certificate.
    #[error("certificate could not be parsed: {0}")]
    Parse(String),
    /// No URI SAN at all.
    #[error("certificate has no URI SAN; a Tether identity needs exactly one spiffe:// URI")]
    NoUriSan,
    /// More than one URI SAN: which one is the identity would be ambiguous.
    #[error("certificate has {0} URI SANs; a Tether identity needs exactly one")]
    MultipleUriSans(usize),
    /// The URI is not a well-formed SPIFFE ID.
    #[error("'{0}' is not a valid SPIFFE ID: {1}")]
    BadSpiffeId(String, &'static str),
    /// The identity belongs to another trust domain.
    #[error("identity '{id}' is not in trust domain '{expected}'")]
    WrongTrustDomain {
        /// The identity presented.
        id: String,
        /// The trust domain this process accepts.
        expected: String,
    },
    /// The identity is not of the kind this listener accepts.
    #[error(
        "identity '{id}' is not a {expected} identity (expected a path starting /{expected}/)"
    )]
    WrongKind {
        /// The identity presented.
        id: String,
        /// The required first path segment.
        expected: &'static str,
    },
    /// A CA certificate was presented as a leaf.
    #[error("certificate is a CA certificate and cannot be used as a peer identity")]
    IsCa,
}

/// A validated SPIFFE ID. Construction guarantees the form, so holders never
/// re-check it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    td_end: usize,
}

impl SpiffeId {
    /// Parses and validates `spiffe://<trust-domain>/<path>` per the SPIFFE
    /// spec: lowercase trust domain, non-empty path segments of
    /// `[A-Za-z0-9.-_]`, no `.`/`..` segments, no query or fragment.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let bad = |why| IdentityError::BadSpiffeId(s.to_string(), why);
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("scheme must be spiffe://"))?;
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if td.is_empty() || td.len() > 255 {
            return Err(bad("trust domain must be 1 to 255 characters"));
        }
        if !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad("trust domain may hold only a-z 0-9 - . _"));
        }
        if path.is_empty() {
            return Err(bad("a workload identity needs a path"));
        }
        for seg in path[1..].split('/') {
            if seg.is_empty() {
                return Err(bad("path segments must not be empty"));
            }
            if seg == "." || seg == ".." {
                return Err(bad("path segments must not be . or .."));
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(bad("path segments may hold only A-Z a-z 0-9 - . _"));
            }
        }
        Ok(Self {
            uri: s.to_string(),
            td_end: "spiffe://".len() + td.len(),
        })
    }

    /// The trust domain, e.g. `tether.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len()..self.td_end]
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.uri[self.td_end..]
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// For `/<kind>/<name>` identities, the name, when the kind matches.
    /// The tunnel's routing name comes from here, never from what it says.
    pub fn name_of_kind(&self, kind: &str) -> Option<&str> {
        let rest = self.path().strip_prefix('/')?.strip_prefix(kind)?;
        let name = rest.strip_prefix('/')?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

/// Extracts the SPIFFE ID from a leaf certificate, enforcing the SVID rules:
/// exactly one URI SAN, a valid SPIFFE ID, not a CA. Validity and chain are
/// checked by the TLS verifier before this is called.
pub fn spiffe_id_from_cert(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    let mut uris = Vec::new();
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        uris.push(*uri);
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(IdentityError::IsCa),
            _ => {}
        }
    }
    match uris.as_slice() {
        [] => Err(IdentityError::NoUriSan),
        [uri] => SpiffeId::parse(uri),
        many => Err(IdentityError::MultipleUriSans(many.len())),
    }
}

/// What a connection's lifetime and revocation are judged by, beyond the
/// identity: when the leaf stops being valid and which certificate it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// End of the validity window: a connection authenticated by this
    /// certificate closes then.
    pub not_after: std::time::SystemTime,
    /// The serial number's bytes as encoded (the form deny lists use).
    pub serial: Vec<u8>,
}

/// Reads [`LeafFacts`] from a certificate.
pub fn leaf_facts(cert: &CertificateDer<'_>) -> Result<LeafFacts, IdentityError> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    let secs = x509.validity().not_after.timestamp();
    let not_after = u64::try_from(secs)
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .unwrap_or(std::time::UNIX_EPOCH);
    Ok(LeafFacts {
        not_after,
        serial: normalize_serial(x509.raw_serial()).to_vec(),
    })
}

/// Serials compare without leading zero bytes: DER adds one when the top
/// bit is set, and people copy serials with or without it.
fn normalize_serial(serial: &[u8]) -> &[u8] {
    let first = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    &serial[first..]
}

/// Parses a serial as written in a deny list: hex digits, optionally in
/// colon-separated byte pairs (`0a:1b:2c` or `0a1b2c`), any case, leading
/// zero bytes ignored.
pub fn parse_serial(s: &str) -> Result<Vec<u8>, String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "'{s}' is not a certificate serial (hex bytes, e.g. 3a:0f:9c or 3a0f9c)"
        ));
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    Ok(normalize_serial(&bytes).to_vec())
}

/// Formats serial bytes as `certs inspect` and audit records show them.
pub fn format_serial(serial: &[u8]) -> String {
    serial
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a listener accepts: a trust domain and optionally one identity kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    /// Only identities of this trust domain are accepted.
    pub trust_domain: String,
    /// When set, the identity's path must be `/<kind>/<name>`.
    pub kind: Option<&'static str>,
}

impl IdentityRule {
    /// Checks a verified leaf against the rule and returns its identity.
    pub fn check(&self, cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
        let id = spiffe_id_from_cert(cert)?;
        if id.trust_domain() != self.trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                id: id.to_string(),
                expected: self.trust_domain.clone(),
            });
        }
        if let Some(kind) = self.kind {
            if id.name_of_kind(kind).is_none() {
                return Err(IdentityError::WrongKind {
                    id: id.to_string(),
                    expected: kind,
                });
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = SpiffeId::parse("spiffe://tether.local/tunnel/east-1").unwrap();
        assert_eq!(id.trust_domain(), "tether.local");
        assert_eq!(id.path(), "/tunnel/east-1");
        assert_eq!(id.name_of_kind("tunnel"), Some("east-1"));
        assert_eq!(id.name_of_kind("edge"), None);
        assert_eq!(id.name_of_kind("tun"), None);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "http://tether.local/x",
            "spiffe://",
            "spiffe://tether.local",
            "spiffe://tether.local/",
            "spiffe://Tether.local/x",
            "spiffe://tether.local//x",
            "spiffe://tether.local/a/../b",
            "spiffe://tether.local/a/./b",
            "spiffe://tether.local/a?b",
            "spiffe://tether.local/a#b",
            "spiffe://tether.local/a%2fb",
            "spiffe://user@tether.local/a",
            "spiffe://tether.local:443/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn nested_names_are_not_kind_names() {
        let id = SpiffeId::parse("spiffe://td/tunnel/a/b").unwrap();
        assert_eq!(id.name_of_kind("tunnel"), None);
    }
}
