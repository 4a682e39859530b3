//! `tunnel-client`: the Tether tunnel client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Tether tunnel client: dials out to an edge over QUIC (mutual TLS) and
/// serves the edge's calls to local services. Opens no inbound port.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "Examples:\n  tunnel-client check --config client.toml\n  tunnel-client run --config client.toml\n\nLogging: RUST_LOG=info (default), debug or trace.\nSee docs/configuration.md for every key.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the client until SIGINT or SIGTERM.
    Run {
        /// Path to the client's TOML configuration.
        #[arg(long, short, env = "TETHER_CLIENT_CONFIG")]
        config: PathBuf,
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
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies a hash-chained audit log: prints OK with the record count
    /// and head hash, or names the first record that was edited, removed,
    /// reordered or truncated, and exits non-zero.
    Verify {
        /// The live log (its rotated files are found next to it), or
        /// several files in chain order, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validates a policy file: every problem with its line and key.
    Check {
        /// The policy file.
        file: PathBuf,
        /// The file is an egress policy ([egress] policy).
        #[arg(long)]
        egress: bool,
    },
    /// Says which rule decides a call and why each rule matches or not.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// Caller SPIFFE ID as the edge asserts it.
        #[arg(long)]
        caller: String,
        /// Local service name.
        #[arg(long)]
        service: String,
        /// HTTP method (gRPC calls are POST).
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request path, e.g. /pkg.Service/Method or /api/items.
        #[arg(long)]
        path: String,
        /// Treat the call as gRPC.
        #[arg(long)]
        grpc: bool,
        /// The file is an egress policy: --caller is the tunnel's identity
        /// and --service the upstream name.
        #[arg(long)]
        egress: bool,
        /// The egress listener's workload label (egress policies).
        #[arg(long)]
        workload: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    proxy::telemetry::init("info");
    let runtime = match tokio::runtime::Runtime::new() {
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
                "{}: OK (tunnel '{}', identity {}, edge {}, services: {})",
                config.display(),
                cfg.tunnel_name(),
                cfg.identity.id,
                cfg.edge_address,
                cfg.services.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Check { file, egress }) => {
            let scope = if egress {
                proxy::policy::Scope::Egress
            } else {
                proxy::policy::Scope::Client
            };
            let p = proxy::policy::load_policy(&file, scope)?;
            println!(
                "{}: OK ({} rules{})",
                file.display(),
                p.rules.len(),
                if p.dry_run { ", dry run" } else { "" }
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Explain {
            file,
            caller,
            service,
            method,
            path,
            grpc,
            egress,
            workload,
        }) => {
            let scope = if egress {
                proxy::policy::Scope::Egress
            } else {
                proxy::policy::Scope::Client
            };
            let p = proxy::policy::load_policy(&file, scope)?;
            let path = proxy::policy::canonical_path(&path, grpc)
                .map_err(|e| anyhow::anyhow!("the path would be refused before policy: {e}"))?;
            let subject = proxy::policy::Subject {
                caller: &caller,
                tunnel: "",
                service: &service,
                method: &method,
                path,
                grpc,
                workload: workload.as_deref(),
            };
            print!("{}", proxy::policy::explain_text(&p, &subject));
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { files }) => {
            let report = proxy::audit::verify_command(&files)
                .map_err(|e| anyhow::anyhow!("audit log does not verify: {e}"))?;
            println!("{report}");
            Ok(())
        }
        Command::Run { config } => {
            let cfg = tunnel_client::Config::load(&config)?;
            let bound = tunnel_client::build(cfg)?;
            let cancel = bound.cancel_token();
            tokio::spawn(async move {
                proxy::telemetry::shutdown_signal().await;
                tracing::info!("shutting down");
                cancel.cancel();
            });
            bound.wait().await;
            Ok(())
        }
    }
}
