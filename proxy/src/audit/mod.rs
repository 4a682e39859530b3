//! The audit log: one tamper-evident record per stream event, durable before
//! the stream may proceed.
//!
//! A stream gets an `open` record, made durable before its first byte is
//! forwarded (denied streams included), and a `close` record when it ends.
//! Records are JSON Lines chained by SHA-256: each carries `seq`, the
//! previous record's hash as `prev`, and its own `hash`, so an edit,
//! removal, reordering or truncation is found by [`verify_files`].
//!
//! - [`record`]: [`AuditRecord`] (one line) and [`AuditEvent`] (what callers
//!   supply; the writer assigns the chain fields).
//! - [`chain`]: the hash and the canonical form it covers.
//! - `writer`/`worker`/`segment`: [`AuditLog`], a cloneable handle feeding one
//!   writer thread that group-commits (one fsync for every waiting record),
//!   rotates by size, and fails closed: if a record cannot be made durable,
//!   [`AuditLog::append`] errs, the log reports unhealthy, and the file is
//!   rolled back so the chain stays valid.
//! - [`verify_files`] and [`chain_files`]: offline checking of a chain.
//!
//! Operator documentation: `docs/audit.md`.

pub mod chain;
mod clock;
mod config;
mod error;
#[cfg(test)]
mod faults;
mod files;
#[cfg(any(test, feature = "testing"))]
mod hold;
pub mod record;
mod segment;
mod state;
pub(crate) mod stream;
mod verify;
mod worker;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

pub use chain::GENESIS_HASH;
/// Audit-style timestamps, for logs that should read like the audit log.
pub use clock::format_rfc3339_millis as rfc3339_utc;
pub use config::{AuditConfig, Durability, DEFAULT_CLOSE_SYNC, DEFAULT_MAX_FILE_BYTES};
pub use error::AuditError;
pub use files::chain_files;
#[cfg(any(test, feature = "testing"))]
pub use hold::AuditHold;
pub use record::{AuditDecision, AuditEvent, AuditRecord, Direction, Event, Side};
pub use state::{AuditStats, ChainHead};
pub use stream::Ending;
pub use verify::{verify_files, VerifyError, VerifyReport};
pub use writer::{AuditLog, QUEUE_CAPACITY};

/// What `audit verify` prints for one chain, shared by both binaries.
/// One path means "this live log and its rotated files"; several paths are
/// verified in the order given.
pub fn verify_command(paths: &[std::path::PathBuf]) -> Result<String, VerifyError> {
    let files = match paths {
        [one] => {
            let chain = chain_files(one);
            if chain.is_empty() {
                vec![one.clone()]
            } else {
                chain
            }
        }
        many => many.to_vec(),
    };
    let report = verify_files(&files)?;
    Ok(format!(
        "OK: {} records in {} file(s), seq {}..{}, head {}",
        report.records,
        files.len(),
        report.first_seq.map_or("-".into(), |s| s.to_string()),
        report.last_seq.map_or("-".into(), |s| s.to_string()),
        report.head_hash
    ))
}
