//! The CA certificate carries exactly what the identity rules require.

mod common;

use std::time::Duration;

use certs::{Ca, CertError};
use common::*;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256};

#[test]
fn ca_certificate_follows_the_rules() {
    let ca = ca();
    assert_eq!(ca.trust_domain(), TD);
    let der = ca.cert_der();
    let cert = parse(&der);

    // Self-signed with ECDSA P-256 / SHA-256.
    cert.verify_signature(None).unwrap();
    assert_eq!(
        cert.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA256
    );
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());

    // basicConstraints: critical, CA, pathlen 0.
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    assert!(ext_critical(&cert, "bc"));

    // keyUsage: critical, exactly keyCertSign + cRLSign + digitalSignature.
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert!(!ku.key_encipherment() && !ku.key_agreement() && !ku.non_repudiation());
    assert!(ext_critical(&cert, "ku"));

    // No EKU, no name constraints, SKI present.
    assert!(cert.extended_key_usage().unwrap().is_none());
    assert!(!has_ext(&cert, "nc"), "CA must not carry name constraints");
    assert!(ski(&cert).is_some_and(|k| !k.is_empty()));

    // Subject and SAN.
    assert_eq!(cn(&cert), format!("Tether CA {TD}"));
    let org = cert
        .subject()
        .iter_organization()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(org, "Tether");
    assert_eq!(uri_sans(&cert), vec![format!("spiffe://{TD}")]);
    assert!(dns_sans(&cert).is_empty() && ip_sans(&cert).is_empty());

    // Validity: backdated ~5 minutes, 365 days ahead.
    let now = now_ts();
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert!((now - 300 - nb).abs() <= 5, "not_before {nb} vs now {now}");
    assert!(
        (now + 365 * 86400 - na).abs() <= 5,
        "not_after {na} vs now {now}"
    );

    // Serial: positive and at least 16 bytes.
    assert!(cert.raw_serial().len() >= 16);
    assert!(cert.raw_serial()[0] & 0x80 == 0);
}

#[test]
fn serials_and_keys_are_unique() {
    let a = ca();
    let b = ca();
    let (da, db) = (a.cert_der(), b.cert_der());
    assert_ne!(parse(&da).raw_serial(), parse(&db).raw_serial());
    assert_ne!(a.key_pem(), b.key_pem());
}

#[test]
fn pem_forms_match_der() {
    let ca = ca();
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    let summaries = certs::inspect_pem(&ca.cert_pem()).unwrap();
    assert_eq!(summaries.len(), 1);
    assert!(summaries[0].is_ca);
}

#[test]
fn create_rejects_bad_input() {
    assert!(matches!(
        Ca::create("Not.Valid", Duration::from_secs(60)),
        Err(CertError::InvalidTrustDomain { .. })
    ));
    assert!(matches!(
        Ca::create("ok.local", Duration::ZERO),
        Err(CertError::InvalidValidity(_))
    ));
    assert!(matches!(
        Ca::create("ok.local", Duration::from_secs(u64::MAX)),
        Err(CertError::InvalidValidity(_))
    ));
    // Past year 9999 is not encodable.
    assert!(matches!(
        Ca::create("ok.local", Duration::from_secs(9000 * 366 * 86400)),
        Err(CertError::InvalidValidity(_))
    ));
}

#[test]
fn debug_does_not_leak_the_key() {
    let ca = ca();
    let debug = format!("{ca:?}");
    assert!(debug.contains(TD));
    assert!(!debug.contains("PRIVATE"));
    let leaf = issue(&ca, certs::IdentityKind::Caller, "x");
    let debug = format!("{leaf:?}");
    assert!(debug.contains("spiffe://"));
    assert!(!debug.contains("PRIVATE") && !debug.contains("key_der"));
}
