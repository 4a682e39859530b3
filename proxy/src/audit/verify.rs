//! Offline verification of a chain: every line intact, in order, none
//! missing, and the tail complete. Used by `audit verify` in both binaries.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chain::{check_line, LineProblem, GENESIS_HASH};

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record ([`GENESIS_HASH`] if there were none): the
    /// value to compare with a witnessed chain head.
    pub head_hash: String,
    /// Seq of the first record (0 unless older files were pruned).
    pub first_seq: Option<u64>,
    /// Seq of the last record.
    pub last_seq: Option<u64>,
}

/// The first problem found, with where it is. `line` is 1-based within
/// `file`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{}: cannot read: {reason}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The record's contents changed after it was written: its hash does not
    /// recompute, or it is not in the writer's canonical form (extra or
    /// reordered keys, whitespace), or a seq 0 record has a non-zero `prev`.
    #[error("{}:{line}: record seq {seq} was edited: {what}", file.display())]
    Edited {
        /// The file.
        file: PathBuf,
        /// Line number.
        line: u64,
        /// Seq of the edited record.
        seq: u64,
        /// How the edit shows.
        what: String,
    },
    /// Records are missing before this one: a gap in seq, or a `prev` that
    /// is not the previous record's hash.
    #[error("{}:{line}: record(s) removed before seq {seq}: {what}", file.display())]
    Removed {
        /// The file.
        file: PathBuf,
        /// Line number of the record after the hole.
        line: u64,
        /// Seq of the record after the hole.
        seq: u64,
        /// What is missing.
        what: String,
    },
    /// Records are out of order: seq goes backwards or repeats, or the seq
    /// expected here appears later.
    #[error("{}:{line}: records reordered at seq {seq}: {what}", file.display())]
    Reordered {
        /// The file.
        file: PathBuf,
        /// Line number of the first out-of-place record.
        line: u64,
        /// Seq of that record.
        seq: u64,
        /// What the order should have been.
        what: String,
    },
    /// The last line of a file is incomplete: not newline-terminated, or
    /// not a whole record. The file was cut, or a write was torn by a crash.
    #[error("{}:{line}: truncated tail{}: {what}", file.display(), expected_suffix(*expected_seq))]
    TruncatedTail {
        /// The file.
        file: PathBuf,
        /// Line number of the incomplete line.
        line: u64,
        /// Seq that line should have had, if a record preceded it.
        expected_seq: Option<u64>,
        /// What is wrong with it.
        what: String,
    },
    /// A line in the middle of a file is not an audit record at all.
    #[error("{}:{line}: not an audit record{}: {what}", file.display(), expected_suffix(*expected_seq))]
    Malformed {
        /// The file.
        file: PathBuf,
        /// Line number.
        line: u64,
        /// Seq expected on that line, if a record preceded it.
        expected_seq: Option<u64>,
        /// The parse error.
        what: String,
    },
}

fn expected_suffix(seq: Option<u64>) -> String {
    seq.map(|s| format!(" (expected seq {s})"))
        .unwrap_or_default()
}

impl VerifyError {
    /// The file holding the problem.
    pub fn file(&self) -> &Path {
        match self {
            VerifyError::Io { file, .. }
            | VerifyError::Edited { file, .. }
            | VerifyError::Removed { file, .. }
            | VerifyError::Reordered { file, .. }
            | VerifyError::TruncatedTail { file, .. }
            | VerifyError::Malformed { file, .. } => file,
        }
    }
}

/// Verifies `paths`, given in chain order (oldest first, as
/// [`super::chain_files`] lists them), as one chain: every line a canonical
/// record whose hash recomputes, seqs consecutive from the first record's
/// (which must have `prev` = [`GENESIS_HASH`] if its seq is 0), each `prev`
/// the hash before it, and every file ending in a complete line. Stops at
/// the first problem.
pub fn verify_files(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let mut lines = Lines::new(paths);
    let mut last: Option<(u64, String)> = None;
    let mut first_seq = None;
    let mut records = 0u64;
    while let Some(line) = lines.next()? {
        let file = paths[line.file].clone();
        let number = line.number;
        let expected_seq = last.as_ref().map(|(seq, _)| seq.saturating_add(1));
        let Some(body) = line.bytes.strip_suffix(b"\n") else {
            return Err(VerifyError::TruncatedTail {
                file,
                line: number,
                expected_seq,
                what: format!("last line has no newline ({} bytes)", line.bytes.len()),
            });
        };
        let record = match check_line(body) {
            Ok(record) => record,
            Err(LineProblem::Unparseable(what)) if line.last_in_file => {
                return Err(VerifyError::TruncatedTail {
                    file,
                    line: number,
                    expected_seq,
                    what: format!("last line is not a complete record: {what}"),
                })
            }
            Err(LineProblem::Unparseable(what)) => {
                return Err(VerifyError::Malformed {
                    file,
                    line: number,
                    expected_seq,
                    what,
                })
            }
            Err(LineProblem::NotCanonical(seq)) => {
                return Err(VerifyError::Edited {
                    file,
                    line: number,
                    seq,
                    what: "not in canonical form (added, removed or reordered keys, or changed formatting)".into(),
                })
            }
            Err(LineProblem::HashMismatch(seq)) => {
                return Err(VerifyError::Edited {
                    file,
                    line: number,
                    seq,
                    what: "hash does not match the record's contents".into(),
                })
            }
        };
        let seq = record.seq;
        match &last {
            None if seq == 0 && record.prev != GENESIS_HASH => {
                return Err(VerifyError::Edited {
                    file,
                    line: number,
                    seq,
                    what: "the first record (seq 0) must have prev = 64 zeros".into(),
                });
            }
            None => first_seq = Some(seq),
            Some((last_seq, last_hash)) => {
                let expected = last_seq.saturating_add(1);
                if seq <= *last_seq {
                    return Err(VerifyError::Reordered {
                        file,
                        line: number,
                        seq,
                        what: format!("seq {seq} follows seq {last_seq} (reordered or duplicated)"),
                    });
                }
                if seq > expected {
                    return Err(match lines.find_seq(expected) {
                        Some((later_file, later_line)) => VerifyError::Reordered {
                            file,
                            line: number,
                            seq,
                            what: format!(
                                "seq {expected} belongs here but appears later, at {}:{later_line}",
                                paths[later_file].display()
                            ),
                        },
                        None => VerifyError::Removed {
                            file,
                            line: number,
                            seq,
                            what: if seq - expected == 1 {
                                format!("seq {expected} is missing")
                            } else {
                                format!("seqs {expected}..={} are missing", seq - 1)
                            },
                        },
                    });
                }
                if record.prev != *last_hash {
                    return Err(VerifyError::Removed {
                        file,
                        line: number,
                        seq,
                        what: format!(
                            "prev is not the hash of seq {last_seq}: a record was removed or replaced"
                        ),
                    });
                }
            }
        }
        records += 1;
        last = Some((seq, record.hash));
    }
    let (last_seq, head_hash) = match last {
        Some((seq, hash)) => (Some(seq), hash),
        None => (None, GENESIS_HASH.to_owned()),
    };
    Ok(VerifyReport {
        records,
        head_hash,
        first_seq,
        last_seq,
    })
}

/// One raw line.
struct Line {
    /// Index into the file list.
    file: usize,
    /// 1-based line number in that file.
    number: u64,
    /// The bytes, with the `\n` if there was one.
    bytes: Vec<u8>,
    /// Nothing follows it in its file.
    last_in_file: bool,
}

/// The lines of several files, in order.
struct Lines<'a> {
    paths: &'a [PathBuf],
    next_file: usize,
    reader: Option<(usize, BufReader<File>)>,
    number: u64,
}

impl<'a> Lines<'a> {
    fn new(paths: &'a [PathBuf]) -> Self {
        Lines {
            paths,
            next_file: 0,
            reader: None,
            number: 0,
        }
    }

    fn next(&mut self) -> Result<Option<Line>, VerifyError> {
        loop {
            let (file, reader) = match &mut self.reader {
                Some((file, reader)) => (*file, reader),
                None => {
                    let Some(path) = self.paths.get(self.next_file) else {
                        return Ok(None);
                    };
                    let opened = File::open(path).map_err(|e| io_error(path, &e))?;
                    self.reader = Some((self.next_file, BufReader::new(opened)));
                    self.next_file += 1;
                    self.number = 0;
                    continue;
                }
            };
            let path = &self.paths[file];
            let mut bytes = Vec::new();
            let n = reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| io_error(path, &e))?;
            if n == 0 {
                self.reader = None;
                continue;
            }
            let last_in_file = reader
                .fill_buf()
                .map_err(|e| io_error(path, &e))?
                .is_empty();
            self.number += 1;
            return Ok(Some(Line {
                file,
                number: self.number,
                bytes,
                last_in_file,
            }));
        }
    }

    /// Where, among the remaining lines, the record with `seq` is, if
    /// anywhere: tells a reordering from a removal. Unreadable lines are
    /// skipped; this only runs once a problem has been found.
    fn find_seq(&mut self, seq: u64) -> Option<(usize, u64)> {
        #[derive(Deserialize)]
        struct SeqOnly {
            seq: u64,
        }
        while let Ok(Some(line)) = self.next() {
            if serde_json::from_slice::<SeqOnly>(&line.bytes).is_ok_and(|r| r.seq == seq) {
                return Some((line.file, line.number));
            }
        }
        None
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> VerifyError {
    VerifyError::Io {
        file: path.to_path_buf(),
        reason: e.to_string(),
    }
}
