//! Reload semantics: a good set swaps in, every kind of bad set is refused
//! with the old material kept, and the watcher picks up a file change.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certs::{Ca, IdentityKind, LeafSpec};

use super::*;
use crate::identity::leaf_facts;

struct Dir {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Dir {
    fn new() -> Self {
        let ca = Ca::create("tether.test", Duration::from_secs(3600)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let d = Self { dir, ca };
        d.issue("tunnel-a", Duration::from_secs(600));
        d
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.path("cert.pem"),
            key: self.path("key.pem"),
            trust_bundle: self.path("ca.pem"),
        }
    }

    /// Writes a new leaf for `name` over cert.pem/key.pem.
    fn issue(&self, name: &str, lifetime: Duration) {
        let mut spec = LeafSpec::new(IdentityKind::Tunnel, name);
        spec.lifetime = lifetime;
        let leaf = self.ca.issue(&spec).unwrap();
        write(&self.path("cert.pem"), &leaf.cert_pem);
        write(&self.path("key.pem"), &leaf.key_pem);
    }

    fn credentials(&self) -> Arc<Credentials> {
        let f = self.files();
        let identity = load_identity(&f.cert, &f.key).unwrap();
        let roots = load_trust_bundle(&f.trust_bundle).unwrap();
        Credentials::new(identity, roots, Some(f)).unwrap()
    }
}

/// Writes through a temporary file and a rename, as Kubernetes and most
/// rotation tools do, so a reader never sees half a file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn serial(creds: &Credentials) -> Vec<u8> {
    leaf_facts(&creds.current().identity.chain[0])
        .unwrap()
        .serial
}

fn resolved_serial(creds: &Arc<Credentials>) -> Vec<u8> {
    let key = ResolvesClientCert::resolve(&CurrentCert(creds.clone()), &[], &[]).unwrap();
    leaf_facts(&key.cert[0]).unwrap().serial
}

#[test]
fn a_new_certificate_is_presented_after_reload() {
    let d = Dir::new();
    let creds = d.credentials();
    let before = serial(&creds);
    assert_eq!(resolved_serial(&creds), before);
    d.issue("tunnel-a", Duration::from_secs(900));
    assert!(creds.files_changed());
    creds.reload().unwrap();
    assert_ne!(serial(&creds), before);
    assert_eq!(resolved_serial(&creds), serial(&creds));
    assert_eq!((creds.reloads(), creds.failures()), (1, 0));
    assert!(!creds.files_changed());
}

fn assert_refused(d: &Dir, creds: &Credentials, expect: &str) {
    let before = serial(creds);
    let err = creds.reload().unwrap_err().to_string();
    assert!(
        err.contains(expect),
        "error '{err}' should mention '{expect}'"
    );
    assert_eq!(serial(creds), before, "the old certificate stays in force");
    let _ = d;
}

#[test]
fn a_garbled_certificate_is_refused_and_the_old_one_stays() {
    let d = Dir::new();
    let creds = d.credentials();
    write(&d.path("cert.pem"), "not a certificate");
    assert_refused(&d, &creds, "cert.pem");
    assert_eq!(creds.failures(), 1);
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let d = Dir::new();
    let creds = d.credentials();
    let mut spec = LeafSpec::new(IdentityKind::Tunnel, "tunnel-a");
    spec.lifetime = Duration::from_secs(600);
    let other = d.ca.issue(&spec).unwrap();
    write(&d.path("key.pem"), &other.key_pem);
    assert_refused(&d, &creds, "does not go with the certificate");
}

#[test]
fn a_changed_identity_is_refused() {
    let d = Dir::new();
    let creds = d.credentials();
    d.issue("tunnel-b", Duration::from_secs(600));
    assert_refused(&d, &creds, "identity change needs a restart");
}

#[test]
fn an_unreadable_trust_bundle_is_refused() {
    let d = Dir::new();
    let creds = d.credentials();
    std::fs::remove_file(d.path("ca.pem")).unwrap();
    assert_refused(&d, &creds, "ca.pem");
}

#[test]
fn an_expired_certificate_is_refused() {
    let d = Dir::new();
    let creds = d.credentials();
    let mut spec = LeafSpec::new(IdentityKind::Tunnel, "tunnel-a");
    let now = time::OffsetDateTime::now_utc();
    spec.not_before = Some(now - time::Duration::hours(2));
    spec.not_after = Some(now - time::Duration::hours(1));
    let leaf = d.ca.issue(&spec).unwrap();
    write(&d.path("cert.pem"), &leaf.cert_pem);
    write(&d.path("key.pem"), &leaf.key_pem);
    assert_refused(&d, &creds, "already expired");
}

#[tokio::test]
async fn the_watcher_reloads_on_file_change() {
    let d = Dir::new();
    let creds = d.credentials();
    let before = serial(&creds);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watch(
        creds.clone(),
        Duration::from_millis(20),
        cancel.clone(),
    ));
    d.issue("tunnel-a", Duration::from_secs(1200));
    tokio::time::timeout(Duration::from_secs(10), async {
        while creds.reloads() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watcher should reload within 10 s");
    assert_ne!(serial(&creds), before);
    cancel.cancel();
    task.await.unwrap();
}
