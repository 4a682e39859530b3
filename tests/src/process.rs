//! The binaries as processes, the way an orchestrator runs them: start
//! `tunnel-server` or `tunnel-client` from a configuration file, wait until
//! it reports ready, read its log as it arrives, signal or kill it (also
//! inside a network namespace: [`Process::start_in`]). Every
//! wait is on an event (a log line, the ready report, the exit), bounded
//! by [`PATIENCE`] so a hang fails instead of stalling.
//!
//! The binaries come from the same target directory as the test: `cargo
//! test --workspace` builds them; alone, run `cargo build -p tunnel-server
//! -p tunnel-client` first.

// Only tests use this module: a process that cannot be started, read or
// signalled fails the test, and a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

/// Bounds every wait for a process: far above what any step takes, so
/// only a hang reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Where cargo put the binaries: this test runs from `target/<profile>/deps`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} missing: run `cargo build -p tunnel-server -p tunnel-client` \
         (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// A process's log lines as they arrive, so a test can wait for one.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    grew: Notify,
}

impl Log {
    /// Everything logged so far, one line per line (for failure messages).
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Whether any line so far contains `needle`.
    pub fn has(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits until a line containing `needle` was logged.
    pub async fn wait_for(&self, needle: &str) {
        self.wait_until(&format!("a log line with {needle:?}"), |lines| {
            lines.iter().any(|l| l.contains(needle))
        })
        .await;
    }

    /// Waits until `holds` is true of the lines logged so far (checked
    /// each time the log grows), bounded by [`PATIENCE`]; `what` names
    /// the condition in the failure message.
    pub async fn wait_until(&self, what: &str, holds: impl Fn(&[String]) -> bool) {
        let wait = async {
            loop {
                let grew = self.grew.notified();
                if holds(&self.lines.lock().unwrap()) {
                    return;
                }
                grew.await;
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!("timed out waiting for {what}; the log:\n{}", self.text());
        }
    }

    /// Lines so far that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// How [`Process::start_launched`] runs a binary.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Arguments after `run --config … --ready-file -`.
    pub args: Vec<String>,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// Set `NO_COLOR=1` (the default; the logs are read as text).
    pub no_color: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            log_filter: "info".into(),
            no_color: true,
        }
    }
}

/// A running `tunnel-server` or `tunnel-client`, killed if the test fails.
pub struct Process {
    child: tokio::process::Child,
    /// What it printed to `--ready-file -`: the addresses it bound.
    pub ready: Value,
    /// Its log (stderr), line by line.
    pub log: Arc<Log>,
}

impl Process {
    /// Runs `binary run --config config --ready-file -` and returns once
    /// it reported ready.
    pub async fn start(binary: &str, config: &Path) -> Self {
        Self::start_program(&bin(binary), config).await
    }

    /// [`Process::start`] for an executable anywhere (bench runs the
    /// release binaries).
    pub async fn start_program(program: &Path, config: &Path) -> Self {
        let what = program.display().to_string();
        Self::start_command(tokio::process::Command::new(program), what, config).await
    }

    /// [`Process::start`] inside the network namespace `netns` (see
    /// [`crate::netns`]): runs
    /// `ip netns exec <netns> <binary> run --config <config> --ready-file -`.
    /// `ip netns exec` execs the binary in its own
    /// place (it forks only in batch mode; [`crate::netns::exec_in`]), so
    /// the child is the binary itself: [`Process::terminate`],
    /// [`Process::kill`] and [`Process::pid`] reach it, not a wrapper.
    pub async fn start_in(netns: &str, binary: &str, config: &Path) -> Self {
        let program = bin(binary);
        let what = format!("{} (in network namespace {netns})", program.display());
        Self::start_command(crate::netns::exec_in(netns, &program), what, config).await
    }

    /// [`Process::start`] as `launch` says: extra arguments after `run`'s,
    /// the log filter, and whether `NO_COLOR` is set (tests of the log
    /// output itself leave it unset).
    pub async fn start_launched(binary: &str, config: &Path, launch: &Launch) -> Self {
        let program = bin(binary);
        let what = program.display().to_string();
        Self::start_command_with(tokio::process::Command::new(program), what, config, launch).await
    }

    /// Adds `run --config config --ready-file -` to `command` (the binary,
    /// or what execs it), starts it and returns once it reported ready;
    /// `binary` names it in failures.
    async fn start_command(
        command: tokio::process::Command,
        binary: String,
        config: &Path,
    ) -> Self {
        Self::start_command_with(command, binary, config, &Launch::default()).await
    }

    async fn start_command_with(
        mut command: tokio::process::Command,
        binary: String,
        config: &Path,
        launch: &Launch,
    ) -> Self {
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--ready-file", "-"])
            .args(&launch.args)
            .env("RUST_LOG", &launch.log_filter);
        if launch.no_color {
            command.env("NO_COLOR", "1");
        } else {
            command.env_remove("NO_COLOR");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_waiters();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = tokio::time::timeout(PATIENCE, stdout.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            let status = child.try_wait().ok().flatten();
            panic!(
                "{binary} did not report ready ({status:?}); its log:\n{}",
                log.text()
            );
        }
        let ready = serde_json::from_str(line.trim()).unwrap();
        Self { child, ready, log }
    }

    /// The process's pid (for reading `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// An address from the ready report (`tunnels`, `plaintext`, `admin`…).
    pub fn addr(&self, key: &str) -> SocketAddr {
        self.ready[key].as_str().unwrap().parse().unwrap()
    }

    /// Sends SIGTERM, as an orchestrator stopping a pod or a unit does.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process is running");
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Sends SIGKILL and reaps the process: a crash, with no chance to
    /// close anything.
    pub async fn kill(&mut self) {
        self.child
            .kill()
            .await
            .expect("the process could be killed");
    }

    /// Waits for the process to exit (bounded by [`PATIENCE`]).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the process did not exit; its log:\n{}", self.log.text()),
        }
    }
}
