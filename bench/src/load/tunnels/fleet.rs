//! Many emulated tunnels dialed with a fixed number of handshakes in
//! flight, and then held: the timed phases of `bench tunnels`, against the
//! edge and against the handshake ceiling alike.
//!
//! `concurrency` workers each take the next tunnel, dial it (bounded by
//! the registration timeout) and take another, so exactly that many
//! handshakes are in flight until the list or the run's deadline runs out.
//! The tunnels share a few quinn client endpoints (one UDP socket each)
//! in turn: one endpoint's driver would be the bottleneck of thousands of
//! connections, one socket per tunnel would cost a descriptor each, and
//! the edge sees N distinct connections either way.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use proxy::Limits;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::load::tunnels::registration::{self, Goal, Held};
use crate::measure::measurement::{self, Measurement};
use crate::measure::procfs::Process;
use crate::measure::progress::{Counters, Progress};
use crate::measure::timeline::Sampler;
use crate::measure::udp_drops;
use crate::measure::usage::{self, Window};

/// How long closing the tunnels may take to reach the peer before the
/// endpoints are dropped anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where and how one phase dials.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The QUIC listener to dial.
    pub addr: SocketAddr,
    /// The name its certificate is verified for.
    pub server_name: String,
    /// Register, or handshake only.
    pub goal: Goal,
    /// Handshakes in flight.
    pub concurrency: usize,
    /// A tunnel not there within this counts as failed (timed out).
    pub timeout: Duration,
    /// No tunnel is started after this; those left are counted as not
    /// started.
    pub deadline: Instant,
    /// The progress line's label, when it is shown.
    pub label: String,
    /// Show the progress line.
    pub progress: bool,
}

/// What one phase measured.
pub struct Outcome {
    /// Registration latency, counts, elapsed time (first dial to last
    /// answer), each process's CPU over the phase, the timeline.
    pub measurement: Measurement,
    /// Tunnels that failed before their timeout (also in `errors`).
    pub failed: u64,
    /// Tunnels that did not complete within the timeout (also in
    /// `errors`).
    pub timed_out: u64,
    /// Tunnels never started: the run's deadline came first.
    pub not_started: u64,
    /// Each distinct failure and how often it happened, most frequent
    /// first (at most [`REASONS`]).
    pub reasons: Vec<(String, u64)>,
    /// Datagrams the server's socket dropped during the phase (receive
    /// buffer full), from `/proc/net/udp`.
    pub server_drops: u64,
    /// Datagrams bench's own client sockets dropped.
    pub client_drops: u64,
}

/// How many distinct failure messages an outcome keeps.
pub const REASONS: usize = 8;

/// The tunnels a phase connected and the endpoints they use; closing it
/// (or dropping it) closes every connection.
pub struct Fleet {
    held: Vec<Held>,
    endpoints: Vec<quinn::Endpoint>,
}

impl Fleet {
    /// Tunnels connected.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no tunnel connected.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Closes every connection, lets the closes reach the peer (bounded by
    /// [`CLOSE_GRACE`]) and releases the sockets.
    pub async fn close(self) {
        for h in &self.held {
            h.close();
        }
        for e in &self.endpoints {
            e.close(0u32.into(), b"bench tunnels done");
        }
        for e in &self.endpoints {
            let _ = tokio::time::timeout(CLOSE_GRACE, e.wait_idle()).await;
        }
    }
}

/// `count` client endpoints on loopback, each its own UDP socket.
pub fn endpoints(count: usize) -> anyhow::Result<Vec<quinn::Endpoint>> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    (0..count.max(1))
        .map(|_| {
            // The same socket buffers as the real tunnel client's.
            proxy::udp::endpoint(any, Limits::default().udp_buffer_bytes as usize, None)
                .context("binding a QUIC client endpoint")
        })
        .collect()
}

/// What one worker did.
struct Tally {
    held: Vec<Held>,
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    timed_out: u64,
    reasons: BTreeMap<String, u64>,
}

/// Dials tunnel `i` with `configs[i]` for every `i`, `plan.concurrency` at
/// a time, over `endpoints` in turn, reading `processes`' CPU over the
/// phase. Returns the tunnels that connected (held until the fleet is
/// closed) and the figures.
pub async fn dial_all(
    endpoints: Vec<quinn::Endpoint>,
    configs: &[quinn::ClientConfig],
    plan: &Plan,
    processes: &[Process],
) -> anyhow::Result<(Fleet, Outcome)> {
    anyhow::ensure!(!endpoints.is_empty(), "no client endpoint");
    let configs: Arc<[quinn::ClientConfig]> = configs.into();
    let next = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(plan.label.clone(), counters.clone(), plan.progress);
    let sampler = Sampler::start(counters.clone());
    let ports: Vec<u16> = endpoints
        .iter()
        .filter_map(|e| e.local_addr().ok())
        .map(|a| a.port())
        .collect();
    let drops_before = udp_drops::by_port();
    let window = Window::open(processes);
    let started = Instant::now();
    // Each worker ends when the list or the deadline runs out, and each
    // dial is bounded by the timeout; all are joined below.
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1).min(configs.len().max(1)) {
        let (configs, next, counters) = (configs.clone(), next.clone(), counters.clone());
        let (endpoints, plan) = (endpoints.clone(), plan.clone());
        workers.spawn(async move { worker(&endpoints, &configs, &next, &counters, &plan).await });
    }
    let mut held = Vec::new();
    let mut m = Measurement::new();
    let (mut failed, mut timed_out) = (0, 0);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(done) = workers.join_next().await {
        let t = done.context("a dialing worker failed")?;
        held.extend(t.held);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = m.hist.add(&t.hist);
        m.calls += t.ok;
        failed += t.failed;
        timed_out += t.timed_out;
        for (why, n) in t.reasons {
            *reasons.entry(why).or_default() += n;
        }
    }
    m.elapsed = started.elapsed();
    m.errors = failed + timed_out;
    m.processes = window.close();
    let drops_after = udp_drops::by_port();
    m.cpu = usage::total_cpu(&m.processes);
    m.rss_kib = measurement::rss_kib();
    m.timeline = sampler.finish().await;
    drop(progress);
    let attempted = u64::try_from(next.load(Ordering::Relaxed).min(configs.len())).unwrap_or(0);
    let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    reasons.truncate(REASONS);
    let outcome = Outcome {
        measurement: m,
        failed,
        timed_out,
        not_started: (configs.len() as u64).saturating_sub(attempted),
        reasons,
        server_drops: udp_drops::between(&drops_before, &drops_after, &[plan.addr.port()]),
        client_drops: udp_drops::between(&drops_before, &drops_after, &ports),
    };
    Ok((Fleet { held, endpoints }, outcome))
}

async fn worker(
    endpoints: &[quinn::Endpoint],
    configs: &[quinn::ClientConfig],
    next: &AtomicUsize,
    counters: &Counters,
    plan: &Plan,
) -> Tally {
    let mut t = Tally {
        held: Vec::new(),
        hist: measurement::latency_histogram(),
        ok: 0,
        failed: 0,
        timed_out: 0,
        reasons: BTreeMap::new(),
    };
    loop {
        if Instant::now() >= plan.deadline {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(cfg) = configs.get(i) else { break };
        let endpoint = &endpoints[i % endpoints.len()];
        let started = Instant::now();
        let dialed = registration::dial(
            endpoint,
            cfg.clone(),
            plan.addr,
            &plan.server_name,
            plan.goal,
        );
        match tokio::time::timeout(plan.timeout, dialed).await {
            Ok(Ok(held)) => {
                measurement::record(&mut t.hist, started.elapsed());
                t.held.push(held);
                t.ok += 1;
                Counters::bump(&counters.done);
            }
            Ok(Err(e)) => {
                t.failed += 1;
                *t.reasons.entry(format!("{e:#}")).or_default() += 1;
                Counters::bump(&counters.errors);
            }
            Err(_) => {
                t.timed_out += 1;
                *t.reasons
                    .entry(format!("not registered within {:?}", plan.timeout))
                    .or_default() += 1;
                Counters::bump(&counters.errors);
            }
        }
    }
    t
}
