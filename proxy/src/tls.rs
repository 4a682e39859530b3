//! TLS for every Tether listener and dialer: rustls with the ring provider,
//! TLS 1.3 only, mutual authentication, and SPIFFE identity rules enforced
//! on top of webpki chain verification.
//!
//! Every config reads its certificate and trust bundle from a
//! [`Credentials`] at each handshake, so credentials reload live.
//! The verifiers here wrap rustls' webpki verifiers: the chain, validity
//! window and key usage are checked by webpki first, then [`IdentityRule`]
//! demands exactly one SPIFFE URI SAN in the right trust domain (and kind).
//! A refusal carries the reason so the accepting side can log it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::credentials::{Credentials, CurrentCert};
use crate::identity::{spiffe_id_from_cert, IdentityRule, SpiffeId};

/// Why TLS material could not be loaded or a config built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file concerned.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The process's own certificate carries no valid identity.
    #[error("own certificate {path}: {source}")]
    OwnIdentity {
        /// The certificate file.
        path: String,
        /// Why its identity is unusable.
        source: crate::identity::IdentityError,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// This process's certificate chain, key and the identity they prove.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Leaf first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The SPIFFE ID of the leaf.
    pub id: SpiffeId,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            id: self.id.clone(),
        }
    }
}

/// The crypto provider every Tether TLS config uses (ring), so the choice is
/// made once.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_err(path, e))
}

/// Loads a certificate chain and key from PEM files and reads the identity
/// from the leaf, so a misissued certificate fails at start, not at the
/// first handshake.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<TlsIdentity, TlsError> {
    identity_from_pem(&read(cert_path)?, &read(key_path)?).map_err(|e| match e {
        TlsError::File { path, reason } if path == CERT => file_err(cert_path, reason),
        TlsError::File { path, reason } if path == KEY => file_err(key_path, reason),
        TlsError::OwnIdentity { source, .. } => TlsError::OwnIdentity {
            path: cert_path.display().to_string(),
            source,
        },
        other => other,
    })
}

const CERT: &str = "certificate PEM";
const KEY: &str = "private key PEM";

/// Like [`load_identity`], from PEM bytes (tests and embedded set-ups).
pub fn identity_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
    let cert_err = |reason: String| TlsError::File {
        path: CERT.into(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| cert_err("no CERTIFICATE block found".into()))?;
    let id = spiffe_id_from_cert(leaf).map_err(|source| TlsError::OwnIdentity {
        path: CERT.into(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::File {
        path: KEY.into(),
        reason: e.to_string(),
    })?;
    Ok(TlsIdentity { chain, key, id })
}

/// Loads the CA certificates a process trusts for its peers.
pub fn load_trust_bundle(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    roots_from_pem(&read(path)?).map_err(|e| match e {
        TlsError::File { reason, .. } => file_err(path, reason),
        other => other,
    })
}

/// Like [`load_trust_bundle`], from PEM bytes.
pub fn roots_from_pem(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let err = |reason: String| TlsError::File {
        path: "trust bundle".into(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("trust bundle holds no certificate".into()));
    }
    Ok(Arc::new(roots))
}

fn identity_refusal(err: crate::identity::IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// Verifies client certificates: webpki chain and validity against the
/// trust bundle the credentials hold now, then the SPIFFE identity rule.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    creds: Arc<Credentials>,
    rule: IdentityRule,
}

impl SpiffeClientVerifier {
    /// Builds a verifier that requires a client certificate chained to the
    /// current trust bundle of `creds` whose identity satisfies `rule`.
    pub fn new(creds: Arc<Credentials>, rule: IdentityRule) -> Self {
        Self { creds, rule }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The trust bundle can change under a live config, so no hints are
        // sent; Tether clients present their one certificate regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.creds
            .current()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        self.rule.check(end_entity).map_err(identity_refusal)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.creds
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.creds
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.creds
            .current()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// Verifies server certificates: webpki chain, validity and DNS/IP name
/// against the current trust bundle, then the SPIFFE identity rule.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    creds: Arc<Credentials>,
    rule: IdentityRule,
}

impl SpiffeServerVerifier {
    /// Builds a verifier for servers chained to the current trust bundle of
    /// `creds` whose identity satisfies `rule`.
    pub fn new(creds: Arc<Credentials>, rule: IdentityRule) -> Self {
        Self { creds, rule }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.creds.current().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.rule.check(end_entity).map_err(identity_refusal)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.creds
            .current()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.creds
            .current()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.creds
            .current()
            .server_verifier
            .supported_verify_schemes()
    }
}

/// A TLS 1.3 server config that requires a client certificate satisfying
/// `rule`, offering the given ALPN protocols, with fixed credentials.
pub fn server_config(
    identity: &TlsIdentity,
    roots: Arc<RootCertStore>,
    rule: IdentityRule,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    server_config_live(&Credentials::fixed(identity.clone(), roots)?, rule, alpn)
}

/// [`server_config`] presenting and trusting whatever `creds` holds at each
/// handshake, so a reload needs no new config.
pub fn server_config_live(
    creds: &Arc<Credentials>,
    rule: IdentityRule,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = Arc::new(SpiffeClientVerifier::new(creds.clone(), rule));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(CurrentCert(creds.clone())));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // 0-RTT data can be replayed; nothing in Tether is safe to replay.
    cfg.max_early_data_size = 0;
    // No resumption: a resumed session would carry the certificate of the
    // session it resumes, so a peer that rotated its certificate, or whose
    // certificate expired or was revoked, would not be judged by the one
    // it holds now. Every connection is a full handshake against the
    // current trust bundle (connections are long-lived; the cost is one
    // signature per connection).
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// A TLS 1.3 client config presenting `identity` and requiring a server
/// certificate satisfying `rule`, with fixed credentials.
pub fn client_config(
    identity: &TlsIdentity,
    roots: Arc<RootCertStore>,
    rule: IdentityRule,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    client_config_live(&Credentials::fixed(identity.clone(), roots)?, rule, alpn)
}

/// [`client_config`] presenting and trusting whatever `creds` holds at
/// each handshake.
pub fn client_config_live(
    creds: &Arc<Credentials>,
    rule: IdentityRule,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = Arc::new(SpiffeServerVerifier::new(creds.clone(), rule));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(CurrentCert(creds.clone())));
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.enable_early_data = false;
    // See server_config_live: every connection presents the current
    // certificate in a full handshake.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}

/// The leaf certificate a QUIC peer authenticated with.
pub fn quic_peer_leaf(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().cloned()
}

/// The [`crate::identity::LeafFacts`] (expiry, serial) of a QUIC peer.
pub fn quic_peer_facts(conn: &quinn::Connection) -> Option<crate::identity::LeafFacts> {
    crate::identity::leaf_facts(&quic_peer_leaf(conn)?).ok()
}

/// The [`crate::identity::LeafFacts`] of a TLS-over-TCP peer.
pub fn tls_peer_facts(conn: &rustls::ServerConnection) -> Option<crate::identity::LeafFacts> {
    crate::identity::leaf_facts(conn.peer_certificates()?.first()?).ok()
}

/// The verified identity of a QUIC peer. The handshake already enforced the
/// rule; this reads the result back for routing and authorisation.
pub fn quic_peer_id(conn: &quinn::Connection) -> Option<SpiffeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    spiffe_id_from_cert(certs.first()?).ok()
}

/// The verified identity of a TLS-over-TCP peer.
pub fn tls_peer_id(conn: &rustls::ServerConnection) -> Option<SpiffeId> {
    spiffe_id_from_cert(conn.peer_certificates()?.first()?).ok()
}
