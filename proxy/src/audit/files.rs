//! How the files of one chain are named and found.
//!
//! The live file is the configured path (`audit.log`). On rotation it is
//! renamed to `<path>.<counter>` with a zero-padded six-digit counter
//! starting at 1 (`audit.log.000001`, `audit.log.000002`, …), so the files
//! of a chain, oldest first, are the rotated ones in counter order followed
//! by the live file. Counters past 999999 simply grow wider; ordering is
//! numeric, not lexical.

use std::path::{Path, PathBuf};

/// Every file of the chain whose live file is `path`, oldest first: rotated
/// files in counter order, then `path` itself if it exists. This is the
/// argument [`super::verify_files`] expects for a whole chain. Unreadable
/// directories yield what could be listed (possibly nothing).
pub fn chain_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated_files(path).into_iter().map(|(_, p)| p).collect();
    if path.is_file() {
        files.push(path.to_path_buf());
    }
    files
}

/// The name a rotation with counter `n` gives the live file.
pub(super) fn rotated_name(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n:06}"));
    PathBuf::from(name)
}

/// Rotated files of `path` with their counters, in counter order.
pub(super) fn rotated_files(path: &Path) -> Vec<(u64, PathBuf)> {
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let dir = parent_dir(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let suffix = name.to_str()?.strip_prefix(base)?.strip_prefix('.')?;
            if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = suffix.parse().ok()?;
            Some((n, dir.join(&name)))
        })
        .collect();
    found.sort();
    found
}

/// The directory holding `path` (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("audit.log");
        assert!(chain_files(&live).is_empty());
        for n in [2u64, 10, 1, 1_000_000] {
            std::fs::write(rotated_name(&live, n), b"").unwrap();
        }
        // Not part of the chain: other suffixes and other logs.
        std::fs::write(dir.path().join("audit.log.bak"), b"").unwrap();
        std::fs::write(dir.path().join("audit.log."), b"").unwrap();
        std::fs::write(dir.path().join("other.log.000001"), b"").unwrap();
        std::fs::write(&live, b"").unwrap();
        let names: Vec<String> = chain_files(&live)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "audit.log.000001",
                "audit.log.000002",
                "audit.log.000010",
                "audit.log.1000000",
                "audit.log"
            ]
        );
    }
}
