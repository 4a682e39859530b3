//! A network namespace joined to the root namespace by a veth pair, for
//! fault tests: a process started inside it (through [`Netns::command`] or
//! [`crate::process::Process::start_in`]) reaches the root namespace only
//! over the veth, where nftables rules inside the namespace drop its
//! datagrams on demand ([`Netns::blackhole_udp`], [`Netns::loss_udp`],
//! [`Netns::heal`]).
//!
//! Every name and subnet is unique to this process and this namespace
//! (from the pid and a counter), so test binaries and tests running at the
//! same time do not collide. Setting up needs root, iproute2 (`ip`) and
//! nftables (`nft`); a step that fails panics with the command, its stderr
//! and that hint: the fault tests fail, never skip, without them. Dropping
//! a [`Netns`] deletes the namespace and the veth pair.
//!
//! The commands are synchronous ([`std::process::Command`]): each takes
//! milliseconds, and a test runs a handful of them.

// Only tests use this module: a namespace that cannot be set up fails the
// test, and a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// What a failed setup step needs; appended to every setup panic.
const HINT: &str = "needs root, iproute2 and nftables; .ci/run installs them";

/// The nftables table (family `inet`) holding the fault rules, in the
/// namespace only.
const TABLE: &str = "tether_faults";

/// Namespaces created by this process so far: the second half of every
/// name and subnet.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The subnets are /30s in 10.200.0.0–10.254.255.255: 55 × 256 × 64 of
/// them. (A range private networks rarely use; each candidate is also
/// checked against the root namespace's addresses and routes.)
const BLOCKS: u32 = 55 * 256 * 64;
/// First address of the range.
const RANGE_START: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);
/// Prefix length of each subnet.
const PREFIX_LEN: u8 = 30;

/// A system tool's path: the usual sbin and bin directories first (a
/// non-login shell or `cargo test` may not have /usr/sbin on `PATH`),
/// else the bare name for a `PATH` lookup.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(name)
}

/// The `ip` program (iproute2).
pub fn ip_program() -> PathBuf {
    tool("ip")
}

/// `ip netns exec <netns> <program>`, ready for arguments: runs `program`
/// inside the namespace named `netns`.
///
/// `ip netns exec` switches namespaces (and remounts `/sys` in a private
/// mount namespace) and then `execvp`s the program: it forks only in batch
/// mode (`ip -batch`) or with `-all` (iproute2's `cmd_exec`, called with
/// `do_fork = batch_mode`). So the child this command spawns *is* the
/// program: its pid is the program's, and a signal sent to it (SIGTERM,
/// SIGKILL) reaches the program itself, not a wrapper.
pub fn exec_in(netns: &str, program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(ip_program());
    command.args(["netns", "exec"]).arg(netns).arg(program);
    command
}

/// A network namespace, the veth pair joining it to the root namespace,
/// and the fault rules inside it. Deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host: Ipv4Addr,
    ns: Ipv4Addr,
}

impl Netns {
    /// Creates the namespace `tth-<pid>-<n>` and a veth pair (root end
    /// `tt<pid hex>-<n hex>h`, namespace end `…n`) on a /30 of its own,
    /// addresses assigned and links (and the namespace's `lo`) up, plus an
    /// empty nftables table with input and output chains inside the
    /// namespace for the faults. Panics, naming the failed command, its
    /// stderr and what the tests need, if any step fails.
    pub fn create() -> Self {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tth-{pid}-{n}");
        let host_if = format!("tt{pid:x}-{n:x}h");
        let ns_if = format!("tt{pid:x}-{n:x}n");
        assert!(
            host_if.len() <= 15 && ns_if.len() <= 15,
            "interface names longer than 15 bytes: {host_if}, {ns_if}"
        );
        let ip = ip_program();
        // A pid is unique among live processes, so anything already named
        // like this was left behind by a dead process that had our pid.
        run_quietly(&ip, &["netns", "del", name.as_str()]);
        run_quietly(&ip, &["link", "del", host_if.as_str()]);
        let (host, ns) = free_subnet(pid, n);
        // Built before the first step: a panic in a later step drops it,
        // which deletes whatever was already created.
        let net = Self {
            name,
            host_if,
            ns_if,
            host,
            ns,
        };
        net.set_up();
        net
    }

    fn set_up(&self) {
        let ip = ip_program();
        let host_cidr = format!("{}/{PREFIX_LEN}", self.host);
        let ns_cidr = format!("{}/{PREFIX_LEN}", self.ns);
        let (name, host_if, ns_if) = (
            self.name.as_str(),
            self.host_if.as_str(),
            self.ns_if.as_str(),
        );
        let (host_cidr, ns_cidr) = (host_cidr.as_str(), ns_cidr.as_str());
        let steps: [&[&str]; 7] = [
            &["netns", "add", name],
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name,
            ],
            &["addr", "add", host_cidr, "dev", host_if],
            &["link", "set", host_if, "up"],
            &["-n", name, "addr", "add", ns_cidr, "dev", ns_if],
            &["-n", name, "link", "set", ns_if, "up"],
            &["-n", name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            run(&ip, args, None);
        }
        self.nft(&format!(
            "table inet {TABLE} {{\n\
             \tchain input {{ type filter hook input priority 0; policy accept; }}\n\
             \tchain output {{ type filter hook output priority 0; policy accept; }}\n\
             }}\n"
        ));
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root namespace's end of the veth: where processes in the root
    /// namespace listen for what runs inside.
    pub fn host_addr(&self) -> IpAddr {
        IpAddr::V4(self.host)
    }

    /// The namespace's end of the veth.
    pub fn ns_addr(&self) -> IpAddr {
        IpAddr::V4(self.ns)
    }

    /// A command running `program` inside the namespace (see [`exec_in`]).
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        exec_in(&self.name, program)
    }

    /// Drops every UDP datagram between the namespace and `host_addr():port`
    /// both ways: arriving from that port (input hook) and leaving for it
    /// (output hook). Replaces any fault in place. The namespace's sockets
    /// see a drop at the output hook as `EPERM` from `sendmsg`; quinn-udp
    /// treats that as a lost datagram (it logs and carries on), so to the
    /// QUIC stack it is a path that went black.
    pub fn blackhole_udp(&self, port: u16) {
        let host = self.host;
        self.nft(&format!(
            "flush table inet {TABLE}\n\
             add rule inet {TABLE} input ip saddr {host} udp sport {port} drop\n\
             add rule inet {TABLE} output ip daddr {host} udp dport {port} drop\n"
        ));
    }

    /// Drops `percent` % of the UDP datagrams between the namespace and
    /// `host_addr():port`, each way independently (nftables'
    /// `numgen random mod 100 < percent`). Replaces any fault in place.
    pub fn loss_udp(&self, port: u16, percent: u8) {
        assert!(percent <= 100, "a loss of {percent} %");
        let host = self.host;
        self.nft(&format!(
            "flush table inet {TABLE}\n\
             add rule inet {TABLE} input ip saddr {host} udp sport {port} numgen random mod 100 < {percent} drop\n\
             add rule inet {TABLE} output ip daddr {host} udp dport {port} numgen random mod 100 < {percent} drop\n"
        ));
    }

    /// Removes every fault: the table's rules are flushed, its chains stay.
    pub fn heal(&self) {
        self.nft(&format!("flush table inet {TABLE}\n"));
    }

    /// Runs an nft script inside the namespace, as one transaction.
    fn nft(&self, script: &str) {
        let nft = tool("nft");
        let nft = nft.to_str().expect("a UTF-8 path to nft");
        run(
            &ip_program(),
            &["netns", "exec", self.name.as_str(), nft, "-f", "-"],
            Some(script),
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let ip = ip_program();
        // A process still inside keeps the namespace alive until it exits;
        // deleting the root end of the veth deletes its peer at once.
        run_quietly(&ip, &["netns", "del", self.name.as_str()]);
        run_quietly(&ip, &["link", "del", self.host_if.as_str()]);
    }
}

/// Runs `program args` (with `stdin` fed to it, if any) and returns its
/// stdout; panics with the command line, its status, its stderr and
/// [`HINT`] if it cannot be run or fails.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let line = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}\nhint: {HINT}"));
    if let Some(text) = stdin {
        // Dropped at the end of this block: the pipe closes and the
        // program reads to its end.
        let mut pipe = child.stdin.take().expect("a piped stdin");
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to `{line}`: {e}\nhint: {HINT}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{line}` did not finish: {e}\nhint: {HINT}"));
    if !out.status.success() {
        let input = stdin
            .map(|t| format!("its input:\n{t}"))
            .unwrap_or_default();
        panic!(
            "`{line}` failed ({}): {}\n{input}\nhint: {HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args`, ignoring how it went (cleanup).
fn run_quietly(program: &Path, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The host and namespace addresses of the first /30 from this process's
/// candidates that overlaps nothing in the root namespace.
fn free_subnet(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let in_use = prefixes_in_use();
    let first = pid.wrapping_mul(64).wrapping_add(n) % BLOCKS;
    for step in 0..256 {
        let block = (first + step) % BLOCKS;
        let base = u32::from(RANGE_START) + block * 4;
        let candidate = (base, PREFIX_LEN);
        if !in_use.iter().any(|&p| overlaps(p, candidate)) {
            return (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        }
    }
    panic!("no free /30 in 10.200.0.0–10.254.255.255 near block {first}; in use: {in_use:?}");
}

/// What a new subnet must not overlap in the root namespace: every local
/// address, every gateway, and every route or on-link prefix of /16 or
/// narrower (a wider route, such as a VPN's 10.0.0.0/8, keeps working
/// everywhere but the four addresses a /30 takes).
fn prefixes_in_use() -> Vec<(u32, u8)> {
    let ip = ip_program();
    let mut found = Vec::new();
    let mut note = |word: Option<&str>, whole_prefix: bool| {
        if let Some((addr, len)) = word.and_then(parse_prefix) {
            found.push((addr, 32));
            if whole_prefix && len >= 16 {
                found.push((addr, len));
            }
        }
    };
    for line in run(&ip, &["-4", "-o", "addr", "show"], None).lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" {
                note(words.next(), true);
            }
        }
    }
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "throw",
        "unreachable",
        "prohibit",
        "blackhole",
        "nat",
        "anycast",
    ];
    for line in run(&ip, &["-4", "route", "show", "table", "all"], None).lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| TYPES.contains(w)) {
            words.next();
        }
        let dst = words.next();
        if dst != Some("default") {
            note(dst, true);
        }
        while let Some(word) = words.next() {
            if word == "via" {
                note(words.next(), false);
            }
        }
    }
    found
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32) as a number and a length.
fn parse_prefix(text: &str) -> Option<(u32, u8)> {
    let (addr, len): (&str, u8) = match text.split_once('/') {
        Some((addr, len)) => (addr, len.parse().ok()?),
        None => (text, 32),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    (len <= 32).then_some((u32::from(addr), len))
}

/// Whether two IPv4 prefixes share an address.
fn overlaps((a, a_len): (u32, u8), (b, b_len): (u32, u8)) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_they_share_an_address() {
        let p = |s: &str| parse_prefix(s).unwrap();
        assert!(overlaps(p("10.200.0.0/30"), p("10.200.0.2")));
        assert!(overlaps(p("10.200.0.0/30"), p("10.200.0.0/16")));
        assert!(!overlaps(p("10.200.0.0/30"), p("10.200.0.4/30")));
        assert!(!overlaps(p("10.200.0.0/30"), p("192.0.2.0/24")));
        assert_eq!(parse_prefix("default"), None);
        assert_eq!(parse_prefix("10.0.0.1/33"), None);
    }
}
