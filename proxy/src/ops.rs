//! The operator commands both binaries offer — `policy check`, `policy
//! explain` and `audit verify` — defined once so they behave the same at
//! the edge and at the client.

use std::path::PathBuf;

use clap::Subcommand;

use crate::policy::{canonical_path, explain_text, load_policy, Scope, Subject};

/// `policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validates a policy file: every problem with its line and key.
    Check {
        /// The policy file.
        file: PathBuf,
        /// The file is an egress policy (`[egress] policy`).
        #[arg(long)]
        egress: bool,
    },
    /// Says which rule decides a call and why each rule matches or not.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// Caller SPIFFE ID (for egress policies: the tunnel's identity).
        #[arg(long)]
        caller: String,
        /// Tunnel SPIFFE ID (edge ingress policies).
        #[arg(long)]
        tunnel: Option<String>,
        /// Service name (for egress policies: the upstream name).
        #[arg(long)]
        service: String,
        /// HTTP method (gRPC calls are POST, TCP connections CONNECT).
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request path, e.g. /pkg.Service/Method or /api/items.
        #[arg(long)]
        path: String,
        /// Treat the call as gRPC.
        #[arg(long)]
        grpc: bool,
        /// The file is an egress policy.
        #[arg(long)]
        egress: bool,
        /// The egress listener's workload label (egress policies).
        #[arg(long)]
        workload: Option<String>,
    },
}

/// `audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
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

/// Runs a `policy` command; `ingress_scope` is the binary's own (edge or
/// client). Returns what to print.
pub fn run_policy(cmd: PolicyCommand, ingress_scope: Scope) -> Result<String, String> {
    let scope_of = |egress: bool| if egress { Scope::Egress } else { ingress_scope };
    match cmd {
        PolicyCommand::Check { file, egress } => {
            let p = load_policy(&file, scope_of(egress)).map_err(|e| e.to_string())?;
            Ok(format!(
                "{}: OK ({} rules{})\n",
                file.display(),
                p.rules.len(),
                if p.dry_run { ", dry run" } else { "" }
            ))
        }
        PolicyCommand::Explain {
            file,
            caller,
            tunnel,
            service,
            method,
            path,
            grpc,
            egress,
            workload,
        } => {
            let scope = scope_of(egress);
            let p = load_policy(&file, scope).map_err(|e| e.to_string())?;
            let tunnel = match (scope, tunnel) {
                (Scope::Edge, None) => return Err("--tunnel is required for an edge policy".into()),
                (Scope::Egress, None) => caller.clone(),
                (_, t) => t.unwrap_or_default(),
            };
            let path = canonical_path(&path, grpc)
                .map_err(|e| format!("the path would be refused before policy: {e}"))?;
            let subject = Subject {
                caller: &caller,
                tunnel: &tunnel,
                service: &service,
                method: &method,
                path,
                grpc,
                workload: workload.as_deref(),
            };
            Ok(explain_text(&p, &subject))
        }
    }
}

/// Runs an `audit` command. Returns what to print.
pub fn run_audit(cmd: AuditCommand) -> Result<String, String> {
    match cmd {
        AuditCommand::Verify { files } => crate::audit::verify_command(&files)
            .map(|r| format!("{r}\n"))
            .map_err(|e| format!("audit log does not verify: {e}")),
    }
}

/// The flags both binaries take before their configuration is read (it is
/// read inside the runtime, and logging starts first), accepted before or
/// after the subcommand.
#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// How log lines are written to stderr: `text` (coloured only on a
    /// terminal, and never with NO_COLOR set) or `json` (one object per
    /// line, with the stream's span fields).
    #[arg(long, global = true, value_enum, default_value_t = crate::telemetry::LogFormat::Text, env = "TETHER_LOG_FORMAT")]
    pub log_format: crate::telemetry::LogFormat,
    /// Runtime worker threads; 0 (the default) is one per CPU this
    /// process can see. A sidecar requesting a fraction of a CPU on a
    /// large node should set 1.
    #[arg(
        long,
        global = true,
        default_value_t = 0,
        env = "TETHER_WORKER_THREADS"
    )]
    pub worker_threads: usize,
    /// Time each stage of every call and serve the sums at `/metrics`
    /// (`tether_stage_seconds_total`), for bench's latency breakdown.
    /// Costs two clock reads per stage; off in production.
    #[arg(
        long,
        global = true,
        env = "TETHER_STAGE_TIMING",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub stage_timing: bool,
}

impl ProcessArgs {
    /// Starts logging and builds the runtime the binary runs on.
    pub fn start(&self) -> std::io::Result<tokio::runtime::Runtime> {
        crate::telemetry::init_with("info", self.log_format);
        if self.stage_timing {
            crate::probes::stages::enable();
        }
        crate::lifecycle::runtime::build(self.worker_threads)
    }
}

/// `status`: what the admin listener's status page says, for a terminal.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The process's admin listener (`[admin] listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin: std::net::SocketAddr,
    /// Print the JSON document instead (`/status.json`).
    #[arg(long)]
    pub json: bool,
}

/// How long `status` waits for the admin listener.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Fetches `/status.txt` (or `/status.json`) from the admin listener.
pub async fn run_status(args: &StatusArgs) -> Result<String, String> {
    let path = if args.json {
        "/status.json"
    } else {
        "/status.txt"
    };
    let admin = args.admin;
    let fetch = async move {
        let tcp = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("cannot reach the admin listener at {admin}: {e} (is `[admin] listen` set, and the process running?)"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("{admin}: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(path)
            .header(http::header::HOST, admin.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("{admin}{path}: {e}"))?;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| format!("{admin}{path}: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(format!("{admin}{path} answered {status}: {text}"));
        }
        Ok(text)
    };
    tokio::time::timeout(STATUS_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{admin} did not answer within {STATUS_TIMEOUT:?}"))?
}
