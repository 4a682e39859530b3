//! Errors of the audit writer. Verification has its own, [`super::VerifyError`].

use std::path::PathBuf;

/// Why a log could not be opened or a record could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The record was not written (or not made durable as configured). The
    /// stream it describes must not proceed: the log fails closed. Later
    /// appends retry; see [`super::AuditLog::healthy`].
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// The log file or its directory could not be opened or created.
    #[error("cannot open audit log {}: {reason}", path.display())]
    Open {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The existing log cannot be continued: its last record is torn,
    /// malformed or fails its hash, so chaining onto it would hide the
    /// problem. An operator must inspect it (`audit verify`).
    #[error("cannot resume audit log {}: {reason}", path.display())]
    Corrupt {
        /// The file whose tail is bad.
        path: PathBuf,
        /// What is wrong and how to recover.
        reason: String,
    },
    /// The configuration is unusable (zero rotation size or interval).
    #[error("invalid audit configuration: {0}")]
    Config(String),
}
