//! One component bench runs as a child process: spawned with its stdout
//! piped (the readiness report arrives there, `--ready-file -`) and its
//! stderr in a log file (so a child that fails to start can be explained
//! with the tail of what it said), killed and reaped when bench is done
//! with it, and killed when dropped, so an error or a panic in bench never
//! leaves a component running.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::measure::procfs::Process;

/// How much of a failed child's stderr an error quotes.
const STDERR_TAIL_BYTES: usize = 2000;

/// A running child process.
pub struct Child {
    name: String,
    pid: u32,
    child: tokio::process::Child,
    stdout: Option<BufReader<ChildStdout>>,
    stderr_log: PathBuf,
    /// Reads whatever the child prints after its readiness line, so a full
    /// pipe can never block it; aborted on drop.
    drain: Option<JoinHandle<()>>,
}

impl Child {
    /// Starts `program args…` as `name`, its stderr going to
    /// `<log_dir>/<name>.stderr`. `RUST_LOG` is passed on when set and is
    /// `warn` otherwise, so logging stays out of the measurement.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, log_dir: &Path) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stderr_log = log_dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {name} ({})", program.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("the {name} exited at once"))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Self {
            name: name.to_string(),
            pid,
            child,
            stdout,
            stderr_log,
            drain: None,
        })
    }

    /// The process, for the per-process figures.
    pub fn process(&self) -> Process {
        Process::new(self.name.clone(), self.pid)
    }

    /// Waits for the child's readiness line (one JSON object on stdout)
    /// and parses it. Fails, quoting the child's stderr, when the child
    /// exits or says nothing parseable within `timeout`.
    pub async fn ready<T: DeserializeOwned>(&mut self, timeout: Duration) -> anyhow::Result<T> {
        let mut stdout = self
            .stdout
            .take()
            .with_context(|| format!("the {}'s readiness was already read", self.name))?;
        let mut line = String::new();
        let read = tokio::time::timeout(timeout, stdout.read_line(&mut line)).await;
        let outcome = match read {
            Err(_) => Err(format!("was not ready within {timeout:?}")),
            Ok(Err(e)) => Err(format!("could not be read: {e}")),
            Ok(Ok(0)) => Err(match self.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status}) before it was ready"),
                _ => "closed its stdout before it was ready".to_string(),
            }),
            Ok(Ok(_)) => serde_json::from_str::<T>(line.trim())
                .map_err(|e| format!("printed {:?}, not its readiness report: {e}", line.trim())),
        };
        match outcome {
            Ok(report) => {
                // Ends at the child's EOF; aborted on drop before that.
                self.drain = Some(tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
                }));
                Ok(report)
            }
            Err(why) => anyhow::bail!(
                "the {} (pid {}) {why}; the end of its stderr ({}):\n{}",
                self.name,
                self.pid,
                self.stderr_log.display(),
                self.stderr_tail()
            ),
        }
    }

    /// The last 2000 bytes of what the child wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read(&self.stderr_log).unwrap_or_default();
        let from = text.len().saturating_sub(STDERR_TAIL_BYTES);
        let tail = String::from_utf8_lossy(&text[from..]).into_owned();
        if tail.trim().is_empty() {
            "(nothing)".into()
        } else {
            tail
        }
    }

    /// Kills the child and waits for it to exit (reaps it).
    pub async fn stop(mut self) {
        if let Some(drain) = self.drain.take() {
            drain.abort();
        }
        let _ = self.child.kill().await;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(drain) = self.drain.take() {
            drain.abort();
        }
        // `kill_on_drop` sends SIGKILL when `child` drops right after this;
        // reaping then falls to tokio's orphan queue. Reap now if the child
        // has already exited.
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}
