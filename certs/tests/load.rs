//! Loading a CA back from PEM: round trip, and refusal of unusable inputs.

mod common;

use std::time::Duration;

use certs::{Ca, CertError, IdentityKind};
use common::*;

#[test]
fn load_round_trip_issues_leaves_that_chain_to_the_original() {
    let original = ca();
    let loaded = Ca::load(&original.cert_pem(), &original.key_pem()).unwrap();
    assert_eq!(loaded.trust_domain(), TD);
    assert_eq!(loaded.cert_der(), original.cert_der());
    assert_eq!(loaded.cert_pem(), original.cert_pem());
    assert_eq!(
        loaded.not_after(),
        parse(&original.cert_der())
            .validity()
            .not_after
            .to_datetime()
    );

    let ca_der = original.cert_der();
    let ca_cert = parse(&ca_der);
    for kind in IdentityKind::ALL {
        let leaf = issue(&loaded, kind, "after-load");
        let cert = parse(&leaf.cert_der);
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(aki(&cert), ski(&ca_cert));
        assert_eq!(leaf.spiffe_id, format!("spiffe://{TD}/{kind}/after-load"));
    }
}

#[test]
fn load_files_and_dir_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let original = ca();
    let (cert, key) = original.write_files(dir.path(), false).unwrap();
    let loaded = Ca::load_files(&cert, &key).unwrap();
    assert_eq!(loaded.cert_der(), original.cert_der());
    let loaded = Ca::load_dir(dir.path()).unwrap();
    assert_eq!(loaded.key_pem(), original.key_pem());
}

#[test]
fn load_accepts_surrounding_text_and_key_after_cert() {
    let ca = ca();
    let cert = format!("# Tether CA\n{}\n", ca.cert_pem());
    let key = format!("{}{}", ca.cert_pem(), ca.key_pem());
    assert!(Ca::load(&cert, &key).is_ok());
}

#[test]
fn load_refuses_unusable_inputs() {
    let ca = ca();
    let other = Ca::create("other.test", Duration::from_secs(3600)).unwrap();
    let leaf = issue(&ca, IdentityKind::Edge, "edge");

    let err = |cert: &str, key: &str| Ca::load(cert, key).unwrap_err();

    assert!(matches!(err("", &ca.key_pem()), CertError::Pem { .. }));
    assert!(matches!(
        err("garbage", &ca.key_pem()),
        CertError::Pem { .. }
    ));
    assert!(matches!(err(&ca.cert_pem(), ""), CertError::Pem { .. }));
    assert!(matches!(
        err(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &ca.key_pem()
        ),
        CertError::Parse { .. }
    ));
    assert!(matches!(
        err(
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            &ca.key_pem()
        ),
        CertError::Pem { .. }
    ));
    assert!(matches!(
        err(
            &ca.cert_pem(),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        ),
        CertError::Key(_)
    ));
    // Key of another CA.
    assert!(matches!(
        err(&ca.cert_pem(), &other.key_pem()),
        CertError::KeyMismatch
    ));
    // A leaf is not a CA.
    assert!(matches!(
        err(&leaf.cert_pem, &leaf.key_pem),
        CertError::NotACa(_)
    ));
    // Two certificates in the CA file is ambiguous.
    let two = format!("{}{}", ca.cert_pem(), other.cert_pem());
    assert!(matches!(err(&two, &ca.key_pem()), CertError::NotACa(_)));

    // Missing files name the path.
    let e = Ca::load_files(
        "/nonexistent/ca.pem".as_ref(),
        "/nonexistent/ca.key".as_ref(),
    )
    .unwrap_err();
    assert!(matches!(e, CertError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/ca.pem"));
}

#[test]
fn ca_key_pem_can_pose_as_a_bad_leaf() {
    // Tests elsewhere present the CA cert+key as a leaf; both parse and match.
    let ca = ca();
    let s = certs::inspect_pem(&ca.cert_pem()).unwrap();
    assert!(s[0].is_ca);
    assert!(ca.key_pem().contains("PRIVATE KEY"));
}
