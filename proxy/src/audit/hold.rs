//! A test hook (feature `testing`) that holds the writer before it writes
//! a batch, so a test can show, without sleeps, that a stream waits for
//! its open record: with the writer held, nothing reaches the service;
//! released, the stream proceeds. Never compiled into a release build
//! unless the feature is asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The writer's side of the hold: checked before each batch.
#[derive(Debug, Default)]
pub(super) struct HoldGate {
    held: Mutex<bool>,
    released: Condvar,
    /// Batches that found the writer held (and waited).
    stalled: AtomicU64,
    stalled_changed: tokio::sync::Notify,
}

impl HoldGate {
    /// Blocks the writer thread while a hold is in place.
    pub(super) fn wait_while_held(&self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*held {
            return;
        }
        self.stalled.fetch_add(1, Ordering::SeqCst);
        self.stalled_changed.notify_waiters();
        while *held {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Whether a hold is in place: appenders that would write their own
    /// record queue it instead, so the hold stops every record.
    pub(super) fn is_held(&self) -> bool {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, on: bool) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = on;
        if !on {
            self.released.notify_all();
        }
    }
}

/// Holds the writer of one log until released (or dropped).
#[derive(Debug)]
pub struct AuditHold {
    gate: Arc<HoldGate>,
}

impl AuditHold {
    pub(super) fn new(gate: Arc<HoldGate>) -> Self {
        gate.set(true);
        Self { gate }
    }

    /// Waits until the writer has a batch it is holding back: a record has
    /// been appended and is not yet written.
    pub async fn stalled(&self) {
        loop {
            let notified = self.gate.stalled_changed.notified();
            if self.gate.stalled.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Lets the writer go on.
    pub fn release(self) {}
}

impl Drop for AuditHold {
    fn drop(&mut self) {
        self.gate.set(false);
    }
}
