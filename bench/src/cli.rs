//! The command line: one subcommand per scenario, each building its
//! scenario's config, running it and printing the report (a table, or one
//! JSON document with `--json`).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::paths::Path;
use crate::report::Report;
use crate::scenario_audit::{self, Audit, AuditConfig};
use crate::scenario_rate::{self, OpenLoop, RateConfig};
use crate::scenario_unary::{self, ClosedLoop, UnaryConfig};

const AFTER_HELP: &str = "\
Every component (load generator, edge, tunnel client, upstreams) runs in
this one process on loopback, on the in-process test topology; running them
as separate processes is a later step. Ratios to `direct` measured in one
run are the figures to compare; absolute numbers move between runs.

Examples:
  cargo run --release -p bench -- unary --duration 5 --rounds 2
  cargo run --release -p bench -- rate --rate 1000 --duration 5
  cargo run --release -p bench -- audit --concurrency 64 --duration 5 --audit always,none --rounds 3";

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
        /// Paths to measure (comma-separated); ratios are to `direct`, and
        /// to `ceiling` (raw QUIC streams) when it is measured.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "direct,tunnel,egress,ceiling"
        )]
        paths: Vec<Path>,
        /// Calls in flight at once, per path.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Small gRPC unary calls, open loop at a fixed rate; latency is
    /// measured from each call's intended start (coordinated-omission
    /// correction), and calls that cannot start are reported as missed.
    Rate {
        /// Paths to measure (comma-separated); ratios are to `direct`, and
        /// to `ceiling` (raw QUIC streams) when it is measured.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "direct,tunnel,egress,ceiling"
        )]
        paths: Vec<Path>,
        /// Calls per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Calls outstanding at most; a call due beyond it is missed.
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        #[command(flatten)]
        common: Common,
    },
    /// The `unary` closed loop over the tunnel, once per audit durability
    /// mode, each on a fresh topology; ratios are to the first mode.
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
    },
}

fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--{name} must be a positive number of seconds"))
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
    let report: Report = match &cli.command {
        Command::Unary {
            paths,
            concurrency,
            common,
        } => {
            scenario_unary::run(&UnaryConfig {
                paths: paths.clone(),
                rounds: common.rounds,
                load: closed(*concurrency, common, progress)?,
            })
            .await?
        }
        Command::Rate {
            paths,
            rate,
            max_in_flight,
            common,
        } => {
            anyhow::ensure!(
                rate.is_finite() && *rate > 0.0,
                "--rate must be a positive number"
            );
            scenario_rate::run(&RateConfig {
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
            })
            .await?
        }
        Command::Audit {
            audit,
            client_audit,
            concurrency,
            common,
        } => {
            scenario_audit::run(&AuditConfig {
                modes: audit.clone(),
                client_mode: *client_audit,
                rounds: common.rounds,
                load: closed(*concurrency, common, progress)?,
            })
            .await?
        }
    };
    if cli.output.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    anyhow::ensure!(
        report.clean(),
        "the run did not reach its target: {}",
        report.warnings.join("; ")
    );
    Ok(())
}
