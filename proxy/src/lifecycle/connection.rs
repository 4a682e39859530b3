//! One served HTTP connection through the phases: served while running,
//! closed gracefully when draining begins (hyper sends HTTP/2 GOAWAY, or
//! closes an HTTP/1.1 connection after the response in flight), dropped
//! when closing begins.

use std::future::Future;
use std::pin::{pin, Pin};

use tracing::debug;

use super::Lifecycle;

/// Drives `conn` (a hyper server connection) until it ends or the
/// lifecycle closes, asking it to close gracefully with `graceful` once the
/// lifecycle drains. `what` names the peer in the log line of an error.
pub async fn serve_until_closed<C, E>(
    conn: C,
    life: &Lifecycle,
    what: &str,
    graceful: impl FnOnce(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = life.draining() => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            graceful(conn.as_mut());
            tokio::select! {
                r = conn.as_mut() => r,
                _ = life.closing() => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "{what} connection ended with an error");
    }
}
