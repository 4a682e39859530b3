//! Issued leaves (SVIDs) follow every identity rule, for every kind.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use certs::{CertError, IdentityKind, LeafSpec};
use common::*;
use time::OffsetDateTime;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256};

#[test]
fn every_kind_follows_the_rules() {
    let ca = ca();
    let ca_der = ca.cert_der();
    let ca_cert = parse(&ca_der);
    for kind in IdentityKind::ALL {
        let leaf = issue(&ca, kind, "svc-1");
        let expected_id = format!("spiffe://{TD}/{}/svc-1", kind.path_segment());
        assert_eq!(leaf.spiffe_id, expected_id);
        let cert = parse(&leaf.cert_der);

        // Signed by the CA, chained by name and key identifier.
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(aki(&cert), ski(&ca_cert), "AKI must equal the CA's SKI");
        assert!(ski(&cert).is_some_and(|k| !k.is_empty()));
        assert_ne!(ski(&cert), ski(&ca_cert));
        assert_eq!(
            cert.signature_algorithm.algorithm,
            OID_SIG_ECDSA_WITH_SHA256
        );
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            OID_KEY_TYPE_EC_PUBLIC_KEY
        );

        // Exactly one URI SAN: the SPIFFE ID.
        assert_eq!(uri_sans(&cert), vec![expected_id.clone()]);
        assert_eq!(cn(&cert), "svc-1");

        // Not a CA (explicit basicConstraints, critical).
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        assert!(bc.critical);

        // digitalSignature only, critical.
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign() && !ku.value.key_encipherment());
        assert_eq!(ku.value.flags, 1, "only digitalSignature may be set");

        // EKU by kind.
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert_eq!(eku.server_auth, kind != IdentityKind::Caller, "{kind}");
        assert!(!eku.any && !eku.code_signing && eku.other.is_empty());

        assert!(!has_ext(&cert, "nc"), "no name constraints");

        // Default validity: now - 5 min .. now + 24 h.
        let now = now_ts();
        let nb = cert.validity().not_before.timestamp();
        let na = cert.validity().not_after.timestamp();
        assert!(
            (now - 300 - nb).abs() <= 5,
            "{kind}: not_before {nb} vs now {now}"
        );
        assert!(
            (now + 86400 - na).abs() <= 5,
            "{kind}: not_after {na} vs now {now}"
        );

        // Serial.
        assert!(cert.raw_serial().len() >= 16 && cert.raw_serial()[0] & 0x80 == 0);

        // The key is PKCS#8 and belongs to the certificate.
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!leaf.key_der.is_empty());
        let summary = certs::summarize(&leaf.cert_der).unwrap();
        assert_eq!(summary.spiffe_ids, vec![expected_id]);
        assert!(!summary.expired && !summary.not_yet_valid);
    }
}

#[test]
fn edge_defaults_to_localhost_others_to_nothing() {
    let ca = ca();
    let edge = issue(&ca, IdentityKind::Edge, "edge");
    let cert = parse(&edge.cert_der);
    assert_eq!(dns_sans(&cert), vec!["localhost"]);
    assert_eq!(
        ip_sans(&cert),
        vec![
            vec![127, 0, 0, 1],
            "::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec()
        ]
    );
    for kind in [IdentityKind::Tunnel, IdentityKind::Caller] {
        let leaf = issue(&ca, kind, "x");
        let cert = parse(&leaf.cert_der);
        assert!(
            dns_sans(&cert).is_empty() && ip_sans(&cert).is_empty(),
            "{kind}"
        );
    }
}

#[test]
fn explicit_sans_are_written() {
    let ca = ca();
    let mut spec = LeafSpec::new(IdentityKind::Edge, "edge-1");
    spec.dns_names = vec!["edge.example.com".into(), "*.tunnels.example.com".into()];
    spec.ip_addresses = vec!["10.1.2.3".parse::<IpAddr>().unwrap()];
    let leaf = ca.issue(&spec).unwrap();
    let cert = parse(&leaf.cert_der);
    assert_eq!(
        dns_sans(&cert),
        vec!["edge.example.com", "*.tunnels.example.com"]
    );
    assert_eq!(ip_sans(&cert), vec![vec![10, 1, 2, 3]]);
    assert_eq!(uri_sans(&cert).len(), 1);
}

#[test]
fn extra_uri_sans_make_a_deliberately_bad_svid() {
    let ca = ca();
    let mut spec = LeafSpec::new(IdentityKind::Tunnel, "demo");
    spec.extra_uri_sans = vec![format!("spiffe://{TD}/tunnel/other")];
    let leaf = ca.issue(&spec).unwrap();
    let cert = parse(&leaf.cert_der);
    assert_eq!(
        uri_sans(&cert),
        vec![
            format!("spiffe://{TD}/tunnel/demo"),
            format!("spiffe://{TD}/tunnel/other")
        ]
    );
    assert_eq!(leaf.spiffe_id, format!("spiffe://{TD}/tunnel/demo"));
}

#[test]
fn validity_overrides_for_expired_and_future_certs() {
    let ca = ca();
    let now = OffsetDateTime::now_utc();

    let mut expired = LeafSpec::new(IdentityKind::Caller, "old");
    expired.not_before = Some(now - time::Duration::days(2));
    expired.not_after = Some(now - time::Duration::days(1));
    let leaf = ca.issue(&expired).unwrap();
    let s = certs::summarize(&leaf.cert_der).unwrap();
    assert!(s.expired && !s.not_yet_valid);
    let cert = parse(&leaf.cert_der);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (now - time::Duration::days(1)).unix_timestamp()
    );

    let mut future = LeafSpec::new(IdentityKind::Caller, "soon");
    future.not_before = Some(now + time::Duration::days(1));
    future.lifetime = Duration::from_secs(3600);
    let leaf = ca.issue(&future).unwrap();
    let s = certs::summarize(&leaf.cert_der).unwrap();
    assert!(s.not_yet_valid && !s.expired);
    let cert = parse(&leaf.cert_der);
    let nb = cert.validity().not_before.timestamp();
    assert_eq!(nb, (now + time::Duration::days(1)).unix_timestamp());
    assert_eq!(
        cert.validity().not_after.timestamp() - nb,
        3600,
        "lifetime counts from not_before"
    );

    // Custom lifetime from now.
    let mut short = LeafSpec::new(IdentityKind::Tunnel, "short");
    short.lifetime = Duration::from_secs(600);
    let cert_der = ca.issue(&short).unwrap().cert_der;
    let na = parse(&cert_der).validity().not_after.timestamp();
    assert!((now_ts() + 600 - na).abs() <= 5);
}

#[test]
fn bad_specs_are_refused() {
    let ca = ca();
    let now = OffsetDateTime::now_utc();
    let refuse = |spec: LeafSpec| ca.issue(&spec).unwrap_err();

    assert!(matches!(
        refuse(LeafSpec::new(IdentityKind::Tunnel, "Bad")),
        CertError::InvalidName { .. }
    ));
    assert!(matches!(
        refuse(LeafSpec::new(IdentityKind::Tunnel, "")),
        CertError::InvalidName { .. }
    ));

    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.dns_names = vec!["bad host".into()];
    assert!(matches!(refuse(s), CertError::InvalidDnsName { .. }));

    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.not_before = Some(now);
    s.not_after = Some(now - time::Duration::hours(1));
    assert!(matches!(refuse(s), CertError::InvalidValidity(_)));

    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.lifetime = Duration::ZERO;
    assert!(matches!(refuse(s), CertError::InvalidValidity(_)));

    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.lifetime = Duration::from_secs(u64::MAX);
    assert!(matches!(refuse(s), CertError::InvalidValidity(_)));

    // Times X.509 cannot encode are errors, not panics.
    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.not_before = Some(OffsetDateTime::new_utc(
        time::Date::from_calendar_date(-50, time::Month::January, 1).unwrap(),
        time::Time::MIDNIGHT,
    ));
    assert!(matches!(refuse(s), CertError::InvalidValidity(_)));

    // A leaf may not outlive its CA.
    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.lifetime = Duration::from_secs(400 * 86400);
    let err = refuse(s);
    assert!(matches!(err, CertError::InvalidValidity(_)));
    assert!(err.to_string().contains("CA expires"));

    let mut s = LeafSpec::new(IdentityKind::Edge, "e");
    s.extra_uri_sans = vec!["spiffe://tëst/x".into()];
    assert!(matches!(refuse(s), CertError::Generate(_)));
}

#[test]
fn spec_helpers() {
    let spec = LeafSpec::new(IdentityKind::Caller, "ci-bot");
    assert_eq!(spec.file_stem(), "caller-ci-bot");
    assert_eq!(spec.lifetime, certs::DEFAULT_LEAF_LIFETIME);
    assert!(
        spec.not_before.is_none() && spec.not_after.is_none() && spec.extra_uri_sans.is_empty()
    );
}
