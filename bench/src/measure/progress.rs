//! The live progress line: once a second on stderr, overwritten in place,
//! so a long run shows it is moving (and a stuck one shows it is stuck).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the load generators bump and the progress line reads.
#[derive(Default)]
pub struct Counters {
    /// Calls that succeeded.
    pub done: AtomicU64,
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
    /// Open loop: calls that could not start on time.
    pub missed: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`; returns the new value.
    pub fn bump(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A running progress line; stops (and ends the line) when dropped.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Progress {
    /// Starts printing `label` and the counters once a second, unless
    /// `enabled` is false (tests, `--quiet`).
    pub fn start(label: String, counters: Arc<Counters>, enabled: bool) -> Self {
        let started = Instant::now();
        if !enabled {
            return Self {
                task: None,
                started,
            };
        }
        // Owned by the handle: aborted on drop.
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let missed = Counters::get(&counters.missed);
                let missed = if missed > 0 {
                    format!(", {missed} missed")
                } else {
                    String::new()
                };
                eprint!(
                    "\r  {label}: {:>9} calls, {:>6} errors{missed}, {:>5.1}s",
                    Counters::get(&counters.done),
                    Counters::get(&counters.errors),
                    started.elapsed().as_secs_f64()
                );
            }
        });
        Self {
            task: Some(task),
            started,
        }
    }
}

impl Drop for Progress {
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
