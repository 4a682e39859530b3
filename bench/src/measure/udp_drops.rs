//! Datagrams the kernel dropped because a UDP socket's receive buffer was
//! full, per local port, from `/proc/net/udp` and `/proc/net/udp6` (the
//! `drops` column; no privileges needed). A dropped handshake packet costs
//! a QUIC retransmission timeout (about 1 s for a first flight, doubling
//! after), so a burst of handshakes that overflows a socket shows up as a
//! p99 of seconds; `bench tunnels` reports the drops of each dialing
//! phase, at the server's socket and at its own, to tell that apart from
//! slow processing.

use std::collections::HashMap;

/// Drops so far per local UDP port (ports bound on several addresses are
/// summed); empty where `/proc` is missing.
pub fn by_port() -> HashMap<u16, u64> {
    let mut out = HashMap::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            for (port, drops) in parse(&text) {
                *out.entry(port).or_default() += drops;
            }
        }
    }
    out
}

/// `(local port, drops)` of each socket line of a `/proc/net/udp` text.
pub fn parse(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, port) = fields.get(1)?.rsplit_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let drops = fields.last()?.parse().ok()?;
            Some((port, drops))
        })
        .collect()
}

/// Drops at `ports` between two readings (a socket missing from either
/// reading counts what the other shows, so a socket bound after `before`
/// counts from zero).
pub fn between(before: &HashMap<u16, u64>, after: &HashMap<u16, u64>, ports: &[u16]) -> u64 {
    ports
        .iter()
        .map(|p| {
            let a = after.get(p).copied().unwrap_or(0);
            a.saturating_sub(before.get(p).copied().unwrap_or(0))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_per_local_port() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    \x20 1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 123 2 0000000000000000 42\n\
                    \x20 2: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 124 2 0000000000000000 0\n";
        assert_eq!(parse(text), [(8080, 42), (53, 0)]);
        let before = HashMap::from([(8080, 40)]);
        let after = HashMap::from([(8080, 42), (9000, 5)]);
        assert_eq!(between(&before, &after, &[8080, 9000, 1]), 7);
    }

    #[test]
    fn this_machine_can_be_read() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if std::path::Path::new("/proc/net/udp").exists() {
            assert_eq!(by_port().get(&port), Some(&0));
        }
    }
}
