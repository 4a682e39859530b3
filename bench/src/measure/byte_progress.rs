//! The `bulk` scenario's live progress line: MiB moved of the
//! measurement's total and the rate so far, once a second on stderr,
//! overwritten in place, so a slow transfer shows it is moving and a
//! stalled one shows it is stalled before `--duration` ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::byte_size::MIB;

/// A running progress line; stops (and ends the line) when dropped.
pub struct ByteProgress {
    task: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl ByteProgress {
    /// Starts printing `label`, `moved` of `total` bytes and the rate once
    /// a second, unless `enabled` is false (tests, `--quiet`).
    pub fn start(label: String, moved: Arc<AtomicU64>, total: u64, enabled: bool) -> Self {
        let started = Instant::now();
        if !enabled {
            return Self {
                task: None,
                started,
            };
        }
        let mib = |b: u64| b as f64 / MIB as f64;
        // Owned by the handle: aborted on drop.
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = moved.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprint!(
                    "\r  {label}: {:>9.1} of {:.1} MiB, {:>8.1} MiB/s, {secs:>5.1}s",
                    mib(done),
                    mib(total),
                    mib(done) / secs.max(1e-9),
                );
            }
        });
        Self {
            task: Some(task),
            started,
        }
    }
}

impl Drop for ByteProgress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // End the line the task drew (it draws after a second).
            if self.started.elapsed() >= Duration::from_secs(1) {
                eprintln!();
            }
        }
    }
}
