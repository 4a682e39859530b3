//! Live TLS credentials: this process's certificate, key and trust bundle,
//! swapped in while connections stay up.
//!
//! Every TLS config Tether builds resolves its own certificate
//! ([`CurrentCert`]) and verifies peers (`tls`) through one [`Credentials`],
//! so a reload changes what the *next* handshake presents and trusts while
//! established connections and their streams carry on untouched. A reload
//! is all or nothing: the three files are read, parsed, checked against one
//! another (key matches certificate, certificate not expired, same SPIFFE
//! ID as before) and only then swapped in; anything wrong is refused with
//! the reason and the old material stays in force.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::identity::leaf_facts;
use crate::tls::{load_identity, load_trust_bundle, provider, TlsError, TlsIdentity};

/// Where the credentials are reloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// PEM CA certificates peers must chain to.
    pub trust_bundle: PathBuf,
}

/// One consistent set of credentials, with the verifiers built from it.
#[derive(Debug)]
pub struct Material {
    /// Certificate chain, key and identity.
    pub identity: TlsIdentity,
    /// The chain and signing key as rustls presents them.
    pub certified: Arc<CertifiedKey>,
    /// The trust bundle.
    pub roots: Arc<RootCertStore>,
    /// webpki's client verifier over `roots` (the SPIFFE rule is added by
    /// `tls::SpiffeClientVerifier`).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    /// webpki's server verifier over `roots`.
    pub server_verifier: Arc<WebPkiServerVerifier>,
    /// When the leaf expires.
    pub not_after: SystemTime,
}

impl Material {
    /// Checks and assembles one set.
    pub fn new(identity: TlsIdentity, roots: Arc<RootCertStore>) -> Result<Self, TlsError> {
        let leaf = identity
            .chain
            .first()
            .ok_or_else(|| TlsError::Config("certificate chain is empty".into()))?;
        let facts = leaf_facts(leaf).map_err(|e| TlsError::Config(e.to_string()))?;
        let certified = CertifiedKey::from_der(
            identity.chain.clone(),
            identity.key.clone_key(),
            &provider(),
        )
        .map_err(|e| {
            TlsError::Config(format!(
                "the private key does not go with the certificate: {e}"
            ))
        })?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self {
            identity,
            certified: Arc::new(certified),
            roots,
            client_verifier,
            server_verifier,
            not_after: facts.not_after,
        })
    }
}

type Fingerprints = [Option<crate::policy::reload::Fingerprint>; 3];

/// The live credentials of a process.
#[derive(Debug)]
pub struct Credentials {
    current: RwLock<Arc<Material>>,
    files: Option<TlsFiles>,
    loaded_from: Mutex<Fingerprints>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl Credentials {
    /// Credentials that never change (tests, embedded set-ups).
    pub fn fixed(identity: TlsIdentity, roots: Arc<RootCertStore>) -> Result<Arc<Self>, TlsError> {
        Self::new(identity, roots, None)
    }

    /// Credentials loaded from `files`, reloadable from them; `identity`
    /// and `roots` are what was loaded at start.
    pub fn new(
        identity: TlsIdentity,
        roots: Arc<RootCertStore>,
        files: Option<TlsFiles>,
    ) -> Result<Arc<Self>, TlsError> {
        let loaded_from = files.as_ref().map(fingerprints).unwrap_or_default();
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(Material::new(identity, roots)?)),
            files,
            loaded_from: Mutex::new(loaded_from),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// The material the next handshake uses.
    pub fn current(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The files reloaded from, if any.
    pub fn files(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    /// Successful reloads so far.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Refused reloads so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Re-reads the files and swaps them in if every check passes; on any
    /// problem the old material stays and the reason is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        self.set_fingerprints(fingerprints(files));
        match self.load(files) {
            Ok(m) => {
                let new = Arc::new(m);
                match self.current.write() {
                    Ok(mut cur) => *cur = new,
                    Err(poisoned) => *poisoned.into_inner() = new,
                }
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn load(&self, files: &TlsFiles) -> Result<Material, TlsError> {
        let identity = load_identity(&files.cert, &files.key)?;
        let roots = load_trust_bundle(&files.trust_bundle)?;
        let old = self.current();
        if identity.id != old.identity.id {
            return Err(TlsError::Config(format!(
                "{}: the new certificate is for {} but this process is {}; an identity change needs a restart",
                files.cert.display(),
                identity.id,
                old.identity.id
            )));
        }
        let material = Material::new(identity, roots)?;
        if material.not_after <= SystemTime::now() {
            return Err(TlsError::Config(format!(
                "{}: the new certificate has already expired",
                files.cert.display()
            )));
        }
        Ok(material)
    }

    /// Whether any file changed since it was last examined.
    pub fn files_changed(&self) -> bool {
        match &self.files {
            Some(f) => fingerprints(f) != self.fingerprints(),
            None => false,
        }
    }

    fn fingerprints(&self) -> Fingerprints {
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_fingerprints(&self, f: Fingerprints) {
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
    }
}

fn fingerprints(files: &TlsFiles) -> Fingerprints {
    use crate::policy::reload::fingerprint;
    [
        fingerprint(&files.cert),
        fingerprint(&files.key),
        fingerprint(&files.trust_bundle),
    ]
}

/// Presents whatever certificate the credentials hold now, as server and
/// as client.
#[derive(Debug, Clone)]
pub struct CurrentCert(pub Arc<Credentials>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// How often the files are checked for changes. A Kubernetes Secret
/// update lands as one atomic symlink swap of all three files.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

fn reload_now(creds: &Credentials, why: &str, path: &Path) {
    match creds.reload() {
        Ok(()) => {
            let m = creds.current();
            let expires = crate::audit::rfc3339_utc(m.not_after);
            info!(trigger = why, cert = %path.display(), identity = %m.identity.id, %expires, "TLS credentials reloaded; new handshakes use them");
        }
        Err(e) => error!(
            trigger = why,
            error = %e,
            failures = creds.failures(),
            "TLS credentials reload refused; the previous certificate, key and trust bundle stay in force"
        ),
    }
}

/// Runs until `cancel`: reloads on SIGHUP and when a file changes.
pub async fn watch(creds: Arc<Credentials>, interval: Duration, cancel: CancellationToken) {
    let Some(cert) = creds.files().map(|f| f.cert.clone()) else {
        return;
    };
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<()>();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sighup => reload_now(&creds, "SIGHUP", &cert),
            _ = tokio::time::sleep(interval) => {
                if creds.files_changed() {
                    reload_now(&creds, "file change", &cert);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
