//! The readiness report behind both binaries' `run --ready-file`: once a
//! process is ready (every listener bound; for the client, the tunnel
//! connected), it writes the addresses it actually bound as one JSON
//! object. Supervisors, scripts and the bench harness can then start it on
//! port 0 and learn its ports without parsing logs or guessing.
//!
//! `-` writes the object as one line on stdout (a parent reading the pipe
//! learns both *that* and *where* in one event); any other value is a file
//! path, written whole to a temporary file and renamed into place, so a
//! reader that sees the file never sees half of it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where a readiness report goes, as `--ready-file` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyTarget {
    /// One line on stdout (`-`).
    Stdout,
    /// A file, replaced atomically.
    File(PathBuf),
}

impl ReadyTarget {
    /// `-` is stdout; anything else a file path.
    pub fn parse(arg: &Path) -> Self {
        if arg == Path::new("-") {
            ReadyTarget::Stdout
        } else {
            ReadyTarget::File(arg.to_path_buf())
        }
    }

    /// Writes `report` as one line of JSON to this target.
    pub fn write(&self, report: &impl Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_string(report).map_err(std::io::Error::other)?;
        line.push('\n');
        match self {
            ReadyTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.flush()
            }
            ReadyTarget::File(path) => write_atomically(path, line.as_bytes()),
        }
    }
}

/// Writes `bytes` next to `path` and renames the result onto `path`: the
/// rename is atomic within a file system, so readers see all or nothing.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Serialize)]
    struct Report {
        listen: String,
    }

    #[test]
    fn dash_is_stdout_and_anything_else_a_file() {
        assert_eq!(ReadyTarget::parse(Path::new("-")), ReadyTarget::Stdout);
        assert_eq!(
            ReadyTarget::parse(Path::new("./-")),
            ReadyTarget::File(PathBuf::from("./-"))
        );
    }

    #[test]
    fn a_file_report_is_one_json_line_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        std::fs::write(&path, "stale").unwrap();
        let target = ReadyTarget::parse(&path);
        target
            .write(&Report {
                listen: "127.0.0.1:4433".into(),
            })
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"listen\":\"127.0.0.1:4433\"}\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_file_in_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = ReadyTarget::parse(&dir.path().join("no/such/dir/ready.json"));
        assert!(target
            .write(&Report {
                listen: String::new()
            })
            .is_err());
    }
}
