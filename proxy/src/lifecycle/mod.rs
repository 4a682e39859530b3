//! The owned lifecycle of a process: every task it spawns belongs to one
//! [`Lifecycle`], and shutdown runs in phases so a rolling deploy or an
//! orchestrator's SIGTERM does not cut the calls in flight:
//!
//! ```text
//! running ──drain──▶ draining ──calls done │ grace elapsed │ forced──▶ closing ──all tasks ended──▶ stopped
//! ```
//!
//! 1. **Draining**: listeners stop accepting (they are closed), HTTP
//!    connections are closed gracefully (HTTP/2 GOAWAY; HTTP/1.1 closes after
//!    the response in flight), and every call the admission path still sees
//!    is refused with the retryable `draining` error (503 / UNAVAILABLE).
//!    Calls already admitted run on.
//! 2. The calls in flight (every task spawned with [`Lifecycle::spawn_call`])
//!    get up to the grace period to finish; a second signal ends the wait.
//! 3. **Closing**: tunnel connections are closed with `GOING_AWAY`, every
//!    remaining task sees [`Lifecycle::closing`] and ends, and
//!    [`Lifecycle::shutdown`] returns once the tracker is empty.
//!
//! Listener tasks, connection loops and watchers are spawned with
//! [`Lifecycle::spawn`]; per-call work (a caller's HTTP connection and its
//! requests, a tunnel stream's handler, a raw TCP bridge, a request body
//! pump) with [`Lifecycle::spawn_call`], which counts it among the calls
//! the drain waits for. hyper gets the same through [`CallExecutor`] and
//! [`TaskExecutor`].

mod connection;
mod executor;
pub mod runtime;
pub mod signals;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tracing::info;

pub use connection::serve_until_closed;
pub use executor::{CallExecutor, TaskExecutor};

struct Inner {
    drain: CancellationToken,
    close: CancellationToken,
    tasks: TaskTracker,
    calls: TaskTracker,
}

/// The tasks of one process (an edge or a client) and its shutdown phase.
/// Cheap to clone: every clone is the same lifecycle.
#[derive(Clone)]
pub struct Lifecycle(Arc<Inner>);

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("draining", &self.is_draining())
            .field("closing", &self.is_closing())
            .field("tasks", &self.tasks())
            .field("calls", &self.calls())
            .finish()
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

/// How a shutdown ended, for the exit log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every call in flight finished within the grace period.
    Drained,
    /// The grace period passed with `calls` still in flight; they were cut.
    GraceElapsed {
        /// Calls cut at the deadline.
        calls: usize,
    },
    /// A second signal (or the caller's force future) ended the wait early.
    Forced {
        /// Calls cut.
        calls: usize,
    },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Drained => write!(f, "every call in flight finished"),
            Ending::GraceElapsed { calls } => write!(
                f,
                "the grace period ended with {calls} call(s) in flight; they were cut"
            ),
            Ending::Forced { calls } => write!(
                f,
                "a second signal forced the stop with {calls} call(s) in flight; they were cut"
            ),
        }
    }
}

impl Lifecycle {
    /// A running lifecycle with no tasks.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            drain: CancellationToken::new(),
            close: CancellationToken::new(),
            tasks: TaskTracker::new(),
            calls: TaskTracker::new(),
        }))
    }

    /// Spawns a task that is part of the process's structure (a listener,
    /// a connection loop, a watcher). It must end once [`Self::closing`]
    /// fires.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.tasks.spawn(task)
    }

    /// Spawns per-call work: the drain waits for it (up to the grace
    /// period) before connections are closed.
    pub fn spawn_call<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.tasks.spawn(self.0.calls.track_future(task))
    }

    /// A hyper executor that spawns with [`Self::spawn_call`]: for the
    /// connections of callers and workloads, whose requests are calls.
    pub fn call_executor(&self) -> CallExecutor {
        CallExecutor(self.clone())
    }

    /// A hyper executor that spawns with [`Self::spawn`]: for connection
    /// pools, whose idle connections are no call's.
    pub fn task_executor(&self) -> TaskExecutor {
        TaskExecutor(self.clone())
    }

    /// True once draining has begun: admission refuses new calls.
    pub fn is_draining(&self) -> bool {
        self.0.drain.is_cancelled()
    }

    /// True once closing has begun.
    pub fn is_closing(&self) -> bool {
        self.0.close.is_cancelled()
    }

    /// Resolves when draining begins: listeners stop accepting.
    pub fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.0.drain.cancelled()
    }

    /// Resolves when closing begins: every task ends.
    pub fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.0.close.cancelled()
    }

    /// A token cancelled when closing begins, for APIs that take one.
    pub fn close_token(&self) -> CancellationToken {
        self.0.close.clone()
    }

    /// Tasks alive (calls included).
    pub fn tasks(&self) -> usize {
        self.0.tasks.len()
    }

    /// Calls in flight.
    pub fn calls(&self) -> usize {
        self.0.calls.len()
    }

    /// Begins draining (phase 1). Idempotent.
    pub fn begin_drain(&self) {
        self.0.drain.cancel();
    }

    /// Begins closing (phase 3; draining too if it had not begun).
    /// Idempotent.
    pub fn begin_close(&self) {
        self.0.drain.cancel();
        self.0.close.cancel();
    }

    /// Runs the shutdown phases: drain, wait up to `grace` for the calls
    /// in flight (or until `force` resolves), close, and return once every
    /// task has ended.
    pub async fn shutdown(&self, grace: Duration, force: impl Future<Output = ()>) -> Ending {
        self.begin_drain();
        self.0.calls.close();
        let calls = self.calls();
        info!(
            calls,
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "draining: listeners closed, new calls refused; waiting for the calls in flight"
        );
        let ending = tokio::select! {
            () = self.0.calls.wait() => Ending::Drained,
            () = tokio::time::sleep(grace) => Ending::GraceElapsed { calls: self.calls() },
            () = force => Ending::Forced { calls: self.calls() },
        };
        info!(%ending, "closing connections");
        self.begin_close();
        self.0.tasks.close();
        self.0.tasks.wait().await;
        ending
    }
}

#[cfg(test)]
mod tests;
