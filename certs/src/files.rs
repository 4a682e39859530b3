//! Writing certificate and key files safely: keys are created 0600 (never chmod'ed
//! afterwards), nothing is overwritten without `force`, and forced overwrites are
//! atomic renames so a reloading process never reads a half-written file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::CertError;

/// Permissions for certificates: public material, readable by everyone.
pub const CERT_MODE: u32 = 0o644;
/// Permissions for private keys: readable by the owner only.
pub const KEY_MODE: u32 = 0o600;

/// One file to write: name inside the output directory, contents and mode.
pub(crate) struct OutFile<'a> {
    pub name: String,
    pub contents: &'a str,
    pub mode: u32,
}

/// Writes a set of files into `dir` (created if missing). Without `force`, every
/// target is checked first so a refusal leaves nothing half-written.
pub(crate) fn write_set(dir: &Path, files: &[OutFile<'_>], force: bool) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|e| CertError::io("create directory", dir, e))?;
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(&f.name)).collect();
    if !force {
        for path in &paths {
            refuse_existing(path)?;
        }
    }
    for (file, path) in files.iter().zip(&paths) {
        if force {
            replace(path, file.contents, file.mode)?;
        } else {
            create_new(path, file.contents, file.mode)?;
        }
    }
    Ok(())
}

/// Fails with "use --force to overwrite" if anything (even a dangling symlink) is at `path`.
pub(crate) fn refuse_existing(path: &Path) -> Result<(), CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CertError::FileExists {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CertError::io("check", path, e)),
    }
}

/// Creates `path` exclusively with `mode`; an existing file is an error, atomically.
fn create_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CertError::FileExists {
                path: path.to_path_buf(),
            },
            _ => CertError::io("create", path, e),
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CertError::io("write", path, e))
}

/// Replaces `path` by writing a fresh temporary file with `mode` next to it and
/// renaming it over the target, so the old mode never leaks onto a new key.
fn replace(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    // A stale temporary from a crashed run would make create_new fail; it is ours to remove.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(CertError::io("remove stale temporary file", &tmp, e));
        }
        _ => {}
    }
    if let Err(e) = create_new(&tmp, contents, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CertError::io("replace", path, e)
    })
}

/// Reads a whole text file, naming the path in the error.
pub(crate) fn read_to_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("read", path, e))
}

/// Checks a file stem (`tunnel-demo`) is a plain file name, so `write_files`
/// cannot be tricked into writing outside its directory.
pub(crate) fn validate_stem(stem: &str) -> Result<(), CertError> {
    let bad = |reason| {
        Err(CertError::InvalidFileStem {
            value: stem.to_owned(),
            reason,
        })
    };
    if stem.is_empty() {
        return bad("must not be empty");
    }
    if stem.starts_with('.') {
        return bad("must not start with '.'");
    }
    if stem.contains('/') || stem.contains('\0') {
        return bad("must be a plain file name without '/'");
    }
    Ok(())
}
