//! Logging set-up shared by the binaries, so every process logs the same way.

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber writing to stderr. `RUST_LOG` overrides
/// `default_filter`. Calling it twice is harmless (the second is ignored),
/// which lets tests and the quick start share it.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM, so a binary stops the same way under a
/// terminal and under an orchestrator (bench's example upstream).
/// `tunnel-server` and `tunnel-client` use `lifecycle::signals::Signals`
/// instead, which also delivers the second signal that forces a stop.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
