//! The patterns rules are written with. Each is validated when the policy
//! is loaded, so evaluation never meets a malformed one.

use std::fmt;

/// An identity pattern: an exact SPIFFE ID, or a prefix ending in `/*` that
/// matches every identity below that path segment (`spiffe://td/tunnel/east/*`
/// matches `spiffe://td/tunnel/east/a`, never `spiffe://td/tunnel/eastern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPattern {
    /// Matches this identity only.
    Exact(String),
    /// Matches identities starting with this prefix (which ends in `/`).
    Below(String),
}

impl IdPattern {
    /// Parses a pattern; a `*` anywhere but as the whole last segment is an
    /// error.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(prefix) = s.strip_suffix("/*") {
            let base = format!("{prefix}/x");
            crate::identity::SpiffeId::parse(&base)
                .map_err(|_| format!("'{s}': the part before /* must be a SPIFFE ID prefix"))?;
            if prefix.contains('*') {
                return Err(format!(
                    "'{s}': * is allowed only as the whole last path segment"
                ));
            }
            return Ok(Self::Below(format!("{prefix}/")));
        }
        if s.contains('*') {
            return Err(format!(
                "'{s}': * is allowed only as the whole last path segment (…/*)"
            ));
        }
        crate::identity::SpiffeId::parse(s).map_err(|e| format!("'{s}': {e}"))?;
        Ok(Self::Exact(s.to_string()))
    }

    /// True if `id` is matched.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            Self::Exact(e) => e == id,
            Self::Below(p) => id.len() > p.len() && id.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(e) => f.write_str(e),
            Self::Below(p) => write!(f, "{p}*"),
        }
    }
}

/// A service name pattern: a name or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Any service.
    Any,
    /// Exactly this one.
    Exact(String),
}

impl NamePattern {
    /// Parses `*` or a DNS-label service name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!("'{s}': a service is * or a name of a-z, 0-9 and -"));
        }
        Ok(Self::Exact(s.to_string()))
    }

    /// True if `name` is matched.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == name,
        }
    }
}

/// A gRPC method pattern: `/package.Service/Method` or `/package.Service/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcPattern {
    /// One method.
    Method(String),
    /// Every method of a service: the stored prefix ends in `/`.
    Service(String),
}

impl GrpcPattern {
    /// Parses and validates the pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("'{s}': gRPC methods are /package.Service/Method or /package.Service/*");
        let rest = s.strip_prefix('/').ok_or_else(bad)?;
        let (svc, method) = rest.split_once('/').ok_or_else(bad)?;
        let ident = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        };
        if !ident(svc) {
            return Err(bad());
        }
        if method == "*" {
            return Ok(Self::Service(format!("/{svc}/")));
        }
        if !ident(method) {
            return Err(bad());
        }
        Ok(Self::Method(s.to_string()))
    }

    /// True if the (canonical) gRPC path is matched; `fold_case` as for
    /// [`PathPrefix::matches`].
    pub fn matches(&self, path: &str, fold_case: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if fold_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            Self::Method(m) => eq(m.as_bytes(), path.as_bytes()),
            Self::Service(prefix) => {
                path.len() > prefix.len() && eq(&path.as_bytes()[..prefix.len()], prefix.as_bytes())
            }
        }
    }
}

/// An HTTP path prefix. `/api/` matches everything below `/api/`; `/api`
/// matches `/api` and everything below `/api/`, never `/apix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(pub String);

impl PathPrefix {
    /// Parses a prefix; it must itself be a canonical path.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains('?') || s.contains('*') {
            return Err(format!("'{s}': a path prefix has no query and no *"));
        }
        super::canonical::canonical_path(s, false).map_err(|e| format!("'{s}': {e}"))?;
        Ok(Self(s.to_string()))
    }

    /// True if `path` lies at or below the prefix. `fold_case` compares
    /// ASCII case-insensitively: deny rules use it so that a service which
    /// treats paths case-insensitively cannot be reached past a deny by
    /// changing case.
    pub fn matches(&self, path: &str, fold_case: bool) -> bool {
        let p = self.0.as_str();
        let starts = path.len() >= p.len()
            && if fold_case {
                path.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            } else {
                path.starts_with(p)
            };
        if !starts {
            return false;
        }
        p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_stops_at_segment_boundary() {
        let p = IdPattern::parse("spiffe://td/tunnel/east/*").unwrap();
        assert!(p.matches("spiffe://td/tunnel/east/a"));
        assert!(p.matches("spiffe://td/tunnel/east/a/b"));
        assert!(!p.matches("spiffe://td/tunnel/eastern"));
        assert!(!p.matches("spiffe://td/tunnel/east"));
        assert!(!p.matches("spiffe://td/tunnel/east/"));
    }

    #[test]
    fn misplaced_wildcards_are_rejected() {
        for bad in [
            "spiffe://td/tunnel/east*",
            "spiffe://td/tunnel/*/a",
            "spiffe://td/*/*",
            "*",
            "spiffe://*/x",
            "spiffe://td/tun*el/x",
        ] {
            assert!(IdPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grpc_patterns() {
        let svc = GrpcPattern::parse("/pkg.Svc/*").unwrap();
        assert!(svc.matches("/pkg.Svc/Get", false));
        assert!(!svc.matches("/pkg.SvcX/Get", false));
        assert!(!svc.matches("/pkg.Svc/", false));
        assert!(!svc.matches("/PKG.svc/Get", false));
        assert!(svc.matches("/PKG.svc/Get", true));
        let m = GrpcPattern::parse("/pkg.Svc/Get").unwrap();
        assert!(m.matches("/pkg.Svc/Get", false));
        assert!(!m.matches("/pkg.Svc/GetAll", false));
        for bad in ["pkg.Svc/Get", "/pkg.Svc", "/pkg.Svc/G*", "/*/Get", "/a/b/c"] {
            assert!(GrpcPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_prefixes_respect_segments() {
        let p = PathPrefix::parse("/api").unwrap();
        assert!(p.matches("/api", false));
        assert!(p.matches("/api/x", false));
        assert!(!p.matches("/apix", false));
        assert!(!p.matches("/API/x", false));
        assert!(p.matches("/API/x", true));
        let p = PathPrefix::parse("/api/").unwrap();
        assert!(p.matches("/api/x", false));
        assert!(!p.matches("/api", false));
    }
}
