//! hyper executors that spawn into a [`Lifecycle`], so the tasks hyper
//! starts (one per HTTP/2 request, one per pooled connection) are owned
//! like every other task instead of detached with `tokio::spawn`.

use std::future::Future;

use super::Lifecycle;

/// Spawns hyper's tasks as calls ([`Lifecycle::spawn_call`]): for caller
/// and workload connections, whose requests the drain waits for.
#[derive(Clone, Debug)]
pub struct CallExecutor(pub(super) Lifecycle);

impl<F> hyper::rt::Executor<F> for CallExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn_call(fut);
    }
}

/// Spawns hyper's tasks as structure ([`Lifecycle::spawn`]): for upstream
/// connection pools, whose connections end when the pool is dropped.
#[derive(Clone, Debug)]
pub struct TaskExecutor(pub(super) Lifecycle);

impl<F> hyper::rt::Executor<F> for TaskExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}
