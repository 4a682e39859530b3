//! Tether's certificate authority.
//!
//! This crate owns Tether's identities: it creates the CA of a SPIFFE trust
//! domain and issues SPIFFE-style X.509 SVIDs (`spiffe://<td>/tunnel/<name>`,
//! `/edge/<name>`, `/caller/<name>`) with ECDSA P-256 keys. Every certificate
//! field is set explicitly (rcgen's defaults are not safe), the CA carries no
//! name constraints (rustls-webpki rejects URI name constraints), and private
//! keys are written `0600`. It also owns the naming rules (trust domains, names)
//! that the rest of Tether uses to read identities back out of certificates.
//!
//! The `certs` binary wraps this library; see `docs/certs.md`.
//!
//! ```
//! use certs::{Ca, IdentityKind, LeafSpec};
//! use std::time::Duration;
//!
//! let ca = Ca::create("tether.local", Duration::from_secs(3600))?;
//! let mut spec = LeafSpec::new(IdentityKind::Tunnel, "demo");
//! spec.lifetime = Duration::from_secs(600);
//! let leaf = ca.issue(&spec)?;
//! assert_eq!(leaf.spiffe_id, "spiffe://tether.local/tunnel/demo");
//! # Ok::<(), certs::CertError>(())
//! ```

mod ca;
mod error;
mod files;
mod identity;
mod inspect;
mod leaf;
mod params;
mod pem;

pub use ca::{Ca, CA_CERT_FILE, CA_KEY_FILE, CA_ORGANIZATION, DEFAULT_CA_LIFETIME};
pub use error::CertError;
pub use files::{CERT_MODE, KEY_MODE};
pub use identity::{
    spiffe_id, trust_domain_id, validate_dns_name, validate_name, validate_trust_domain,
    IdentityKind, SpiffeId,
};
pub use inspect::{inspect_pem, summarize, CertSummary};
pub use leaf::{IssuedCert, LeafSpec, DEFAULT_LEAF_LIFETIME};
pub use params::CLOCK_SKEW;
