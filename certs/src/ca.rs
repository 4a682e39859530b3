//! The certificate authority of one SPIFFE trust domain: creating it, loading it
//! back from PEM, and writing it out. Issuing leaves lives in `leaf.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyIdMethod,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{self, OutFile, CERT_MODE, KEY_MODE};
use crate::identity::{trust_domain_id, validate_trust_domain};
use crate::leaf::{self, IssuedCert, LeafSpec};
use crate::params::{self, CLOCK_SKEW};
use crate::{pem, CertError};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Default CA lifetime (365 days): long enough to be set-and-forget for a
/// deployment, short enough that CA rotation is still practised.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Organization (O) placed in the CA subject.
pub const CA_ORGANIZATION: &str = "Tether";

/// A trust domain's CA: its certificate and signing key. It is the root every
/// Tether peer trusts, and it signs leaves directly (path length 0).
pub struct Ca {
    trust_domain: String,
    key: KeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// Subject DN and key identifier of the CA, as rcgen needs them to sign.
    issuer_params: CertificateParams,
    /// The CA subject exactly as encoded, to check issued leaves chain by bytes.
    subject_raw: Vec<u8>,
    not_after: OffsetDateTime,
}

impl fmt::Debug for Ca {
    /// Shows the trust domain only; the private key must never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &params::format_time(self.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new self-signed CA for `trust_domain`, valid from 5 minutes ago
    /// (clock skew) until `lifetime` from now.
    pub fn create(trust_domain: &str, lifetime: Duration) -> Result<Ca, CertError> {
        validate_trust_domain(trust_domain)?;
        if lifetime.is_zero() {
            return Err(CertError::InvalidValidity(
                "CA lifetime must be greater than zero".into(),
            ));
        }
        let now = params::now();
        let mut p = CertificateParams::default();
        (p.not_before, p.not_after) =
            params::window(params::sub(now, CLOCK_SKEW)?, params::add(now, lifetime)?)?;
        p.serial_number = Some(params::random_serial()?);
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("Tether CA {trust_domain}"));
        p.distinguished_name
            .push(DnType::OrganizationName, CA_ORGANIZATION);
        p.subject_alt_names = vec![SanType::URI(trust_domain_id(trust_domain)?.try_into()?)];
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.extended_key_usages = Vec::new();
        p.name_constraints = None;
        p.crl_distribution_points = Vec::new();
        p.custom_extensions = Vec::new();
        p.use_authority_key_identifier_extension = false;
        p.key_identifier_method = KeyIdMethod::Sha256;

        let key = params::new_key_pair()?;
        let cert = p.self_signed(&key)?;
        // Go through the same checks as a loaded CA, so both paths behave alike.
        Ca::from_der(cert.der().to_vec(), key)
    }

    /// Loads a CA from PEM text, reading the trust domain back from the
    /// certificate's single `spiffe://<td>` URI SAN and checking the key matches.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let certs = pem::certificates(cert_pem, "CA certificate")?;
        if certs.len() != 1 {
            return Err(CertError::NotACa(format!(
                "expected exactly one certificate in the CA file, found {}",
                certs.len()
            )));
        }
        let key_der = pem::private_key(key_pem, "CA private key")?;
        let key = KeyPair::try_from(&key_der).map_err(|_| {
            CertError::Key(
                "expected an unencrypted PKCS#8 ECDSA P-256 key ('BEGIN PRIVATE KEY')".into(),
            )
        })?;
        let der = certs
            .into_iter()
            .next()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        Ca::from_der(der, key)
    }

    /// Loads a CA from a certificate file and a key file (e.g. `ca.pem`, `ca.key`).
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
        let cert_pem = files::read_to_string(cert_path)?;
        let key_pem = files::read_to_string(key_path)?;
        Ca::load(&cert_pem, &key_pem)
    }

    /// Loads `ca.pem` and `ca.key` from a directory written by [`Ca::write_files`].
    pub fn load_dir(dir: &Path) -> Result<Ca, CertError> {
        Ca::load_files(&dir.join(CA_CERT_FILE), &dir.join(CA_KEY_FILE))
    }

    /// The trust domain this CA vouches for; every leaf it issues lives in it.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate as PEM: the trust bundle peers configure.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate as DER, for building rustls root stores directly.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// The CA private key as PKCS#8 PEM. Keep it secret; tests also use it to
    /// present the CA itself as a (deliberately bad) leaf.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// When the CA stops being valid; leaves may not outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues a leaf SVID for `spec`, signed by this CA. See [`LeafSpec`].
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCert, CertError> {
        leaf::issue(self, spec)
    }

    /// Writes `ca.pem` (0644) and `ca.key` (0600) into `dir`, creating it if needed;
    /// refuses to overwrite either file unless `force`.
    pub fn write_files(&self, dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), CertError> {
        let key_pem = self.key_pem();
        files::write_set(
            dir,
            &[
                OutFile {
                    name: CA_CERT_FILE.into(),
                    contents: &self.cert_pem,
                    mode: CERT_MODE,
                },
                OutFile {
                    name: CA_KEY_FILE.into(),
                    contents: &key_pem,
                    mode: KEY_MODE,
                },
            ],
            force,
        )?;
        Ok((dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE)))
    }

    /// The signing key, for `leaf.rs`.
    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The issuer DN and key identifier, for `leaf.rs`.
    pub(crate) fn issuer_params(&self) -> &CertificateParams {
        &self.issuer_params
    }

    /// The CA subject as encoded in its certificate, for `leaf.rs`'s chaining check.
    pub(crate) fn subject_raw(&self) -> &[u8] {
        &self.subject_raw
    }

    /// Validates a CA certificate and key and assembles a [`Ca`].
    fn from_der(cert_der: Vec<u8>, key: KeyPair) -> Result<Ca, CertError> {
        let (_, x509) = X509Certificate::from_der(&cert_der).map_err(|e| CertError::Parse {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let not_a_ca = |msg: String| CertError::NotACa(msg);

        let bc = x509
            .basic_constraints()
            .map_err(|e| not_a_ca(format!("bad basicConstraints: {e}")))?;
        if !bc.is_some_and(|bc| bc.value.ca) {
            return Err(not_a_ca("basicConstraints does not mark it as a CA".into()));
        }
        let ku = x509
            .key_usage()
            .map_err(|e| not_a_ca(format!("bad keyUsage: {e}")))?;
        if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(not_a_ca("keyUsage lacks keyCertSign".into()));
        }
        let trust_domain = trust_domain_of(&x509)?;

        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CertError::Key("the CA key must be ECDSA P-256".into()));
        }
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(CertError::KeyMismatch);
        }

        let key_identifier_method = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        let mut issuer_params = CertificateParams::default();
        issuer_params.distinguished_name = distinguished_name(&x509)?;
        issuer_params.key_identifier_method = key_identifier_method;

        let subject_raw = x509.subject().as_raw().to_vec();
        let not_after = x509.validity().not_after.to_datetime();
        let cert_pem = pem::encode("CERTIFICATE", &cert_der);
        Ok(Ca {
            trust_domain,
            key,
            cert_der,
            cert_pem,
            issuer_params,
            subject_raw,
            not_after,
        })
    }
}

/// Reads the trust domain from the CA's single URI SAN, which must be `spiffe://<td>`.
fn trust_domain_of(x509: &X509Certificate<'_>) -> Result<String, CertError> {
    let san = x509
        .subject_alternative_name()
        .map_err(|e| CertError::NotACa(format!("bad subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(CertError::NotACa(format!(
            "expected exactly one URI SAN spiffe://<trust-domain>, found {}",
            uris.len()
        )));
    };
    let td = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| CertError::NotACa(format!("URI SAN {uri:?} is not a spiffe:// URI")))?;
    validate_trust_domain(td).map_err(|e| {
        CertError::NotACa(format!("URI SAN {uri:?} does not name a trust domain: {e}"))
    })?;
    Ok(td.to_owned())
}

/// Rebuilds the CA subject for rcgen with the same attribute order and string
/// types, so issued leaves' issuer names match the CA subject byte for byte.
fn distinguished_name(x509: &X509Certificate<'_>) -> Result<DistinguishedName, CertError> {
    use x509_parser::der_parser::asn1_rs::Tag;

    let unsupported = |what: &str| CertError::NotACa(format!("unsupported subject: {what}"));
    let mut dn = DistinguishedName::new();
    for rdn in x509.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(unsupported("each RDN must hold exactly one attribute"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("attribute type OID too large"))?
            .collect();
        let dn_type = DnType::from_oid(&oid);
        if dn.get(&dn_type).is_some() {
            return Err(unsupported("repeated attribute type"));
        }
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data).map_err(|_| unsupported("attribute is not UTF-8"))?;
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            _ => {
                return Err(unsupported(
                    "attribute string type (use UTF8String or PrintableString)",
                ))
            }
        };
        dn.push(dn_type, value);
    }
    Ok(dn)
}
