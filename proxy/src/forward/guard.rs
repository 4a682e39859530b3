//! Ties a spawned task's life to a value: dropping the guard cancels the
//! task, so a forwarding half never outlives the call it serves.

use tokio::task::JoinHandle;

/// Aborts the wrapped task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
