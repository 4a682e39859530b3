//! Test-only fault injection for the audit file: lets tests make writes and
//! fsyncs fail (or be slow) on demand, since permissions cannot make I/O fail
//! for root. Compiled only under `cfg(test)`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Faults the next file operations will suffer.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next N writes fail.
    pub(crate) fail_writes: AtomicU32,
    /// A failing write first writes half its bytes, leaving a torn line the
    /// writer must remove.
    pub(crate) partial_writes: AtomicBool,
    /// The next N fsyncs fail.
    pub(crate) fail_syncs: AtomicU32,
    /// The next N rotations fail before renaming.
    pub(crate) fail_rotations: AtomicU32,
    /// Every fsync takes this long, as on a slow disk.
    pub(crate) sync_delay_ms: AtomicU64,
}

impl Faults {
    /// If the write about to happen should fail: how many of its `len` bytes
    /// to write first.
    pub(super) fn write_fault(&self, len: usize) -> Option<usize> {
        if !take(&self.fail_writes) {
            return None;
        }
        Some(if self.partial_writes.load(Ordering::SeqCst) {
            len / 2
        } else {
            0
        })
    }

    /// Possibly fails the rotation about to happen.
    pub(super) fn before_rotate(&self) -> io::Result<()> {
        if take(&self.fail_rotations) {
            return Err(io::Error::other("injected rename failure"));
        }
        Ok(())
    }

    /// Delays and possibly fails the fsync about to happen.
    pub(super) fn before_sync(&self) -> io::Result<()> {
        let delay = self.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if take(&self.fail_syncs) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

/// Decrements `counter` if positive; true if it was.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
