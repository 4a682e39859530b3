//! Reading certificates back for humans: a summary of every certificate in a PEM
//! file, used by `certs inspect` and by tests.

use std::fmt;
use std::net::IpAddr;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::params::{self, format_time};
use crate::{pem, CertError};

/// The security-relevant facts of one certificate, as display strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject DN, e.g. `CN=demo`.
    pub subject: String,
    /// Issuer DN, e.g. `CN=Tether CA tether.local, O=Tether`.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// Whether basicConstraints marks it as a CA.
    pub is_ca: bool,
    /// URI SANs that are SPIFFE IDs (a valid SVID has exactly one).
    pub spiffe_ids: Vec<String>,
    /// All URI SANs.
    pub uri_sans: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// IP SANs.
    pub ip_sans: Vec<String>,
    /// Key usages by RFC 5280 name (`digitalSignature`, `keyCertSign`, ...).
    pub key_usage: Vec<String>,
    /// Extended key usages (`serverAuth`, `clientAuth`, or dotted OIDs).
    pub extended_key_usage: Vec<String>,
    /// Validity ended before now.
    pub expired: bool,
    /// Validity starts after now.
    pub not_yet_valid: bool,
}

/// Summarises every certificate in `pem` (other blocks such as keys are skipped);
/// fails if there is none or any is malformed.
pub fn inspect_pem(pem: &str) -> Result<Vec<CertSummary>, CertError> {
    pem::certificates(pem, "certificate file")?
        .iter()
        .map(|der| summarize(der))
        .collect()
}

/// Summarises one DER certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, CertError> {
    let (_, x509) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
        what: "certificate",
        reason: e.to_string(),
    })?;
    let now = params::now();
    let not_before = x509.validity().not_before.to_datetime();
    let not_after = x509.validity().not_after.to_datetime();

    let mut summary = CertSummary {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        serial: x509.raw_serial_as_string(),
        not_before: format_time(not_before),
        not_after: format_time(not_after),
        is_ca: x509.is_ca(),
        spiffe_ids: Vec::new(),
        uri_sans: Vec::new(),
        dns_sans: Vec::new(),
        ip_sans: Vec::new(),
        key_usage: Vec::new(),
        extended_key_usage: Vec::new(),
        expired: now > not_after,
        not_yet_valid: now < not_before,
    };

    for ext in x509.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    add_san(&mut summary, name);
                }
            }
            ParsedExtension::KeyUsage(ku) => {
                let flags = [
                    (ku.digital_signature(), "digitalSignature"),
                    (ku.non_repudiation(), "nonRepudiation"),
                    (ku.key_encipherment(), "keyEncipherment"),
                    (ku.data_encipherment(), "dataEncipherment"),
                    (ku.key_agreement(), "keyAgreement"),
                    (ku.key_cert_sign(), "keyCertSign"),
                    (ku.crl_sign(), "cRLSign"),
                    (ku.encipher_only(), "encipherOnly"),
                    (ku.decipher_only(), "decipherOnly"),
                ];
                summary.key_usage = flags
                    .into_iter()
                    .filter(|(set, _)| *set)
                    .map(|(_, name)| name.to_owned())
                    .collect();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let flags = [
                    (eku.any, "anyExtendedKeyUsage"),
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ];
                summary.extended_key_usage = flags
                    .into_iter()
                    .filter(|(set, _)| *set)
                    .map(|(_, name)| name.to_owned())
                    .chain(eku.other.iter().map(|oid| oid.to_id_string()))
                    .collect();
            }
            _ => {}
        }
    }
    Ok(summary)
}

fn add_san(summary: &mut CertSummary, name: &GeneralName<'_>) {
    match name {
        GeneralName::URI(uri) => {
            if uri.starts_with("spiffe://") {
                summary.spiffe_ids.push((*uri).to_owned());
            }
            summary.uri_sans.push((*uri).to_owned());
        }
        GeneralName::DNSName(dns) => summary.dns_sans.push((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => summary.ip_sans.push(format_ip(bytes)),
        _ => {}
    }
}

/// Renders a raw IP SAN; odd lengths (which no valid certificate has) as hex.
fn format_ip(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        IpAddr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        IpAddr::from(v6).to_string()
    } else {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("invalid({})", hex.join(":"))
    }
}

impl fmt::Display for CertSummary {
    /// The human form `certs inspect` prints: one labelled fact per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        let identity = match self.spiffe_ids.as_slice() {
            [] => "(no SPIFFE ID)".to_owned(),
            [one] => one.clone(),
            many => format!(
                "{} (INVALID SVID: {} SPIFFE IDs)",
                many.join(", "),
                many.len()
            ),
        };
        let status = match (self.expired, self.not_yet_valid) {
            (true, _) => "EXPIRED",
            (_, true) => "NOT YET VALID",
            _ => "valid now",
        };
        writeln!(f, "  Identity:     {identity}")?;
        writeln!(
            f,
            "  Role:         {}",
            if self.is_ca { "CA" } else { "leaf" }
        )?;
        writeln!(f, "  Subject:      {}", self.subject)?;
        writeln!(f, "  Issuer:       {}", self.issuer)?;
        writeln!(f, "  Serial:       {}", self.serial)?;
        writeln!(f, "  Not before:   {}", self.not_before)?;
        writeln!(f, "  Not after:    {}", self.not_after)?;
        writeln!(f, "  Status:       {status}")?;
        writeln!(f, "  URI SANs:     {}", list(&self.uri_sans))?;
        writeln!(f, "  DNS SANs:     {}", list(&self.dns_sans))?;
        writeln!(f, "  IP SANs:      {}", list(&self.ip_sans))?;
        writeln!(f, "  Key usage:    {}", list(&self.key_usage))?;
        write!(f, "  Ext. key use: {}", list(&self.extended_key_usage))
    }
}
