//! How an audit log is opened: where, how durable, when to rotate.

use std::path::PathBuf;
use std::time::Duration;

use super::error::AuditError;
use super::record::Side;

/// Rotation size by default: 64 MiB keeps a file quick to verify and copy
/// while rotating rarely (~200k records of ~300 bytes).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// When [`super::AuditLog::append`] may return relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Open records are written and `fdatasync`ed before `append` returns.
    /// Concurrent appends share one fsync (group commit), so throughput
    /// scales with concurrency while each open record survives a crash
    /// once acknowledged. Close records are acknowledged once written and
    /// made durable by the next fsync (at most `close_sync` later).
    Always,
    /// Written before `append` returns; fsynced in the background at this
    /// period. A crash (of the machine, not the process) can lose up to one
    /// period of acknowledged records.
    Interval(Duration),
    /// Written to the OS before `append` returns, never fsynced by Tether;
    /// the kernel flushes when it likes. Survives a process crash, not a
    /// power loss.
    None,
}

/// [`AuditConfig::close_sync`] unless configured (`[audit] interval_ms`).
pub const DEFAULT_CLOSE_SYNC: Duration = Duration::from_millis(100);

/// Everything needed to open a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The live file; rotated files sit next to it (see
    /// [`super::chain_files`]). Its directory must exist.
    pub path: PathBuf,
    /// See [`Durability`].
    pub durability: Durability,
    /// Rotate before a record would take the live file past this size. A
    /// single record larger than this gets a file of its own.
    pub max_file_bytes: u64,
    /// Which end of the tunnel this process is; stamped on every record.
    pub side: Side,
    /// Under [`Durability::Always`], the longest a record that guards no
    /// stream (a close record) stays written but unsynced: it is made
    /// durable by the next open record's fsync, or this long after it was
    /// written when none comes. Close records so never cost an fsync of
    /// their own, nor delay the next call's open record behind one.
    pub close_sync: Duration,
}

impl AuditConfig {
    /// A config with the safe defaults: [`Durability::Always`] and
    /// [`DEFAULT_MAX_FILE_BYTES`].
    pub fn new(path: impl Into<PathBuf>, side: Side) -> Self {
        AuditConfig {
            path: path.into(),
            durability: Durability::Always,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            side,
            close_sync: DEFAULT_CLOSE_SYNC,
        }
    }

    /// Rejects values the writer cannot honour.
    pub(super) fn validate(&self) -> Result<(), AuditError> {
        if self.max_file_bytes == 0 {
            return Err(AuditError::Config("max_file_bytes must be positive".into()));
        }
        if self.durability == Durability::Interval(Duration::ZERO) {
            return Err(AuditError::Config(
                "interval durability needs a positive period (use `always` to fsync every batch)"
                    .into(),
            ));
        }
        if self.close_sync.is_zero() {
            return Err(AuditError::Config("close_sync must be positive".into()));
        }
        if self.path.file_name().is_none() {
            return Err(AuditError::Config(format!(
                "audit path {} does not name a file",
                self.path.display()
            )));
        }
        Ok(())
    }
}
