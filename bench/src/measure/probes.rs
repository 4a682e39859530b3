//! What a process's probes say over a measurement window: the stage sums
//! of `--stage-timing` and the heap counts of a `count-allocations` build,
//! read from its `/metrics` when the window opens and when it closes
//! (docs/performance.md, "Latency breakdown"). A process with neither
//! serves no such families, and its window has no probe figures.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

/// How long one scrape may take: the admin listener is on loopback.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of one `/metrics` answer read.
const MAX_SCRAPE_BYTES: u64 = 4 << 20;

/// One stage's totals: seconds spent in it and calls through it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StageTotals {
    /// Seconds over all calls.
    pub seconds: f64,
    /// Calls that passed through it.
    pub calls: u64,
}

/// Heap counts since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeapTotals {
    /// `alloc` calls.
    pub allocations: u64,
    /// `realloc` calls.
    pub reallocations: u64,
    /// Bytes allocated.
    pub bytes: u64,
}

/// One scrape's probe figures, or a window's difference of two.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Probes {
    /// By stage label (`open.decided`, `accept.service`, …).
    pub stages: BTreeMap<String, StageTotals>,
    /// `None` unless the process is a `count-allocations` build.
    pub heap: Option<HeapTotals>,
}

impl Probes {
    /// True when the process serves neither probe.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.heap.is_none()
    }

    /// What happened between `self` (the window's start) and `later`.
    pub fn until(&self, later: &Probes) -> Probes {
        let stages = later
            .stages
            .iter()
            .map(|(name, after)| {
                let before = self.stages.get(name).copied().unwrap_or_default();
                let delta = StageTotals {
                    seconds: (after.seconds - before.seconds).max(0.0),
                    calls: after.calls.saturating_sub(before.calls),
                };
                (name.clone(), delta)
            })
            .filter(|(_, d)| d.calls > 0)
            .collect();
        let heap = match (self.heap, later.heap) {
            (Some(b), Some(a)) => Some(HeapTotals {
                allocations: a.allocations.saturating_sub(b.allocations),
                reallocations: a.reallocations.saturating_sub(b.reallocations),
                bytes: a.bytes.saturating_sub(b.bytes),
            }),
            _ => None,
        };
        Probes { stages, heap }
    }

    /// Adds `other`'s figures to these (windows of one path merged).
    pub fn add(&mut self, other: &Probes) {
        for (name, t) in &other.stages {
            let e = self.stages.entry(name.clone()).or_default();
            e.seconds += t.seconds;
            e.calls += t.calls;
        }
        self.heap = match (self.heap, other.heap) {
            (Some(a), Some(b)) => Some(HeapTotals {
                allocations: a.allocations + b.allocations,
                reallocations: a.reallocations + b.reallocations,
                bytes: a.bytes + b.bytes,
            }),
            (a, b) => a.or(b),
        };
    }
}

/// The order of a call's steps, as proxy::probes::stages names them.
const STEP_ORDER: [&str; 11] = [
    "decided",
    "queued",
    "stream",
    "open_sent",
    "durable",
    "peer_audited",
    "request_sent",
    "response",
    "service",
    "response_sent",
    "finished",
];

/// The stages in a call's order: the opener's steps, then the
/// acceptor's (a process is one of them per path).
pub fn in_call_order(probes: &Probes) -> Vec<(String, StageTotals)> {
    let rank = |name: &str| {
        let (role, step) = name.split_once('.').unwrap_or(("", name));
        let role = usize::from(role != "open");
        let step = STEP_ORDER
            .iter()
            .position(|s| *s == step)
            .unwrap_or(STEP_ORDER.len());
        (role, step)
    };
    let mut out: Vec<(String, StageTotals)> =
        probes.stages.iter().map(|(k, v)| (k.clone(), *v)).collect();
    out.sort_by_key(|(name, _)| rank(name));
    out
}

/// Reads `/metrics` from an admin listener and keeps the probe families.
/// A process that cannot be scraped (it died mid-run) gives empty probes:
/// its failure shows in the calls, not here.
pub fn scrape(admin: SocketAddr) -> Probes {
    match fetch_metrics(admin) {
        Ok(text) => parse(&text),
        Err(e) => {
            eprintln!("bench: could not read {admin}/metrics for the probes: {e}");
            Probes::default()
        }
    }
}

fn fetch_metrics(admin: SocketAddr) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&admin, SCRAPE_TIMEOUT)?;
    conn.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    conn.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    conn.take(MAX_SCRAPE_BYTES).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other("no HTTP head in the answer"));
    };
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("").to_string();
        return Err(std::io::Error::other(format!("answered {status}")));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The body of a chunked answer (hyper chunks a streamed body).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The probe families of a Prometheus text exposition.
pub fn parse(text: &str) -> Probes {
    let mut probes = Probes::default();
    let mut heap = HeapTotals::default();
    let mut has_heap = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        match name {
            "tether_stage_seconds_total" | "tether_stage_calls_total" => {
                let Some(stage) = label(series, "stage") else {
                    continue;
                };
                let e = probes.stages.entry(stage.to_string()).or_default();
                if name == "tether_stage_seconds_total" {
                    e.seconds = value;
                } else {
                    e.calls = value as u64;
                }
            }
            "tether_allocations_total" => {
                has_heap = true;
                heap.allocations = value as u64;
            }
            "tether_reallocations_total" => heap.reallocations = value as u64,
            "tether_allocated_bytes_total" => heap.bytes = value as u64,
            _ => {}
        }
    }
    probes.heap = has_heap.then_some(heap);
    probes
}

/// The value of label `key` in a series `name{k="v",…}`.
fn label<'a>(series: &'a str, key: &str) -> Option<&'a str> {
    let inner = series.split_once('{')?.1.strip_suffix('}')?;
    inner.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP tether_stage_seconds_total Time.
# TYPE tether_stage_seconds_total counter
tether_stage_seconds_total{stage="open.decided",side="edge"} 0.5
tether_stage_seconds_total{stage="open.response",side="edge"} 2
tether_stage_calls_total{stage="open.decided",side="edge"} 10
tether_stage_calls_total{stage="open.response",side="edge"} 10
tether_allocations_total{side="edge"} 1000
tether_reallocations_total{side="edge"} 10
tether_allocated_bytes_total{side="edge"} 64000
tether_streams_opened_total{decision="allow",side="edge"} 10
"#;

    #[test]
    fn a_scrape_gives_every_stage_and_the_heap_counts() {
        let p = parse(SCRAPE);
        assert_eq!(
            p.stages["open.decided"],
            StageTotals {
                seconds: 0.5,
                calls: 10
            }
        );
        assert_eq!(p.stages["open.response"].seconds, 2.0);
        assert_eq!(
            p.heap,
            Some(HeapTotals {
                allocations: 1000,
                reallocations: 10,
                bytes: 64000
            })
        );
    }

    #[test]
    fn a_process_without_probes_has_none() {
        let p = parse("tether_streams_opened_total{side=\"edge\"} 3\n");
        assert!(p.is_empty());
    }

    #[test]
    fn a_window_is_the_difference_and_drops_stages_no_call_passed() {
        let before = parse(SCRAPE);
        let after = parse(&SCRAPE.replace("} 10\n", "} 30\n").replace("} 2\n", "} 6\n"));
        let w = before.until(&after);
        assert_eq!(w.stages["open.response"].calls, 20);
        assert!((w.stages["open.response"].seconds - 4.0).abs() < 1e-9);
        // open.decided's seconds did not move but its calls did.
        assert_eq!(w.stages["open.decided"].calls, 20);
        let still = before.until(&before);
        assert!(still.stages.is_empty());
        assert_eq!(still.heap.map(|h| h.allocations), Some(0));
    }

    #[test]
    fn a_chunked_body_is_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
