//! `bench`: Tether's load-test harness.
//!
//! Today it runs the `unary` scenario on an in-process topology (edge,
//! tunnel client and example upstream in this process, on loopback) and
//! compares audit durability modes side by side in one run, so the ratio
//! holds on a noisy machine. The full harness (separate processes, open-loop
//! rate, bulk, many tunnels, the raw-QUIC ceiling, reports and charts) is
//! the load-test issue's work.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{Options, Topology};

/// Load-tests Tether.
#[derive(Parser)]
#[command(
    version,
    about,
    after_help = "Example:\n  cargo run --release -p bench -- unary --concurrency 64 --duration 5 --audit always,none --rounds 3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Audit {
    Always,
    Interval,
    None,
}

#[derive(Subcommand)]
enum Command {
    /// Small gRPC unary calls, closed loop at a fixed concurrency, through
    /// caller → edge → QUIC → client → upstream, once per audit mode.
    Unary {
        /// Calls in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Payload bytes per request and response.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Audit durability modes to compare (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "always,none")]
        audit: Vec<Audit>,
        /// Rounds: each round measures every mode once, alternating, so
        /// drift on a shared machine hits all modes alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The client's audit mode, when it should differ from the edge's
        /// (in production the two ends write to different disks; here they
        /// share one journal).
        #[arg(long)]
        client_audit: Option<Audit>,
        /// Cap on calls per measurement, so a run always ends.
        #[arg(long, default_value_t = 5_000_000)]
        max_calls: u64,
    },
}

fn durability(a: Audit) -> Durability {
    match a {
        Audit::Always => Durability::Always,
        Audit::Interval => Durability::Interval(Duration::from_millis(100)),
        Audit::None => Durability::None,
    }
}

/// CPU time (user + system) this process has used, from /proc.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    // Linux reports them in clock ticks of 1/100 s (USER_HZ).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One measurement's figures.
struct Figures {
    calls_per_sec: f64,
    cpu_us_per_call: f64,
}

/// Runs one measurement; returns completed calls per second.
async fn measure(
    mode: Audit,
    client_mode: Option<Audit>,
    concurrency: usize,
    duration: Duration,
    size: usize,
    max_calls: u64,
) -> anyhow::Result<Figures> {
    let topo = Topology::start_with(Options {
        audit_durability: durability(mode),
        client_audit_durability: client_mode.map(durability),
        ..Options::default()
    })
    .await?;
    let host = topo.host("echo");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // A few HTTP/2 connections, as a real client pool would use.
    let mut clients = Vec::new();
    for _ in 0..4.min(concurrency) {
        clients.push(grpc_plaintext(topo.plaintext_addr, &host).await?);
    }
    // Warm-up: connections, pools, allocator.
    for c in &mut clients {
        c.unary(EchoRequest::default()).await?;
    }
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut workers = Vec::new();
    for i in 0..concurrency {
        let mut client = clients[i % clients.len()].clone();
        let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
        let payload = vec![7u8; size];
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = EchoRequest {
                    payload: payload.clone(),
                    ..Default::default()
                };
                match client.unary(req).await {
                    Ok(_) => {
                        if done.fetch_add(1, Ordering::Relaxed) + 1 >= max_calls {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tick.tick() => {
                eprint!("\r  {mode:?}: {:>9} calls, {:>6} errors, {:>4.1}s", done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed), started.elapsed().as_secs_f64());
                if stop.load(Ordering::Relaxed) { break; }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    for w in workers {
        let _ = w.await;
    }
    eprintln!();
    let n = done.load(Ordering::Relaxed);
    let errs = errors.load(Ordering::Relaxed);
    if errs > 0 {
        anyhow::bail!("{errs} calls failed in {mode:?} mode; the figure would be meaningless");
    }
    let audit_stats = topo.edge_audit_log.stats();
    eprintln!(
        "  {mode:?}: edge audit wrote {} records with {} fsyncs",
        audit_stats.records_written, audit_stats.syncs
    );
    topo.shutdown().await;
    Ok(Figures {
        calls_per_sec: n as f64 / elapsed.as_secs_f64(),
        cpu_us_per_call: cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
    })
}

async fn unary(
    concurrency: usize,
    duration: u64,
    size: usize,
    modes: Vec<Audit>,
    client_mode: Option<Audit>,
    rounds: usize,
    max_calls: u64,
) -> anyhow::Result<()> {
    proxy::telemetry::init("error");
    let mut results: Vec<(Audit, Vec<Figures>)> = modes.iter().map(|m| (*m, Vec::new())).collect();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for (mode, figures) in results.iter_mut() {
            figures.push(
                measure(
                    *mode,
                    client_mode,
                    concurrency,
                    Duration::from_secs(duration),
                    size,
                    max_calls,
                )
                .await?,
            );
        }
    }
    let client = client_mode.map_or("same as edge".to_string(), |m| {
        format!("{m:?}").to_lowercase()
    });
    println!("unary, concurrency {concurrency}, {size}-byte payloads, {duration}s × {rounds} rounds, in-process topology, client audit: {client}");
    println!(
        "{:<10} {:>12} {:>12} {:>24}",
        "audit", "calls/s", "vs first", "CPU µs/call (process)"
    );
    let median = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median(results[0].1.iter().map(|f| f.calls_per_sec).collect());
    for (mode, figures) in &results {
        let m = median(figures.iter().map(|f| f.calls_per_sec).collect());
        let cpu = median(figures.iter().map(|f| f.cpu_us_per_call).collect());
        println!(
            "{:<10} {:>12.0} {:>11.3}× {:>24.1}",
            format!("{mode:?}").to_lowercase(),
            m,
            m / base,
            cpu
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Unary {
            concurrency,
            duration,
            size,
            audit,
            rounds,
            client_audit,
            max_calls,
        } => {
            if audit.is_empty() || rounds == 0 || concurrency == 0 {
                eprintln!("error: need at least one audit mode, one round and concurrency ≥ 1");
                return ExitCode::FAILURE;
            }
            rt.block_on(unary(
                concurrency,
                duration,
                size,
                audit,
                client_audit,
                rounds,
                max_calls,
            ))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
