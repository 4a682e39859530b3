//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::time::Duration;

use certs::{Ca, IdentityKind, IssuedCert, LeafSpec};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Certificate};

pub const TD: &str = "tether.test";

pub fn ca() -> Ca {
    Ca::create(TD, Duration::from_secs(365 * 24 * 3600)).unwrap()
}

pub fn issue(ca: &Ca, kind: IdentityKind, name: &str) -> IssuedCert {
    ca.issue(&LeafSpec::new(kind, name)).unwrap()
}

pub fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

pub fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    general_names(cert)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_owned()),
            _ => None,
        })
        .collect()
}

pub fn dns_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    general_names(cert)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_owned()),
            _ => None,
        })
        .collect()
}

pub fn ip_sans(cert: &X509Certificate<'_>) -> Vec<Vec<u8>> {
    general_names(cert)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::IPAddress(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect()
}

fn general_names<'a>(cert: &'a X509Certificate<'_>) -> Vec<GeneralName<'a>> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default()
}

pub fn ski<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

pub fn aki<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
}

pub fn has_ext(cert: &X509Certificate<'_>, which: &str) -> bool {
    let oid = match which {
        "nc" => OID_X509_EXT_NAME_CONSTRAINTS,
        "ski" => OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        "aki" => OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        "bc" => OID_X509_EXT_BASIC_CONSTRAINTS,
        "ku" => OID_X509_EXT_KEY_USAGE,
        other => panic!("unknown extension {other}"),
    };
    cert.get_extension_unique(&oid).unwrap().is_some()
}

pub fn ext_critical(cert: &X509Certificate<'_>, which: &str) -> bool {
    let oid = match which {
        "bc" => OID_X509_EXT_BASIC_CONSTRAINTS,
        "ku" => OID_X509_EXT_KEY_USAGE,
        other => panic!("unknown extension {other}"),
    };
    cert.get_extension_unique(&oid).unwrap().unwrap().critical
}

pub fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Seconds since the Unix epoch now.
pub fn now_ts() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Permission bits of a file.
pub fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}
