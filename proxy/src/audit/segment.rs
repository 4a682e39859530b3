//! The live audit file: resuming the chain from it, appending, fsync,
//! rolling back a failed write, and rotation.
//!
//! Invariant: the first `good_len` bytes of the live file are complete,
//! committed records. Anything after them is a write in progress or the
//! remains of a failed one; [`Segment::rollback`] and every reopen cut the
//! file back to `good_len`, so a failure never leaves a torn line in the
//! chain.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

use super::chain::{check_line, Head, LineProblem};
use super::error::AuditError;
#[cfg(test)]
use super::faults::Faults;
use super::files::{chain_files, parent_dir, rotated_files, rotated_name};

/// Permissions of new audit files: owner read-write, group read (auditors),
/// nothing for others; records name callers and paths.
#[cfg(unix)]
const FILE_MODE: u32 = 0o640;

/// The live file of a chain.
#[derive(Debug)]
pub(super) struct Segment {
    /// The configured (live) path.
    path: PathBuf,
    /// Open handle; `None` after a failure, reopened on next use.
    file: Option<File>,
    /// Bytes of committed records in the live file.
    good_len: u64,
    /// Bytes written since the last commit.
    pending: u64,
    /// Counter the next rotation uses.
    next_rotation: u64,
    /// A directory entry changed (file created or renamed) since the
    /// directory was last fsynced.
    dir_dirty: bool,
    /// Injected faults.
    #[cfg(test)]
    faults: Arc<Faults>,
}

impl Segment {
    /// Opens (creating if needed) the live file at `path` and finds where the
    /// chain continues: after the last record of the newest non-empty file.
    pub(super) fn open(
        path: &Path,
        #[cfg(test)] faults: Arc<Faults>,
    ) -> Result<(Segment, Head), AuditError> {
        let head = resume(path)?;
        let next_rotation = rotated_files(path)
            .last()
            .map_or(1, |(n, _)| n.saturating_add(1));
        let existed = path.exists();
        let file = open_live(path).map_err(|e| AuditError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let good_len = file
            .metadata()
            .map_err(|e| AuditError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .len();
        let segment = Segment {
            path: path.to_path_buf(),
            file: Some(file),
            good_len,
            pending: 0,
            next_rotation,
            dir_dirty: !existed,
            #[cfg(test)]
            faults,
        };
        Ok((segment, head))
    }

    /// Bytes in the live file, committed or pending.
    pub(super) fn len(&self) -> u64 {
        self.good_len + self.pending
    }

    /// Appends `bytes`. On failure the file is cut back to its committed
    /// length and the handle dropped, so the next attempt reopens it.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = self.write_inner(bytes);
        if result.is_err() {
            self.rollback();
        }
        result
    }

    fn write_inner(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        let fault = self.faults.write_fault(bytes.len());
        let file = self.ensure_open()?;
        #[cfg(test)]
        if let Some(cut) = fault {
            file.write_all(&bytes[..cut])?;
            return Err(io::Error::other("injected write failure"));
        }
        file.write_all(bytes)?;
        self.pending += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything written so far durable: `fdatasync` of the file and,
    /// if an entry was created or renamed, fsync of the directory.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        self.faults.before_sync()?;
        self.ensure_open()?.sync_data()?;
        if self.dir_dirty {
            File::open(parent_dir(&self.path))?.sync_all()?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Counts what was written since the last commit as committed.
    pub(super) fn commit(&mut self) {
        self.good_len += self.pending;
        self.pending = 0;
    }

    /// Discards what was written since the last commit: truncates the file
    /// to its committed length and drops the handle. If truncation fails
    /// here, the reopen before the next write retries it.
    pub(super) fn rollback(&mut self) {
        self.pending = 0;
        if let Some(file) = self.file.take() {
            if let Err(e) = file.set_len(self.good_len) {
                tracing::warn!(path = %self.path.display(), error = %e, "audit: truncating a failed write failed; will retry");
            }
        }
    }

    /// Renames the live file to the next `<path>.NNNNNN` and starts a new,
    /// empty live file. Must be called with nothing pending. The directory
    /// is fsynced by the next [`Segment::sync`].
    pub(super) fn rotate(&mut self) -> io::Result<()> {
        debug_assert_eq!(self.pending, 0, "rotating with uncommitted bytes");
        #[cfg(test)]
        self.faults.before_rotate()?;
        self.file = None;
        // Never clobber an existing file (rename overwrites on Unix).
        let mut target = rotated_name(&self.path, self.next_rotation);
        while target.symlink_metadata().is_ok() {
            self.next_rotation += 1;
            target = rotated_name(&self.path, self.next_rotation);
        }
        std::fs::rename(&self.path, &target)?;
        self.next_rotation += 1;
        self.good_len = 0;
        self.dir_dirty = true;
        self.ensure_open()?;
        Ok(())
    }

    /// The open handle, reopening (and creating) the live file if needed and
    /// cutting off anything past the committed length.
    fn ensure_open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let existed = self.path.exists();
            let file = open_live(&self.path)?;
            let len = file.metadata()?.len();
            if len < self.good_len {
                return Err(io::Error::other(format!(
                    "{} shrank from {} to {len} bytes outside the audit writer",
                    self.path.display(),
                    self.good_len
                )));
            }
            if len > self.good_len {
                file.set_len(self.good_len)?;
            }
            self.dir_dirty |= !existed;
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => Ok(file),
            None => Err(io::Error::other("audit file not open")),
        }
    }
}

/// Opens the live file for appending, creating it with [`FILE_MODE`].
fn open_live(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options.open(path)
}

/// Where the chain rooted at `path` continues: after the last record of the
/// newest non-empty file, which must be complete and intact.
fn resume(path: &Path) -> Result<Head, AuditError> {
    for file in chain_files(path).iter().rev() {
        let corrupt = |reason: String| AuditError::Corrupt {
            path: file.clone(),
            reason,
        };
        match read_tail(file).map_err(|e| corrupt(format!("cannot read: {e}")))? {
            Tail::Empty => continue,
            Tail::Torn { complete_len, len } => {
                return Err(corrupt(format!(
                    "last line is incomplete ({} bytes without a newline; a crash may have torn it). \
                     Run `audit verify`, keep a copy, then truncate the file to {complete_len} bytes to resume",
                    len - complete_len
                )));
            }
            Tail::Line(line) => {
                let record = check_line(&line).map_err(|p| {
                    corrupt(match p {
                        LineProblem::Unparseable(e) => format!("last record does not parse: {e}"),
                        LineProblem::NotCanonical(_) => {
                            "last record is not in canonical form (edited)".to_owned()
                        }
                        LineProblem::HashMismatch(_) => {
                            "last record's hash does not match its contents (edited)".to_owned()
                        }
                    })
                })?;
                return Ok(Head::after(&record));
            }
        }
    }
    Ok(Head::genesis())
}

/// The end of a file.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// No bytes (or no file).
    Empty,
    /// The last complete line, without its newline.
    Line(Vec<u8>),
    /// The file does not end with a newline; `complete_len` bytes are
    /// complete lines.
    Torn {
        /// Length of the complete lines before the torn one.
        complete_len: u64,
        /// File length.
        len: u64,
    },
}

/// Reads the last line of `path`, scanning backwards from the end in a
/// window that doubles until it holds the line, so resuming a large file
/// reads kilobytes, not the whole file.
fn read_tail(path: &Path) -> io::Result<Tail> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Tail::Empty),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut window: u64 = 8 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0; usize::try_from(len - start).map_err(io::Error::other)?];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        let torn = buf.last() != Some(&b'\n');
        let body = if torn {
            &buf[..]
        } else {
            &buf[..buf.len() - 1]
        };
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) if torn => {
                return Ok(Tail::Torn {
                    complete_len: start + i as u64 + 1,
                    len,
                })
            }
            Some(i) => return Ok(Tail::Line(body[i + 1..].to_vec())),
            None if start == 0 && torn => {
                return Ok(Tail::Torn {
                    complete_len: 0,
                    len,
                })
            }
            None if start == 0 => return Ok(Tail::Line(body.to_vec())),
            None => window = window.saturating_mul(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert_eq!(read_tail(&p).unwrap(), Tail::Empty);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(read_tail(&p).unwrap(), Tail::Empty);
        std::fs::write(&p, b"one\n").unwrap();
        assert_eq!(read_tail(&p).unwrap(), Tail::Line(b"one".to_vec()));
        std::fs::write(&p, b"one\ntwo\n").unwrap();
        assert_eq!(read_tail(&p).unwrap(), Tail::Line(b"two".to_vec()));
        std::fs::write(&p, b"one\ntw").unwrap();
        assert_eq!(
            read_tail(&p).unwrap(),
            Tail::Torn {
                complete_len: 4,
                len: 6
            }
        );
        std::fs::write(&p, b"tw").unwrap();
        assert_eq!(
            read_tail(&p).unwrap(),
            Tail::Torn {
                complete_len: 0,
                len: 2
            }
        );
        // A last line longer than the first window.
        let long = vec![b'x'; 50_000];
        let mut text = b"head\n".to_vec();
        text.extend_from_slice(&long);
        text.push(b'\n');
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read_tail(&p).unwrap(), Tail::Line(long));
    }
}
