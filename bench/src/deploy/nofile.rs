//! The open-file limit (`ulimit -n`), checked before `bench tunnels`
//! starts anything, so a limit too low fails at once with what to raise
//! instead of as a socket error half-way through a run.
//!
//! Thousands of QUIC connections need few descriptors: every connection of
//! a quinn endpoint shares that endpoint's one UDP socket, at the edge (one
//! listener) as in bench (a few client endpoints). What does take
//! descriptors is the rest of the run: the children's pipes and logs, the
//! gRPC connections of the light load, the runtime's own. The check is for
//! those, and for a soft limit lowered far below the usual 1024.

use std::path::Path;

/// Descriptors bench needs beyond one per client endpoint: the runtime,
/// the children's pipes and stderr logs, the light load's connections, the
/// handshake ceiling's server socket, with room to spare.
pub const BASE_NEED: u64 = 128;

/// The soft limit on open files of this process (what `ulimit -n` shows),
/// from `/proc/self/limits`; `None` when it cannot be read or is
/// `unlimited`.
pub fn soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/self/limits")).ok()?;
    soft_limit_of(&text)
}

/// The `Max open files` soft limit in a `/proc/<pid>/limits` text.
pub fn soft_limit_of(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let rest = line.strip_prefix("Max open files")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Fails, saying what to run, when fewer than `need` descriptors may be
/// open; passes when the limit cannot be read (no `/proc`: nothing else
/// bench measures would work either, and that fails on its own).
pub fn check(need: u64) -> anyhow::Result<()> {
    match soft_limit() {
        Some(limit) if limit < need => anyhow::bail!(
            "the open-file limit is {limit} (ulimit -n) and this run needs about {need} \
             descriptors (QUIC connections share one UDP socket per endpoint, so this does \
             not grow with --tunnels; it is the runtime, the children and --endpoints): \
             raise it with `ulimit -n {need}` in this shell, or pass fewer --endpoints"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max stack size            8388608              unlimited            bytes     \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_limit_of(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_limit_of(unlimited), None);
        assert_eq!(soft_limit_of(""), None);
    }

    #[test]
    fn this_process_passes_a_small_need_and_fails_a_huge_one() {
        assert!(check(16).is_ok());
        if let Some(limit) = soft_limit() {
            let err = check(limit + 1).err().map(|e| e.to_string());
            assert!(err.unwrap_or_default().contains("ulimit -n"));
        }
    }
}
