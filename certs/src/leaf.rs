//! Leaf SVIDs: what to issue ([`LeafSpec`]), issuing it, and the result ([`IssuedCert`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{self, OutFile, CERT_MODE, KEY_MODE};
use crate::identity::{spiffe_id, validate_dns_name, IdentityKind};
use crate::params::{self, CLOCK_SKEW};
use crate::{Ca, CertError};

/// Default leaf lifetime: short, so a leaked key is useful only briefly and
/// rotation becomes routine.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// What leaf to issue. Build it with [`LeafSpec::new`] and adjust fields; the
/// SPIFFE ID is always derived from the CA's trust domain, `kind` and `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// The role; decides the SPIFFE path prefix and the extended key usages.
    pub kind: IdentityKind,
    /// The identity name (a DNS label); also the subject CN.
    pub name: String,
    /// DNS SANs, for edges that clients reach by host name (e.g. "localhost").
    pub dns_names: Vec<String>,
    /// IP SANs, for edges reached by address.
    pub ip_addresses: Vec<IpAddr>,
    /// How long the leaf is valid, counted from `not_before` when that is set and
    /// from now otherwise (the default 5-minute backdate does not eat into it).
    pub lifetime: Duration,
    /// Start of validity; `None` means now minus 5 minutes (clock skew). Tests set
    /// it to build expired or not-yet-valid certificates.
    pub not_before: Option<OffsetDateTime>,
    /// End of validity; overrides `lifetime` when set.
    pub not_after: Option<OffsetDateTime>,
    /// Extra URI SANs added after the SPIFFE ID. ONLY for tests proving that peers
    /// refuse certificates with more than one URI SAN; the CLI never sets it and
    /// production code must not.
    pub extra_uri_sans: Vec<String>,
}

impl LeafSpec {
    /// A spec with safe defaults: 24h lifetime, backdated 5 minutes; edges also get
    /// `localhost`, `127.0.0.1` and `::1` so local development works out of the box.
    pub fn new(kind: IdentityKind, name: &str) -> LeafSpec {
        let (dns_names, ip_addresses) = match kind {
            IdentityKind::Edge => (
                vec!["localhost".to_owned()],
                vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
            ),
            IdentityKind::Tunnel | IdentityKind::Caller => (Vec::new(), Vec::new()),
        };
        LeafSpec {
            kind,
            name: name.to_owned(),
            dns_names,
            ip_addresses,
            lifetime: DEFAULT_LEAF_LIFETIME,
            not_before: None,
            not_after: None,
            extra_uri_sans: Vec::new(),
        }
    }

    /// The extended key usages for this kind: edges and tunnels both accept and
    /// initiate mTLS connections; callers only ever connect.
    pub(crate) fn extended_key_usages(&self) -> Vec<ExtendedKeyUsagePurpose> {
        match self.kind {
            IdentityKind::Edge | IdentityKind::Tunnel => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            IdentityKind::Caller => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }

    /// The conventional file stem for this leaf: `<kind>-<name>`.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.kind.path_segment(), self.name)
    }

    /// Resolves the validity window from the defaults and overrides.
    fn validity(&self) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
        let now = params::now();
        let not_before = match self.not_before {
            Some(t) => t,
            None => params::sub(now, CLOCK_SKEW)?,
        };
        let not_after = match self.not_after {
            Some(t) => t,
            None => {
                if self.lifetime.is_zero() {
                    return Err(CertError::InvalidValidity(
                        "leaf lifetime must be greater than zero".into(),
                    ));
                }
                params::add(self.not_before.unwrap_or(now), self.lifetime)?
            }
        };
        params::window(not_before, not_after)
    }
}

/// A freshly issued leaf: certificate and PKCS#8 private key, in PEM and DER,
/// ready for rustls or for writing to disk.
#[derive(Clone)]
pub struct IssuedCert {
    /// The SPIFFE ID in the certificate's URI SAN.
    pub spiffe_id: String,
    /// The leaf certificate (just the leaf; peers trust the CA directly).
    pub cert_pem: String,
    /// The private key as PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf certificate as DER.
    pub cert_der: Vec<u8>,
    /// The private key as PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for IssuedCert {
    /// Omits the private key so it never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `<stem>.pem` (0644) and `<stem>.key` (0600) into `dir`, creating it if
    /// needed; refuses to overwrite either file unless `force`.
    pub fn write_files(
        &self,
        dir: &Path,
        stem: &str,
        force: bool,
    ) -> Result<(PathBuf, PathBuf), CertError> {
        files::validate_stem(stem)?;
        let (cert_name, key_name) = (format!("{stem}.pem"), format!("{stem}.key"));
        files::write_set(
            dir,
            &[
                OutFile {
                    name: cert_name.clone(),
                    contents: &self.cert_pem,
                    mode: CERT_MODE,
                },
                OutFile {
                    name: key_name.clone(),
                    contents: &self.key_pem,
                    mode: KEY_MODE,
                },
            ],
            force,
        )?;
        Ok((dir.join(cert_name), dir.join(key_name)))
    }
}

/// Issues a leaf for `spec` signed by `ca`; every extension is set explicitly.
pub(crate) fn issue(ca: &Ca, spec: &LeafSpec) -> Result<IssuedCert, CertError> {
    let id = spiffe_id(ca.trust_domain(), spec.kind, &spec.name)?;
    for dns in &spec.dns_names {
        validate_dns_name(dns)?;
    }
    let (not_before, not_after) = spec.validity()?;
    if not_after > ca.not_after() {
        return Err(CertError::InvalidValidity(format!(
            "the leaf would expire at {} but the CA expires at {}; shorten the lifetime or rotate the CA",
            params::format_time(not_after),
            params::format_time(ca.not_after())
        )));
    }

    let mut p = CertificateParams::default();
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(params::random_serial()?);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, spec.name.as_str());

    let mut sans = vec![SanType::URI(id.as_str().try_into()?)];
    for uri in &spec.extra_uri_sans {
        sans.push(SanType::URI(uri.as_str().try_into()?));
    }
    for dns in &spec.dns_names {
        sans.push(SanType::DnsName(dns.as_str().try_into()?));
    }
    sans.extend(spec.ip_addresses.iter().copied().map(SanType::IpAddress));
    p.subject_alt_names = sans;

    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = spec.extended_key_usages();
    p.name_constraints = None;
    p.crl_distribution_points = Vec::new();
    p.custom_extensions = Vec::new();
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;

    let key = params::new_key_pair()?;
    let issuer = Issuer::from_params(ca.issuer_params(), ca.key());
    let cert = p.signed_by(&key, &issuer)?;

    // Chain building compares names byte for byte; catch a CA subject we could not
    // reproduce exactly here rather than as a baffling handshake failure later.
    let (_, x509) = X509Certificate::from_der(cert.der()).map_err(|e| CertError::Parse {
        what: "issued certificate",
        reason: e.to_string(),
    })?;
    if x509.issuer().as_raw() != ca.subject_raw() {
        return Err(CertError::NotACa(
            "its subject name cannot be reproduced exactly, so issued leaves would not chain to it"
                .into(),
        ));
    }

    Ok(IssuedCert {
        spiffe_id: id,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}
