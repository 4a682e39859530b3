//! Naming rules: trust domains, names, SPIFFE IDs and DNS SANs.

use certs::{
    spiffe_id, validate_dns_name, validate_name, validate_trust_domain, IdentityKind, SpiffeId,
};

#[test]
fn trust_domains() {
    let long = "a".repeat(255);
    for good in [
        "tether.local",
        "example.org",
        "a",
        "prod-1.example_co.io",
        "123",
        long.as_str(),
    ] {
        assert!(validate_trust_domain(good).is_ok(), "{good}");
    }
    let too_long = "a".repeat(256);
    for bad in [
        "",
        "Tether.local",
        ".tether.local",
        "tether.local.",
        "a..b",
        "tether.local:443",
        "tether/local",
        "spiffe://tether.local",
        "tëther",
        "has space",
        too_long.as_str(),
    ] {
        assert!(validate_trust_domain(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn names() {
    let long = "a".repeat(63);
    for good in [
        "demo",
        "a",
        "payments-api",
        "x1",
        "1x",
        "a-b-c",
        long.as_str(),
    ] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "-a",
        "a-",
        "Demo",
        "a_b",
        "a.b",
        "a/b",
        "a b",
        "é",
        too_long.as_str(),
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn spiffe_ids() {
    assert_eq!(
        spiffe_id("tether.local", IdentityKind::Tunnel, "demo").unwrap(),
        "spiffe://tether.local/tunnel/demo"
    );
    assert_eq!(
        spiffe_id("td", IdentityKind::Edge, "e").unwrap(),
        "spiffe://td/edge/e"
    );
    assert_eq!(
        spiffe_id("td", IdentityKind::Caller, "c").unwrap(),
        "spiffe://td/caller/c"
    );
    assert!(spiffe_id("BAD", IdentityKind::Caller, "c").is_err());
    assert!(spiffe_id("td", IdentityKind::Caller, "C").is_err());
    assert_eq!(
        IdentityKind::ALL.map(|k| k.path_segment()),
        ["tunnel", "edge", "caller"]
    );
    assert_eq!(IdentityKind::Edge.to_string(), "edge");
    assert_eq!(
        "caller".parse::<IdentityKind>().unwrap(),
        IdentityKind::Caller
    );
    assert!("admin".parse::<IdentityKind>().is_err());
}

#[test]
fn spiffe_id_parsing() {
    let id = SpiffeId::parse("spiffe://tether.local/tunnel/demo").unwrap();
    assert_eq!(id.trust_domain, "tether.local");
    assert_eq!(id.kind, IdentityKind::Tunnel);
    assert_eq!(id.name, "demo");
    assert_eq!(id.to_string(), "spiffe://tether.local/tunnel/demo");
    for bad in [
        "",
        "spiffe://tether.local",
        "spiffe://tether.local/",
        "spiffe://tether.local/tunnel",
        "spiffe://tether.local/tunnel/",
        "spiffe://tether.local/tunnel/demo/extra",
        "spiffe://tether.local/admin/demo",
        "spiffe://Tether.local/tunnel/demo",
        "spiffe://tether.local/tunnel/Demo",
        "spiffe://tether.local:8443/tunnel/demo",
        "spiffe://tether.local/tunnel/demo?x=1",
        "https://tether.local/tunnel/demo",
        "SPIFFE://tether.local/tunnel/demo",
    ] {
        assert!(SpiffeId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn dns_names() {
    for good in [
        "localhost",
        "edge.example.com",
        "*.tunnels.example.com",
        "A-1.example",
        "x",
    ] {
        assert!(validate_dns_name(good).is_ok(), "{good}");
    }
    let long_label = format!("{}.com", "a".repeat(64));
    for bad in [
        "",
        ".",
        "a..b",
        "a.",
        "-a.com",
        "a-.com",
        "a b",
        "*",
        "a.*.com",
        "é.com",
        "a_b.com",
        long_label.as_str(),
    ] {
        assert!(validate_dns_name(bad).is_err(), "{bad:?}");
    }
}
