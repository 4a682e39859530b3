//! Readers of one process's CPU time and memory from Linux's `/proc`, for
//! the per-process columns: bench itself (`/proc/self`) and every child it
//! measures (`/proc/<pid>`). Nothing here needs privileges: a process may
//! read the `stat` and `status` of its own children.

use std::sync::OnceLock;
use std::time::Duration;

/// A process whose CPU and memory are read, by pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// What the report calls it (`gen`, `edge`, `client`, `upstream`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its admin listener, where its probes are read
    /// ([`crate::measure::probes`]); `None` for processes without one.
    pub admin: Option<std::net::SocketAddr>,
}

impl Process {
    /// The process `pid`, called `name`.
    pub fn new(name: impl Into<String>, pid: u32) -> Self {
        Self {
            name: name.into(),
            pid,
            admin: None,
        }
    }

    /// This process (bench), called `name`.
    pub fn current(name: impl Into<String>) -> Self {
        Self::new(name, std::process::id())
    }

    /// CPU time (user + system) the process has used so far, from
    /// `/proc/<pid>/stat`; `None` when the process is gone or `/proc` is
    /// missing.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        cpu_of_stat(&stat, clock_ticks_per_second())
    }

    /// Resident set size now (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS")
    }

    /// Peak resident set size so far (`VmHWM`, the high-water mark), KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status_field_kib(&status, field)
    }
}

/// Clock ticks per second, the unit of `utime` and `stime` in
/// `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`, 100 on every common Linux
/// build, but read rather than assumed). Read once.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    })
}

/// `utime + stime` of a `/proc/<pid>/stat` line, at `hz` ticks a second.
pub fn cpu_of_stat(stat: &str, hz: u64) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself, so fields are counted from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after
    // the command name.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let total = ticks(11)?.checked_add(ticks(12)?)?;
    let hz = hz.max(1);
    let micros = u128::from(total) * 1_000_000 / u128::from(hz);
    Some(Duration::from_micros(u64::try_from(micros).ok()?))
}

/// A `kB` field (`VmRSS`, `VmHWM`) of a `/proc/<pid>/status` text.
pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_utime_plus_stime_in_ticks() {
        // A command name with a space and a parenthesis, as `comm` allows.
        let stat = "4242 (tunnel (srv) x) S 1 4242 4242 0 -1 4194560 1015 0 0 0 \
                    250 130 0 0 20 0 5 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(cpu_of_stat(stat, 100), Some(Duration::from_millis(3_800)));
        assert_eq!(cpu_of_stat(stat, 1000), Some(Duration::from_millis(380)));
        assert_eq!(cpu_of_stat("garbage", 100), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\ttunnel-server\nVmHWM:\t   10240 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS"), Some(8192));
        assert_eq!(status_field_kib(status, "VmHWM"), Some(10240));
        assert_eq!(status_field_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = Process::current("gen");
        assert!(me.rss_kib().unwrap_or(0) > 0);
        assert!(me.peak_rss_kib().unwrap_or(0) >= me.rss_kib().unwrap_or(0));
        assert!(me.cpu().is_some());
        assert!(clock_ticks_per_second() > 0);
        assert_eq!(Process::new("gone", u32::MAX).cpu(), None);
    }
}
