//! `tunnel-client`: the Tether tunnel client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use proxy::lifecycle::signals::Signals;
use proxy::ops::{run_audit, run_policy, AuditCommand, PolicyCommand};
use proxy::policy::Scope;

/// The Tether tunnel client: dials out to an edge over QUIC (mutual TLS) and
/// serves the edge's calls to local services. Opens no inbound port.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "Examples:\n  tunnel-client check --config client.toml\n  tunnel-client run --config client.toml\n\nLogging: RUST_LOG=info (default), debug or trace.\nSee docs/configuration.md for every key.")]
struct Cli {
    #[command(flatten)]
    process: proxy::ops::ProcessArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the client until SIGTERM or SIGINT, then shuts down in phases:
    /// egress listeners closed and new calls refused (503 `draining`),
    /// calls in flight given up to `[limits] shutdown_grace_ms` (default
    /// 30 s) to finish, then the tunnel closed. A second signal cuts the
    /// wait. Exits 0 once stopped.
    Run {
        /// Path to the client's TOML configuration.
        #[arg(long, short, env = "TETHER_CLIENT_CONFIG")]
        config: PathBuf,
        /// Once the tunnel is first connected, write the bound addresses as
        /// one JSON object to this file (replaced atomically), or as one
        /// line on stdout with `-`: how a supervisor learns the ports of
        /// listeners configured on port 0.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
    },
    /// Validates a configuration (and its certificate files) and exits.
    Check {
        /// Path to the client's TOML configuration.
        #[arg(long, short, env = "TETHER_CLIENT_CONFIG")]
        config: PathBuf,
    },
    /// Checks or explains a client policy file (see docs/policy.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Works with audit logs (see docs/audit.md).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Prints the live status page of a running process (its admin
    /// listener's `/status.txt`, or `/status.json` with --json), e.g.
    /// `status --admin 127.0.0.1:9902`.
    Status(proxy::ops::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match cli.process.start() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let cfg = tunnel_client::Config::load(&config)?;
            println!(
                "{}: OK (tunnel '{}', identity {}, edges {} (up to {} × {}), services: {})",
                config.display(),
                cfg.tunnel_name(),
                cfg.identity.id,
                cfg.edges
                    .iter()
                    .map(|e| e.address.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                cfg.max_edges,
                cfg.connections_per_edge,
                cfg.services.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Policy(cmd) => {
            print!(
                "{}",
                run_policy(cmd, Scope::Client).map_err(|e| anyhow::anyhow!(e))?
            );
            Ok(())
        }
        Command::Audit(cmd) => {
            print!("{}", run_audit(cmd).map_err(|e| anyhow::anyhow!(e))?);
            Ok(())
        }
        Command::Status(args) => {
            print!(
                "{}",
                proxy::ops::run_status(&args)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?
            );
            Ok(())
        }
        Command::Run { config, ready_file } => {
            let cfg = tunnel_client::Config::load(&config)?;
            let grace = cfg.limits.shutdown_grace;
            // Installed before anything binds, so a signal during start-up
            // is a shutdown too, not the default kill.
            let mut signals = Signals::install()
                .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
            let mut bound = tunnel_client::build(cfg)?;
            let signal = match ready_file {
                Some(path) => {
                    // A signal before the tunnel ever connects stops the
                    // client with nothing written.
                    let signal = tokio::select! {
                        () = bound.connected() => None,
                        s = signals.recv() => Some(s),
                    };
                    if signal.is_none() {
                        let target = proxy::ready::ReadyTarget::parse(&path);
                        if let Err(e) = target.write(&bound.addresses()) {
                            bound.shutdown(std::time::Duration::ZERO).await;
                            anyhow::bail!("cannot write --ready-file {}: {e}", path.display());
                        }
                    }
                    signal
                }
                None => None,
            };
            let signal = match signal {
                Some(s) => s,
                None => signals.recv().await,
            };
            tracing::info!(
                signal,
                grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                "shutting down: draining (a second signal forces the stop)"
            );
            let force = async {
                let signal = signals.recv().await;
                tracing::warn!(signal, "second signal: forcing the stop");
            };
            let ending = bound.shutdown_or_force(grace, force).await;
            tracing::info!(%ending, "client stopped");
            Ok(())
        }
    }
}
