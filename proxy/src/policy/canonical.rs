//! Strict validation of what policy matches on. Non-canonical spellings are
//! refused, never normalised: normalising would let one spelling pass a rule
//! that another spelling of the same resource was meant to hit, because the
//! service behind the tunnel may normalise differently.

/// Why a path or authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The path is not in origin form.
    #[error("path must start with /")]
    NotOriginForm,
    /// An empty segment (`//`).
    #[error("path contains an empty segment (//)")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("path contains a dot segment (. or ..)")]
    DotSegment,
    /// `%2f`, `%2e`, `%5c` or `%00` — an encoded separator, dot or NUL.
    #[error("path contains a percent-encoded '/', '.', '\\' or NUL")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("path contains a malformed percent escape")]
    BadEscape,
    /// A control character, backslash, space or `#`.
    #[error("path contains a control character, backslash, space or #")]
    ForbiddenByte,
    /// A gRPC path that is not `/package.Service/Method`.
    #[error("gRPC path must be /<package.Service>/<Method>")]
    NotGrpcMethod,
    /// The authority is not `host[:port]` of DNS characters.
    #[error("authority must be host[:port] with a DNS host name")]
    BadAuthority,
}

/// Validates a request target and returns the path without its query.
/// gRPC requests must name exactly one method and carry no query.
pub fn canonical_path(target: &str, grpc: bool) -> Result<&str, InputError> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if !path.starts_with('/') {
        return Err(InputError::NotOriginForm);
    }
    check_bytes(path)?;
    if let Some(q) = query {
        check_bytes(q)?;
    }
    if path.len() > 1 {
        for seg in path[1..].split('/') {
            match seg {
                // A trailing slash is one empty final segment: allowed.
                "" => {}
                "." | ".." => return Err(InputError::DotSegment),
                _ => check_escapes(seg)?,
            }
        }
        if path.contains("//") {
            return Err(InputError::EmptySegment);
        }
    }
    if grpc {
        if query.is_some() {
            return Err(InputError::NotGrpcMethod);
        }
        let mut parts = path[1..].split('/');
        let (svc, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        };
        if parts.next().is_some() || !ok(svc) || !ok(method) {
            return Err(InputError::NotGrpcMethod);
        }
    }
    Ok(path)
}

fn check_bytes(s: &str) -> Result<(), InputError> {
    if s.bytes()
        .any(|b| b < 0x21 || b == 0x7f || b == b'\\' || b == b'#' || b >= 0x80)
    {
        return Err(InputError::ForbiddenByte);
    }
    Ok(())
}

fn check_escapes(seg: &str) -> Result<(), InputError> {
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| c.is_ascii_hexdigit();
            if i + 2 >= b.len() || !hex(b[i + 1]) || !hex(b[i + 2]) {
                return Err(InputError::BadEscape);
            }
            let v =
                u8::from_str_radix(&seg[i + 1..i + 3], 16).map_err(|_| InputError::BadEscape)?;
            if matches!(v, b'/' | b'.' | b'\\' | 0) {
                return Err(InputError::EncodedSeparator);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Validates an authority (`host[:port]`): lowercase-insensitive DNS name or
/// IP literal, optional numeric port, no userinfo. Returns the host in
/// lowercase.
pub fn canonical_authority(authority: &str) -> Result<String, InputError> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 literal without brackets has colons but no port.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (authority, None),
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::BadAuthority);
        }
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'-'
                || b == b'.'
                || b == b'['
                || b == b']'
                || b == b':'
        })
        && !host.starts_with('.')
        && !host.contains("..");
    if !host_ok {
        return Err(InputError::BadAuthority);
    }
    Ok(host.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/a%20b",
            "/a?x=1&y=%2F",
            "/v1/items/42",
        ] {
            assert!(canonical_path(p, false).is_ok(), "{p}");
        }
        assert_eq!(canonical_path("/a/b?q", false).unwrap(), "/a/b");
        assert_eq!(
            canonical_path("/tether.echo.v1.Echo/Unary", true).unwrap(),
            "/tether.echo.v1.Echo/Unary"
        );
    }

    #[test]
    fn refuses_every_non_canonical_spelling() {
        let cases = [
            ("a", InputError::NotOriginForm),
            ("//a", InputError::EmptySegment),
            ("/a//b", InputError::EmptySegment),
            ("/a/./b", InputError::DotSegment),
            ("/a/../b", InputError::DotSegment),
            ("/..", InputError::DotSegment),
            ("/a%2fb", InputError::EncodedSeparator),
            ("/a%2Fb", InputError::EncodedSeparator),
            ("/%2e%2e/b", InputError::EncodedSeparator),
            ("/a%2E", InputError::EncodedSeparator),
            ("/a%5cb", InputError::EncodedSeparator),
            ("/a%00", InputError::EncodedSeparator),
            ("/a%zz", InputError::BadEscape),
            ("/a%2", InputError::BadEscape),
            ("/a%", InputError::BadEscape),
            ("/a\\b", InputError::ForbiddenByte),
            ("/a\tb", InputError::ForbiddenByte),
            ("/a b", InputError::ForbiddenByte),
            ("/a\u{7f}", InputError::ForbiddenByte),
            ("/é", InputError::ForbiddenByte),
        ];
        for (p, want) in cases {
            assert_eq!(canonical_path(p, false), Err(want), "{p:?}");
        }
    }

    #[test]
    fn grpc_paths_name_exactly_one_method() {
        for p in ["/svc", "/svc/", "/a/b/c", "//m", "/svc/m?x", "/s v/m"] {
            assert!(canonical_path(p, true).is_err(), "{p}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            canonical_authority("Echo.Demo.tunnel.local:443").unwrap(),
            "echo.demo.tunnel.local"
        );
        assert_eq!(canonical_authority("127.0.0.1").unwrap(), "127.0.0.1");
        for a in [
            "",
            "user@host",
            "host:",
            "host:99999999",
            "a..b",
            ".a",
            "ho st",
            "host:x",
        ] {
            assert!(canonical_authority(a).is_err(), "{a}");
        }
    }
}
