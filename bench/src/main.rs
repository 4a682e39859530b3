//! `bench`: Tether's load-test harness. The scenarios (unary, rate, bulk,
//! tunnels, ceiling) arrive with the load-test issue; until then this binary
//! only describes them and refuses to pretend it measured anything.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load-tests a Tether edge (not implemented yet: see the load-test issue).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Small gRPC calls, closed loop at a given concurrency.
    Unary,
    /// Open loop at a fixed request rate.
    Rate,
    /// Large streams each way.
    Bulk,
    /// Many idle and lightly loaded tunnels.
    Tunnels,
    /// Raw QUIC streams with the same TLS settings: the physical limit.
    Ceiling,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "error: scenario {:?} is not implemented yet; the harness lands with the load-test issue",
        cli.command
    );
    ExitCode::FAILURE
}
