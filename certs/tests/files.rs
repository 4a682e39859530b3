//! File writing: permissions, refusal to overwrite, --force, directory creation.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use certs::{CertError, IdentityKind};
use common::*;

#[test]
fn ca_files_are_written_with_the_right_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("ca");
    let ca = ca();
    let (cert, key) = ca.write_files(&out, false).unwrap();
    assert_eq!(cert, out.join("ca.pem"));
    assert_eq!(key, out.join("ca.key"));
    assert_eq!(mode(&key), 0o600);
    // 0644 unless the umask is stricter; never more open than 0644.
    assert_eq!(mode(&cert) & !0o644, 0);
    assert_eq!(fs::read_to_string(&cert).unwrap(), ca.cert_pem());
    assert_eq!(fs::read_to_string(&key).unwrap(), ca.key_pem());
}

#[test]
fn existing_files_are_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    ca.write_files(dir.path(), false).unwrap();
    let other = common::ca();
    let err = other.write_files(dir.path(), false).unwrap_err();
    assert!(matches!(err, CertError::FileExists { .. }));
    assert!(
        err.to_string().contains("use --force to overwrite"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        ca.cert_pem()
    );

    // Only the key exists: still refused, and the certificate is not written either.
    let dir2 = tempfile::tempdir().unwrap();
    fs::write(dir2.path().join("ca.key"), "old").unwrap();
    assert!(ca.write_files(dir2.path(), false).is_err());
    assert!(!dir2.path().join("ca.pem").exists());

    other.write_files(dir.path(), true).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        other.cert_pem()
    );
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
}

#[test]
fn forced_overwrite_of_a_world_readable_key_still_yields_0600() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tunnel-demo.key");
    fs::write(&key, "old").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let leaf = issue(&ca(), IdentityKind::Tunnel, "demo");
    let err = leaf
        .write_files(dir.path(), "tunnel-demo", false)
        .unwrap_err();
    assert!(err.to_string().contains("use --force to overwrite"));
    let (cert_path, key_path) = leaf.write_files(dir.path(), "tunnel-demo", true).unwrap();
    assert_eq!(key_path, key);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(fs::read_to_string(&key).unwrap(), leaf.key_pem);
    assert_eq!(fs::read_to_string(&cert_path).unwrap(), leaf.cert_pem);
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn symlinks_are_not_followed_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.path().join("x.key")).unwrap();
    let leaf = issue(&ca(), IdentityKind::Caller, "x");
    assert!(matches!(
        leaf.write_files(dir.path(), "x", false),
        Err(CertError::FileExists { .. })
    ));
    assert!(!target.exists());
}

#[test]
fn stems_cannot_escape_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = issue(&ca(), IdentityKind::Caller, "x");
    for bad in ["", "../x", "a/b", ".hidden", ".."] {
        assert!(
            matches!(
                leaf.write_files(dir.path(), bad, false),
                Err(CertError::InvalidFileStem { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn unwritable_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    // A path under a regular file cannot be created.
    let err = ca().write_files(&file.join("sub"), false).unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err}");
}
