//! Where, when and how a report was produced: the machine (CPU model and
//! count, memory, kernel), the start time in UTC and the exact command
//! line. Figures from a shared two-core VM and from a 64-core server are
//! not comparable, so a report that leaves these out cannot be read later.

use std::time::{SystemTime, UNIX_EPOCH};

/// The facts a report records about its run.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// When the run started.
    pub started: SystemTime,
    /// The command line, quoted so that it can be pasted into a shell.
    pub command: String,
    /// `model name` from `/proc/cpuinfo` (`unknown` where absent, as on
    /// some ARM kernels).
    pub cpu_model: String,
    /// Logical CPUs: `processor` entries in `/proc/cpuinfo`, or what the
    /// standard library reports where that file is missing.
    pub cpus: usize,
    /// `MemTotal` from `/proc/meminfo`, KiB (0 where unreadable).
    pub mem_total_kib: u64,
    /// `/proc/sys/kernel/osrelease` (`unknown` where unreadable).
    pub kernel: String,
}

impl Provenance {
    /// Reads the machine and this process's command line, now.
    pub fn collect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        Self {
            started: SystemTime::now(),
            command: shell_line(std::env::args()),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_string()),
            cpus: match cpu_count(&cpuinfo) {
                0 => std::thread::available_parallelism().map_or(0, |n| n.get()),
                n => n,
            },
            mem_total_kib: mem_total_kib(&read("/proc/meminfo")).unwrap_or(0),
            kernel: if kernel.is_empty() {
                "unknown".to_string()
            } else {
                kernel
            },
        }
    }
}

/// The first `model name` in `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// The `processor` entries in `/proc/cpuinfo` text.
pub fn cpu_count(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count()
}

/// `MemTotal` in `/proc/meminfo` text, KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `args` joined with spaces, each quoted for a POSIX shell when it holds
/// anything but plainly safe characters.
pub fn shell_line(args: impl IntoIterator<Item = String>) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    args.into_iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(safe) {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC` (times before 1970 print as the epoch).
pub fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for every day in range).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_dates_are_calendar_dates() {
        let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(at(1_798_761_600), "2027-01-01 00:00:00 UTC");
    }

    #[test]
    fn proc_files_are_read_by_key() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                       model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(cpu_count(cpuinfo), 2);
        let meminfo = "MemTotal:       24596848 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_596_848));
        assert_eq!(mem_total_kib(""), None);
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args = ["bench", "unary", "--report", "/tmp/my report", "it's", ""];
        assert_eq!(
            shell_line(args.map(String::from)),
            r"bench unary --report '/tmp/my report' 'it'\''s' ''"
        );
    }

    #[test]
    fn collect_reads_this_machine() {
        let p = Provenance::collect();
        assert!(p.cpus > 0);
        assert!(!p.command.is_empty());
    }
}
