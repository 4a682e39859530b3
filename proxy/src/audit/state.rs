//! What the writer thread reports to every handle: health, last error and
//! counters, readable without waiting on the writer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records written since open (under `Always`, open records also made
    /// durable; close records ride the next fsync).
    pub records_written: u64,
    /// Successful fsyncs. Under `Always` this is well below
    /// `records_written` when appends are concurrent: group commit.
    pub syncs: u64,
    /// Writes or fsyncs that failed (each failed batch counts once).
    pub failures: u64,
    /// Of `records_written`, those their appender wrote on its own thread
    /// (`None` and `Interval`, when the file was free); the rest went
    /// through the writer thread's queue.
    pub records_inline: u64,
}

/// The newest record of a log: what a status page shows as the chain head
/// (compare it with `audit verify` of the file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash`.
    pub hash: String,
}

/// State shared between the handles and the writer thread.
#[derive(Debug)]
pub(super) struct Shared {
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    records_written: AtomicU64,
    syncs: AtomicU64,
    failures: AtomicU64,
    records_inline: AtomicU64,
    progress: tokio::sync::Notify,
    /// The last record on disk: its seq and hash (status pages).
    head: Mutex<Option<ChainHead>>,
    /// Where appends and flushes are counted, once attached.
    pub(super) metrics: std::sync::OnceLock<std::sync::Arc<crate::metrics::Metrics>>,
    #[cfg(any(test, feature = "testing"))]
    pub(super) hold: std::sync::Arc<super::hold::HoldGate>,
}

impl Shared {
    pub(super) fn new() -> Self {
        Shared {
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            records_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            records_inline: AtomicU64::new(0),
            progress: tokio::sync::Notify::new(),
            head: Mutex::new(None),
            metrics: std::sync::OnceLock::new(),
            #[cfg(any(test, feature = "testing"))]
            hold: Default::default(),
        }
    }

    /// Waits until at least `n` records have been written since open.
    pub(super) async fn wait_written(&self, n: u64) {
        loop {
            let notified = self.progress.notified();
            if self.records_written.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records a failure: unhealthy until the next success. Logged at
    /// `error` once per outage, not once per refused batch.
    pub(super) fn failed(&self, message: &str) {
        if self.healthy.load(Ordering::SeqCst) {
            tracing::error!(
                error = message,
                "audit log unavailable; new streams are refused"
            );
        } else {
            tracing::debug!(error = message, "audit log still unavailable");
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.to_owned());
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::SeqCst);
    }

    /// Records `n` records durably written; healthy again if it was not.
    pub(super) fn written(&self, n: u64) {
        self.records_written.fetch_add(n, Ordering::SeqCst);
        self.progress.notify_waiters();
        if !self.healthy.swap(true, Ordering::SeqCst) {
            tracing::info!("audit log writable again");
        }
    }

    pub(super) fn set_head(&self, seq: u64, hash: &str) {
        if let Ok(mut h) = self.head.lock() {
            *h = Some(ChainHead {
                seq,
                hash: hash.to_string(),
            });
        }
    }

    pub(super) fn head(&self) -> Option<ChainHead> {
        self.head.lock().ok().and_then(|h| h.clone())
    }

    /// Counts a record its appender wrote itself (already counted by
    /// [`Shared::written`]).
    pub(super) fn wrote_inline(&self) {
        self.records_inline.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn stats(&self) -> AuditStats {
        AuditStats {
            records_written: self.records_written.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            records_inline: self.records_inline.load(Ordering::Relaxed),
        }
    }
}
