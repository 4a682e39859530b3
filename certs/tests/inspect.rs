//! `inspect_pem` and the human form of `CertSummary`.

mod common;

use certs::{inspect_pem, CertError, IdentityKind, LeafSpec};
use common::*;

#[test]
fn bundle_of_leaf_and_ca_is_summarised_in_order() {
    let ca = ca();
    let leaf = issue(&ca, IdentityKind::Edge, "edge");
    let bundle = format!("{}{}{}", leaf.cert_pem, leaf.key_pem, ca.cert_pem());
    let s = inspect_pem(&bundle).unwrap();
    assert_eq!(s.len(), 2, "key blocks are skipped");

    let (l, c) = (&s[0], &s[1]);
    assert_eq!(l.subject, "CN=edge");
    assert_eq!(l.issuer, format!("CN=Tether CA {TD}, O=Tether"));
    assert_eq!(c.subject, c.issuer);
    assert!(!l.is_ca && c.is_ca);
    assert_eq!(l.spiffe_ids, vec![format!("spiffe://{TD}/edge/edge")]);
    assert_eq!(l.uri_sans, l.spiffe_ids);
    assert_eq!(l.dns_sans, vec!["localhost"]);
    assert_eq!(l.ip_sans, vec!["127.0.0.1", "::1"]);
    assert_eq!(l.key_usage, vec!["digitalSignature"]);
    assert_eq!(l.extended_key_usage, vec!["serverAuth", "clientAuth"]);
    assert_eq!(
        c.key_usage,
        vec!["digitalSignature", "keyCertSign", "cRLSign"]
    );
    assert!(c.extended_key_usage.is_empty());
    assert_eq!(c.spiffe_ids, vec![format!("spiffe://{TD}")]);
    assert!(
        l.not_before.ends_with('Z') && l.not_before.len() == 20,
        "{}",
        l.not_before
    );
    assert!(l.serial.contains(':'));
    assert!(!l.expired && !l.not_yet_valid);

    let text = l.to_string();
    for needle in [
        "Identity:     spiffe://tether.test/edge/edge",
        "Role:         leaf",
        "Issuer:       CN=Tether CA tether.test, O=Tether",
        "DNS SANs:     localhost",
        "IP SANs:      127.0.0.1, ::1",
        "Key usage:    digitalSignature",
        "Ext. key use: serverAuth, clientAuth",
        "Status:       valid now",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(c.to_string().contains("Role:         CA"));
}

#[test]
fn status_flags_show_in_display() {
    let ca = ca();
    let now = time::OffsetDateTime::now_utc();
    let mut spec = LeafSpec::new(IdentityKind::Caller, "old");
    spec.not_before = Some(now - time::Duration::days(3));
    spec.not_after = Some(now - time::Duration::days(2));
    let s = &inspect_pem(&ca.issue(&spec).unwrap().cert_pem).unwrap()[0];
    assert!(s.to_string().contains("EXPIRED"));
    assert!(s.to_string().contains("Ext. key use: clientAuth"));

    let mut spec = LeafSpec::new(IdentityKind::Caller, "new");
    spec.not_before = Some(now + time::Duration::days(1));
    let s = &inspect_pem(&ca.issue(&spec).unwrap().cert_pem).unwrap()[0];
    assert!(s.to_string().contains("NOT YET VALID"));

    let mut spec = LeafSpec::new(IdentityKind::Tunnel, "two");
    spec.extra_uri_sans = vec![format!("spiffe://{TD}/tunnel/three")];
    let s = &inspect_pem(&ca.issue(&spec).unwrap().cert_pem).unwrap()[0];
    assert_eq!(s.spiffe_ids.len(), 2);
    assert!(s.to_string().contains("INVALID SVID"));
}

#[test]
fn bad_input_is_an_error() {
    assert!(matches!(inspect_pem(""), Err(CertError::Pem { .. })));
    assert!(matches!(inspect_pem("hello"), Err(CertError::Pem { .. })));
    let ca = ca();
    assert!(matches!(
        inspect_pem(&ca.key_pem()),
        Err(CertError::Pem { .. })
    ));
    assert!(matches!(
        inspect_pem("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        Err(CertError::Parse { .. } | CertError::Pem { .. })
    ));
    let truncated = &ca.cert_pem()[..ca.cert_pem().len() - 30];
    assert!(inspect_pem(truncated).is_err());
}
