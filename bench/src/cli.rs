//! The command line: one subcommand per scenario, each building its
//! scenario's config, running it and printing the report (a table, or one
//! JSON document with `--json`), and with `--report DIR` also writing it as
//! files (markdown, JSON, SVG charts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::byte_size::ByteSize;
use crate::deploy::audit::Audit;
use crate::deploy::deploy_args::DeployArgs;
use crate::load::bulk::transfer::Direction;
use crate::paths::Path;
use crate::report::model::Report;
use crate::report::provenance::Provenance;
use crate::scenarios::audit::{self, AuditConfig};
use crate::scenarios::bulk::{self, BulkConfig, BulkLoad};
use crate::scenarios::fairness::{self, FairnessConfig};
use crate::scenarios::fleet::{self, FleetConfig};
use crate::scenarios::rate::{self, OpenLoop, RateConfig};
use crate::scenarios::recovery::{self, RecoveryConfig};
use crate::scenarios::tunnels::{self, TunnelsConfig};
use crate::scenarios::unary::{self, ClosedLoop, UnaryConfig};

const AFTER_HELP: &str = "\
By default the edge, the tunnel client and the example upstream run as
separate processes on loopback: the tunnel-server and tunnel-client
binaries found next to this bench (or in --bin-dir; build them with
`cargo build --release -p tunnel-server -p tunnel-client -p bench`), and
this bench again as `bench upstream`. CPU per call and RSS are then read
per process from /proc (gen is the load generator), with each process's
idle RSS before any call. --in-process runs everything in this one process
instead; --target HOST:PORT --ca --cert --key --authority measures an
existing edge over mTLS. Ratios to `direct` measured in one run are the
figures to compare; absolute numbers move between runs.

Examples:
  cargo build --release -p tunnel-server -p tunnel-client -p bench
  ./target/release/bench unary --duration 5 --rounds 2
  cargo run --release -p bench -- unary --duration 5 --rounds 2
  cargo run --release -p bench -- rate --rate 1000 --duration 5
  cargo run --release -p bench -- audit --concurrency 64 --duration 5 --audit always,none --rounds 3
  cargo run --release -p bench -- unary --duration 5 --rounds 2 --report target/bench-report
  ./target/release/bench bulk --bytes 256MiB --rounds 1
  ./target/release/bench bulk --bytes 1GiB --streams 16 --direction download
  ./target/release/bench tunnels --tunnels 1000 --concurrency 64
  ./target/release/bench tunnels --tunnels 10000 --idle 20   # the 10,000-tunnel target

--report DIR writes report.md (settings, machine, command line, the summary
table, errors), report.json (what --json prints), latency.svg (latency per
path across the percentile spectrum) and throughput.svg (calls per second
over each path's measurement) into DIR, creating it if needed.";

/// Load-tests Tether.
#[derive(Parser, Debug)]
#[command(version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug)]
struct Output {
    /// Print one JSON document with every figure instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    /// Also write the report into DIR (created if missing): report.md,
    /// report.json, latency.svg, throughput.svg.
    #[arg(long, global = true, value_name = "DIR")]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct Common {
    /// Seconds per measurement (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Payload bytes per request and response.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Rounds: each measures every path (or mode) once, alternating, so
    /// drift on a shared machine hits all alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cap on calls per measurement, so a run always ends.
    #[arg(long, default_value_t = 5_000_000)]
    max_calls: u64,
    /// Seconds after which a call counts as failed.
    #[arg(long, default_value_t = 10.0)]
    call_timeout: f64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Small gRPC unary calls, closed loop at a fixed concurrency, over
    /// each path (direct, tunnel, egress) in alternating rounds, beside
    /// the same exchange on raw QUIC streams (ceiling).
    Unary {
        /// Paths to measure (comma-separated; default
        /// direct,tunnel,egress,ceiling, and with --target tunnel, plus
        /// direct with --direct); ratios are to `direct`, and to `ceiling`
        /// (raw QUIC streams) when it is measured.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<Path>,
        /// Calls in flight at once, per path.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Audit durability at both ends where bench writes the
        /// configuration (`none` shows the tunnel's cost without the
        /// disk; `audit` compares the modes).
        #[arg(long, default_value = "always")]
        audit: Audit,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Small gRPC unary calls, open loop at a fixed rate; latency is
    /// measured from each call's intended start (coordinated-omission
    /// correction), and calls that cannot start are reported as missed.
    Rate {
        /// Paths to measure (comma-separated; default
        /// direct,tunnel,egress,ceiling, and with --target tunnel, plus
        /// direct with --direct); ratios are to `direct`, and to `ceiling`
        /// (raw QUIC streams) when it is measured.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<Path>,
        /// Calls per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Calls outstanding at most; a call due beyond it is missed.
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// The `unary` closed loop over the tunnel, once per audit durability
    /// mode, each on a fresh deployment; ratios are to the first mode.
    Audit {
        /// Audit durability modes to compare (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "always,none")]
        audit: Vec<Audit>,
        /// The client's audit mode, when it should differ from the edge's
        /// (in production the two ends write to different disks; here they
        /// share one journal).
        #[arg(long)]
        client_audit: Option<Audit>,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Many tunnels on one edge: registers --tunnels emulated tunnel
    /// clients, each with an identity of its own minted from the
    /// deployment's CA, as the real client does (mTLS, ALPN, HELLO on the
    /// control stream, WELCOME), --concurrency at a time, and holds them
    /// idle. Reports registrations per second and their latency beside the
    /// same handshakes at a bare QUIC endpoint with Tether's TLS (ceiling),
    /// the edge's RSS per tunnel, its CPU per handshake and per idle tunnel
    /// (keepalives), and a light open-loop load on the real tunnel with and
    /// without the extra tunnels. Needs the edge as a process of its own
    /// (the default); --in-process measures edge and tunnels together;
    /// --target is refused (bench would need the edge's CA key).
    Tunnels {
        /// Tunnels to connect.
        #[arg(long, default_value_t = 1000)]
        tunnels: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// QUIC client endpoints (UDP sockets) the tunnels share, in turn;
        /// the edge sees one connection per tunnel either way.
        #[arg(long, default_value_t = 4)]
        endpoints: usize,
        /// Seconds after which a registration counts as failed.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Seconds every tunnel is held idle while each process's CPU is
        /// read (after a 2 s settling pause); the edge's RSS is read again
        /// at its end.
        #[arg(long, default_value_t = 10.0)]
        idle: f64,
        /// Calls per second of the light load on the real tunnel, run with
        /// and without the extra tunnels (0: no light load).
        #[arg(long, default_value_t = 100.0)]
        load_rate: f64,
        /// Seconds of each light load.
        #[arg(long, default_value_t = 3.0)]
        load_duration: f64,
        /// Cap on the whole run, seconds: no tunnel is dialed and no phase
        /// started after it (what was skipped is reported).
        #[arg(long, default_value_t = 600.0)]
        duration: f64,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Recovery from an edge crash: SIGKILL the only edge, keep it down
    /// for --down, restart it on the same address (release binaries,
    /// default settings), and time until a call through the tunnel
    /// succeeds again, --trials times. Reports p50/p90/p99/max from the
    /// restart and from the kill, and whether p99 from the restart met
    /// --target. Process deployment only: the others cannot be killed.
    Recovery {
        /// Crashes to measure.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Seconds the edge stays down before its restart.
        #[arg(long, default_value_t = 1.0)]
        down: f64,
        /// Seconds the tunnel stays up between trials: above the client's
        /// `stable_after_ms` (5 s), so each trial starts from its first
        /// backoff step.
        #[arg(long, default_value_t = 6.0)]
        hold: f64,
        /// Seconds the p99 from the restart should stay under.
        #[arg(long, default_value_t = 2.0)]
        target: f64,
        /// Directory holding tunnel-server and tunnel-client (default:
        /// next to bench).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// A fleet on one machine: three edge processes (release binaries)
    /// and --tunnels real tunnel clients in this process, each connected
    /// to every edge; an open-loop load of --rate calls/s spread over the
    /// edges as an L4 balancer with retries would (an attempt turned away
    /// before it started goes to the next edge); after --kill-after the
    /// middle edge is SIGKILLed and restarted on its addresses after
    /// --down. Reports calls failed (in flight on the killed edge, and
    /// otherwise: the target is none), the time until every tunnel is
    /// connected to every edge again, and each edge's memory. Needs
    /// `ulimit -n` of about 7 per tunnel.
    Fleet {
        /// Tunnel clients.
        #[arg(long, default_value_t = 1000)]
        tunnels: usize,
        /// Clients started at once while the fleet comes up.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Calls per second over all edges.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Calls in flight at most (beyond it a due call is counted as
        /// not sent).
        #[arg(long, default_value_t = 1024)]
        max_in_flight: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Seconds into the load when the edge is killed.
        #[arg(long, default_value_t = 5.0)]
        kill_after: f64,
        /// Seconds the killed edge stays down.
        #[arg(long, default_value_t = 1.0)]
        down: f64,
        /// Directory holding tunnel-server and tunnel-client (default:
        /// next to bench).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Fairness: a quiet caller sends --rate calls/s (open loop, latency
    /// from each call's intended start) alone, then beside a flooding
    /// caller (an open loop at --flood-rate, or with --flood-rate 0 a
    /// closed loop at --flood-concurrency; it ignores retry-after), both
    /// as mTLS identities of their own, in alternating rounds; once per mode on a fresh deployment of the release
    /// binaries: `limited` (the edge's [limits] max_caller_calls and
    /// caller_rate set as below) and `unlimited` (per-caller bounds off).
    /// Reports the quiet caller's p50/p99/p99.9 each way, the flood's
    /// served and refused calls per second, and whether the quiet p99
    /// beside the flood stayed within --target × its p99 alone.
    Fairness {
        /// Modes to compare (comma-separated).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "limited,unlimited"
        )]
        modes: Vec<fairness::Mode>,
        /// The quiet caller's calls per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Calls the quiet caller may have outstanding; beyond, missed.
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
        /// Calls the flooding caller keeps in flight (closed loop), or may
        /// have outstanding (open loop).
        #[arg(long, default_value_t = 256)]
        flood_concurrency: usize,
        /// The flood's offered calls per second, as an open loop (default:
        /// 10 × the default caller_rate); 0: a closed loop that sends the
        /// next call the moment the last is answered or refused.
        #[arg(long, default_value_t = 2000.0)]
        flood_rate: f64,
        /// The edge's [limits] max_caller_calls in `limited` mode: room
        /// for --rate through an audit fsync stall of ~100 ms.
        #[arg(long, default_value_t = 32)]
        max_caller_calls: u32,
        /// The edge's [limits] caller_rate in `limited` mode (0: off):
        /// by default the quiet caller's rate, an equal share.
        #[arg(long, default_value_t = 200)]
        caller_rate: u32,
        /// Audit durability at both ends.
        #[arg(long, default_value = "always")]
        audit: Audit,
        /// The quiet p99 beside the flood may be at most this × alone.
        #[arg(long, default_value_t = 1.5)]
        target: f64,
        #[command(flatten)]
        common: Common,
        /// Directory holding tunnel-server and tunnel-client (default:
        /// next to bench).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Large transfers: --bytes in one direction at a time (upload: the
    /// caller streams them to the upstream, which answers with the count;
    /// download: the upstream streams them), as HTTP/2 bodies over each
    /// path (direct, tunnel, egress) in alternating rounds, beside the
    /// same bytes on raw QUIC streams (ceiling). --streams N splits the
    /// bytes over N concurrent transfers. Every byte is counted at both
    /// ends. Reports MiB/s and Gbit/s, time to first byte, CPU µs per MiB
    /// and RSS per process, and ratios to direct and to the ceiling.
    Bulk {
        /// Paths to measure (comma-separated; default
        /// direct,tunnel,egress,ceiling, and with --target tunnel, plus
        /// direct with --direct); ratios are to `direct`, and to `ceiling`
        /// (raw QUIC streams) when it is measured, per direction.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<Path>,
        /// Directions, each measured separately (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "upload,download")]
        direction: Vec<Direction>,
        /// Bytes per measurement (one direction, one path, one round), all
        /// streams together: a whole number with an optional unit, KiB,
        /// MiB, GiB (binary; also K, M, G) or KB, MB, GB (decimal).
        #[arg(long, default_value = "1GiB", value_name = "SIZE")]
        bytes: ByteSize,
        /// Concurrent transfers per measurement, each moving --bytes / N
        /// (spread over up to 4 HTTP/2 connections; one QUIC connection
        /// for the ceiling).
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Seconds a measurement may take at most (fractions allowed): a
        /// transfer unfinished by then fails the run, saying how far it
        /// got. Also bounds connecting each path.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Rounds: each measures every direction and path once,
        /// alternating, so drift on a shared machine hits all alike.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Audit durability at both ends where bench writes the
        /// configuration: one record per transfer, so it shows in the time
        /// to first byte (always: an fsync before the request moves on).
        #[arg(long, default_value = "always")]
        audit: Audit,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Serves the example upstream (gRPC Echo and HTTP on one port) until
    /// SIGINT or SIGTERM: the process deployment runs this as its
    /// upstream; it also serves behind a real tunnel client.
    Upstream {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Once listening, write `{"listen": "<addr>"}` to this file, or
        /// as one line on stdout with `-` (as the edge and client do).
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--{name} must be a positive number of seconds"))
}

/// The `tunnels` scenario's light load: `rate` calls/s for `secs` on the
/// tunnel path, or none at rate 0.
fn light_load(rate: f64, secs: f64, progress: bool) -> anyhow::Result<Option<OpenLoop>> {
    anyhow::ensure!(
        rate.is_finite() && rate >= 0.0,
        "--load-rate must be a number of calls per second, 0 for none"
    );
    if rate == 0.0 {
        return Ok(None);
    }
    Ok(Some(OpenLoop {
        rate,
        duration: seconds("load-duration", secs)?,
        max_in_flight: 256,
        size: 100,
        max_calls: 5_000_000,
        call_timeout: Duration::from_secs(10),
        progress,
    }))
}

/// Prints the `tunnels` report (and writes it with `--report DIR`); fails
/// after printing when the run was not clean.
fn tunnels_output(
    output: &Output,
    report: &crate::report::tunnels::TunnelsReport,
    provenance: &Provenance,
) -> anyhow::Result<()> {
    if output.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", crate::report::tunnels_table::table(report));
    }
    if let Some(dir) = &output.report {
        let markdown = crate::report::dir::write_tunnels(dir, report, provenance)?;
        if !output.quiet {
            eprintln!("report written to {}", markdown.display());
        }
    }
    anyhow::ensure!(
        report.clean(),
        "the run did not reach its target: {}",
        report.report.warnings.join("; ")
    );
    Ok(())
}

/// Prints the `bulk` report (and writes it with `--report DIR`).
fn bulk_output(
    output: &Output,
    report: &crate::report::bulk::BulkReport,
    provenance: &Provenance,
) -> anyhow::Result<()> {
    if output.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    if let Some(dir) = &output.report {
        let markdown = crate::report::dir::write_bulk(dir, report, provenance)?;
        if !output.quiet {
            eprintln!("report written to {}", markdown.display());
        }
    }
    Ok(())
}

fn closed(concurrency: usize, c: &Common, progress: bool) -> anyhow::Result<ClosedLoop> {
    Ok(ClosedLoop {
        concurrency,
        duration: seconds("duration", c.duration)?,
        size: c.size,
        max_calls: c.max_calls,
        call_timeout: seconds("call-timeout", c.call_timeout)?,
        progress,
    })
}

/// Runs the scenario `cli` names and prints its report. Fails when the run
/// was not clean (errors, missed calls), after printing the report.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    proxy::telemetry::init("error");
    let progress = !cli.output.quiet;
    // Taken before the run: the report's start time and machine.
    let provenance = Provenance::collect();
    let report: Report = match &cli.command {
        Command::Unary {
            paths,
            concurrency,
            audit,
            common,
            deploy,
        } => {
            unary::run(&UnaryConfig {
                paths: paths.clone(),
                rounds: common.rounds,
                audit: *audit,
                load: closed(*concurrency, common, progress)?,
                deployment: deploy.spec()?,
            })
            .await?
        }
        Command::Rate {
            paths,
            rate,
            max_in_flight,
            common,
            deploy,
        } => {
            anyhow::ensure!(
                rate.is_finite() && *rate > 0.0,
                "--rate must be a positive number"
            );
            rate::run(&RateConfig {
                paths: paths.clone(),
                rounds: common.rounds,
                load: OpenLoop {
                    rate: *rate,
                    duration: seconds("duration", common.duration)?,
                    max_in_flight: *max_in_flight,
                    size: common.size,
                    max_calls: common.max_calls,
                    call_timeout: seconds("call-timeout", common.call_timeout)?,
                    progress,
                },
                deployment: deploy.spec()?,
            })
            .await?
        }
        Command::Audit {
            audit,
            client_audit,
            concurrency,
            common,
            deploy,
        } => {
            audit::run(&AuditConfig {
                modes: audit.clone(),
                client_mode: *client_audit,
                rounds: common.rounds,
                load: closed(*concurrency, common, progress)?,
                deployment: deploy.spec()?,
            })
            .await?
        }
        Command::Upstream { listen, ready_file } => {
            return crate::deploy::upstream::serve(*listen, ready_file.as_deref()).await;
        }
        Command::Bulk {
            paths,
            direction,
            bytes,
            streams,
            duration,
            rounds,
            audit,
            deploy,
        } => {
            let report = bulk::run(&BulkConfig {
                paths: paths.clone(),
                directions: direction.clone(),
                rounds: *rounds,
                load: BulkLoad {
                    bytes: bytes.0,
                    streams: *streams,
                    duration: seconds("duration", *duration)?,
                    progress,
                },
                audit: *audit,
                deployment: deploy.spec()?,
            })
            .await?;
            return bulk_output(&cli.output, &report, &provenance);
        }
        Command::Recovery {
            trials,
            down,
            hold,
            target,
            bin_dir,
        } => {
            anyhow::ensure!(*trials > 0, "--trials must be at least 1");
            let cfg = RecoveryConfig {
                trials: *trials,
                down: Duration::try_from_secs_f64(*down)
                    .map_err(|_| anyhow::anyhow!("--down must be a number of seconds ≥ 0"))?,
                hold: seconds("hold", *hold)?,
                target: seconds("target", *target)?,
                bin_dir: bin_dir.clone(),
            };
            let report = recovery::run(&cfg).await?;
            if cli.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            anyhow::ensure!(
                report.met(),
                "p99 from the restart was {:.0} ms, above the target",
                report.p99_from_restart()
            );
            return Ok(());
        }
        Command::Fleet {
            tunnels,
            batch,
            rate,
            max_in_flight,
            duration,
            kill_after,
            down,
            bin_dir,
        } => {
            let cfg = FleetConfig {
                tunnels: *tunnels,
                batch: *batch,
                rate: *rate,
                max_in_flight: (*max_in_flight).max(1),
                duration: seconds("duration", *duration)?,
                kill_after: seconds("kill-after", *kill_after)?,
                down: Duration::try_from_secs_f64(*down)
                    .map_err(|_| anyhow::anyhow!("--down must be a number of seconds ≥ 0"))?,
                bin_dir: bin_dir.clone(),
            };
            let report = fleet::run(&cfg).await?;
            if cli.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            anyhow::ensure!(
                report.met(),
                "{} calls failed that had not started on the killed edge",
                report.failed_elsewhere
            );
            return Ok(());
        }
        Command::Fairness {
            modes,
            rate,
            max_in_flight,
            flood_concurrency,
            flood_rate,
            max_caller_calls,
            caller_rate,
            audit,
            target,
            common,
            bin_dir,
        } => {
            anyhow::ensure!(
                rate.is_finite() && *rate > 0.0,
                "--rate must be a positive number"
            );
            let cfg = FairnessConfig {
                modes: modes.clone(),
                quiet: OpenLoop {
                    rate: *rate,
                    duration: seconds("duration", common.duration)?,
                    max_in_flight: *max_in_flight,
                    size: common.size,
                    max_calls: common.max_calls,
                    call_timeout: seconds("call-timeout", common.call_timeout)?,
                    progress,
                },
                flood_concurrency: *flood_concurrency,
                flood_rate: *flood_rate,
                max_caller_calls: *max_caller_calls,
                caller_rate: *caller_rate,
                rounds: common.rounds,
                audit: audit.durability(),
                bin_dir: bin_dir.clone(),
                target: *target,
            };
            let report = fairness::run(&cfg).await?;
            if cli.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            return Ok(());
        }
        Command::Tunnels {
            tunnels,
            concurrency,
            endpoints,
            timeout,
            idle,
            load_rate,
            load_duration,
            duration,
            deploy,
        } => {
            let cfg = TunnelsConfig {
                tunnels: *tunnels,
                concurrency: *concurrency,
                endpoints: *endpoints,
                timeout: seconds("timeout", *timeout)?,
                idle: seconds("idle", *idle)?,
                load: light_load(*load_rate, *load_duration, progress)?,
                cap: seconds("duration", *duration)?,
                progress,
                deployment: deploy.spec()?,
            };
            let report = tunnels::run(&cfg).await?;
            return tunnels_output(&cli.output, &report, &provenance);
        }
    };
    if cli.output.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    // Written whatever the outcome: a report of a failed run is the one to
    // read.
    if let Some(dir) = &cli.output.report {
        let markdown = crate::report::dir::write(dir, &report, &provenance)?;
        if progress {
            eprintln!("report written to {}", markdown.display());
        }
    }
    anyhow::ensure!(
        report.clean(),
        "the run did not reach its target: {}",
        report.warnings.join("; ")
    );
    Ok(())
}
