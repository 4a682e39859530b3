//! Maps a caller's host to a (service, tunnel) pair. Pure: no IO, no state.

use proxy::forward::CallError;

/// Checks a name used as a DNS label (tunnel and service names are host
/// labels): 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
pub fn validate_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only a-z, 0-9 and -");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not start or end with -");
    }
    Ok(())
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Service name within the tunnel.
    pub service: String,
    /// Tunnel name (from the tunnel's certificate when it registered).
    pub tunnel: String,
}

/// Parses `<service>.<tunnel>.<domain>[:port]`. Case-insensitive, exactly
/// two labels before the domain; anything else is no route.
pub fn route_for_host(authority: &str, domain: &str) -> Result<Route, CallError> {
    let no_route = || CallError::NoRoute {
        host: authority.chars().take(255).collect(),
        domain: domain.to_string(),
    };
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let prefix = host
        .strip_suffix(domain)
        .and_then(|p| p.strip_suffix('.'))
        .ok_or_else(no_route)?;
    let (service, tunnel) = prefix.split_once('.').ok_or_else(no_route)?;
    if validate_label(service).is_err() || validate_label(tunnel).is_err() {
        return Err(no_route());
    }
    Ok(Route {
        service: service.to_string(),
        tunnel: tunnel.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_service_and_tunnel() {
        let r = route_for_host("Echo.Demo.tunnel.local:8443", "tunnel.local").unwrap();
        assert_eq!(r.service, "echo");
        assert_eq!(r.tunnel, "demo");
        let r = route_for_host("echo.demo.tunnel.local", "tunnel.local").unwrap();
        assert_eq!(r.tunnel, "demo");
    }

    #[test]
    fn refuses_everything_else() {
        for host in [
            "tunnel.local",
            "demo.tunnel.local",
            "a.b.c.tunnel.local",
            "echo.demo.othertunnel.local",
            "echo.demo.xtunnel.local",
            "echo_.demo.tunnel.local",
            "-a.demo.tunnel.local",
            "",
        ] {
            assert!(route_for_host(host, "tunnel.local").is_err(), "{host}");
        }
    }
}
