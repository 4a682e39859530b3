//! Keeps a [`PolicyHandle`] in step with its file: reloads on SIGHUP and
//! when the file changes (polled, so it works on every filesystem and with
//! Kubernetes ConfigMap symlink swaps). A bad file is refused and logged;
//! the old policy stays.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::PolicyHandle;

/// How often the file is checked for changes: a stat call, cheap enough to
/// run twice a second so a revocation written to the file takes effect
/// within a second (SIGHUP is immediate).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What identifies a version of the file without reading it.
pub type Fingerprint = (SystemTime, u64);

/// The file's modification time and size.
pub fn fingerprint(path: &std::path::Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn reload_now(handle: &PolicyHandle, why: &str) {
    match handle.reload() {
        Ok(()) => {
            let p = handle.current();
            info!(
                trigger = why,
                rules = p.rules.len(),
                dry_run = p.dry_run,
                "policy reloaded"
            );
        }
        Err(e) => {
            error!(trigger = why, error = %e, failures = handle.failures(), "policy reload refused; the previous policy stays in force")
        }
    }
}

/// Runs until `cancel`: reloads on SIGHUP and on file change.
pub async fn watch(handle: Arc<PolicyHandle>, interval: Duration, cancel: CancellationToken) {
    let Some(path) = handle.source().map(|p| p.to_path_buf()) else {
        return;
    };
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<()>();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sighup => reload_now(&handle, "SIGHUP"),
            _ = tokio::time::sleep(interval) => {
                if fingerprint(&path) != handle.fingerprint() {
                    reload_now(&handle, "file change");
                }
            }
        }
    }
}
