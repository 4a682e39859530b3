//! SIGTERM and SIGINT as a stream, so a binary can drain on the first and
//! force on the second, the same way under a terminal and an orchestrator.

/// The process's stop signals (SIGTERM, SIGINT), installed once.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. From here on the signals no longer kill the
    /// process; they are delivered to [`Signals::recv`]. SIGHUP (reload)
    /// is taken over here too: the reload watchers listen for it once
    /// their tasks first run, and a SIGHUP before that must not end the
    /// process (tokio keeps a handler installed for the process's life).
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            drop(signal(SignalKind::hangup())?);
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves with the next stop signal's name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}
