//! The one error type the library returns.
//!
//! Every message is complete on its own (underlying causes are folded into the
//! text rather than chained as `source`), so printing it once is enough.

use std::path::PathBuf;

/// Everything that can go wrong while validating names, building certificates or
/// touching certificate files. Callers match on it to give users a precise hint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A SPIFFE trust domain broke the naming rules.
    #[error("invalid trust domain {value:?}: {reason}")]
    InvalidTrustDomain {
        /// The rejected input.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// An identity name broke the DNS-label rules.
    #[error("invalid name {value:?}: {reason}")]
    InvalidName {
        /// The rejected input.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// A string was not a Tether SPIFFE ID (`spiffe://<td>/<kind>/<name>`).
    #[error("invalid SPIFFE ID {value:?}: {reason}")]
    InvalidSpiffeId {
        /// The rejected input.
        value: String,
        /// What was wrong with it.
        reason: &'static str,
    },

    /// A DNS subject alternative name was malformed.
    #[error("invalid DNS name {value:?}: {reason}")]
    InvalidDnsName {
        /// The rejected input.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// An output file stem would escape the output directory or is empty.
    #[error("invalid file name stem {value:?}: {reason}")]
    InvalidFileStem {
        /// The rejected input.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// The requested validity window is empty, overflows, or outlives the CA.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),

    /// Input that should have held PEM data did not.
    #[error("bad PEM in {what}: {reason}")]
    Pem {
        /// What was being read (e.g. "CA certificate").
        what: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// A certificate's DER could not be parsed as X.509.
    #[error("cannot parse {what} as an X.509 certificate: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },

    /// A certificate offered as a CA is not usable as a Tether CA.
    #[error("not a usable Tether CA certificate: {0}")]
    NotACa(String),

    /// A private key could not be loaded or is of an unsupported kind.
    #[error("unusable private key: {0}")]
    Key(String),

    /// The CA private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate")]
    KeyMismatch,

    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// An output file exists and overwriting was not requested.
    #[error("{} already exists; use --force to overwrite", path.display())]
    FileExists {
        /// The file that would have been overwritten.
        path: PathBuf,
    },

    /// A filesystem operation failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being attempted ("read", "create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error (already part of the message, so not a `source`).
        error: std::io::Error,
    },
}

impl CertError {
    /// Wraps an I/O error with the action and path, so messages say what failed where.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            error,
        }
    }
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError::Generate(e)
    }
}
