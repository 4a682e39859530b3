//! `cargo quickstart`: the whole Tether topology on one machine.
//!
//! Generates a development CA and identities into a state directory, writes
//! real configuration files for the edge and the client, starts the edge,
//! the client and an example upstream (HTTP and gRPC) from those files,
//! sends a few calls through the tunnel and prints them, then keeps running
//! and prints commands a user can paste.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use http::Method;
use proxy::audit::Durability;
use tether_tests::callers::{empty, grpc_tls, identity_tls, request, HttpCaller};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::{EchoRequest, StreamRequest};
use tether_tests::topology::DOMAIN;
use tether_tests::upstream;

/// Runs a complete local Tether: dev CA, edge, tunnel client and an example
/// upstream, then calls through the tunnel.
#[derive(Parser)]
#[command(
    about,
    after_help = "Everything it generates (certificates, edge.toml, client.toml) stays in the state directory; rerunning reuses it."
)]
struct Args {
    /// Where certificates and configuration files are written.
    #[arg(long, default_value = ".tether")]
    state_dir: PathBuf,
    /// Loopback port of the edge's plaintext development ingress.
    #[arg(long, default_value_t = 8080)]
    plaintext_port: u16,
    /// Loopback port of the edge's mTLS ingress.
    #[arg(long, default_value_t = 8443)]
    ingress_port: u16,
    /// Loopback UDP port of the edge's tunnel listener.
    #[arg(long, default_value_t = 4433)]
    tunnel_port: u16,
    /// Loopback port of the edge's admin listener (/healthz, /readyz,
    /// /metrics); the client's is the next port.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Loopback port of the tunnel client's egress proxy (workloads set
    /// http_proxy to it).
    #[arg(long, default_value_t = 15001)]
    egress_port: u16,
    /// Exit after the demonstration calls instead of serving until Ctrl-C.
    #[arg(long)]
    exit_after_demo: bool,
}

/// The edge's policy: the dev caller may reach the demo tunnel's services,
/// nobody may reach an /admin path.
const EDGE_POLICY: &str = r#"# Edge policy written by `cargo quickstart`. Format: docs/policy.md.
# Default deny: a call is forwarded only if an allow rule matches and no deny rule does.

[[rule]]
id = "dev-calls-demo"
effect = "allow"
callers = ["spiffe://tether.local/caller/dev"]
tunnels = ["spiffe://tether.local/tunnel/demo"]
services = ["echo", "web"]

[[rule]]
id = "no-admin"
effect = "deny"
callers = ["spiffe://tether.local/*"]
paths = ["/admin"]
"#;

/// The tunnel's own policy: the data-plane owner's veto.
const CLIENT_POLICY: &str = r#"# Tunnel client policy written by `cargo quickstart`. Format: docs/policy.md.
# The data plane decides again: only control-plane callers, only these services.

[[rule]]
id = "control-plane-callers"
effect = "allow"
callers = ["spiffe://tether.local/caller/*"]
services = ["echo", "web"]
"#;

/// The edge's egress policy: the demo tunnel's workloads may reach the
/// control plane's example service.
const EDGE_EGRESS_POLICY: &str = r#"# Edge egress policy written by `cargo quickstart`. Format: docs/policy.md (egress).
# callers are tunnel identities, services are upstream names, workloads are listener labels.

[[rule]]
id = "demo-reports-state"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/demo"]
services = ["cp-web", "cp-echo"]
"#;

/// The client's own egress policy: only the demo app, only these upstreams.
const CLIENT_EGRESS_POLICY: &str = r#"# Tunnel client egress policy written by `cargo quickstart`. Format: docs/policy.md (egress).

[[rule]]
id = "demo-app-out"
effect = "allow"
callers = ["spiffe://tether.local/tunnel/demo"]
workloads = ["demo-app"]
services = ["cp-web", "cp-echo"]
"#;

fn policies() -> Policies {
    Policies {
        edge: EDGE_POLICY.into(),
        client: CLIENT_POLICY.into(),
        edge_egress: EDGE_EGRESS_POLICY.into(),
        client_egress: CLIENT_EGRESS_POLICY.into(),
    }
}

fn write_configs(
    dir: &Path,
    args: &Args,
    upstream: SocketAddr,
    cp: SocketAddr,
) -> anyhow::Result<()> {
    let loopback = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let writer = "`cargo quickstart`".to_string();
    files::write_edge(
        dir,
        &EdgeFiles {
            writer: writer.clone(),
            tunnel_listen: loopback(args.tunnel_port),
            ingress_listen: loopback(args.ingress_port),
            plaintext_listen: loopback(args.plaintext_port),
            admin_listen: Some(loopback(args.admin_port)),
            cp_upstream: cp,
            audit: Durability::Always,
        },
        &policies(),
    )?;
    files::write_client(
        dir,
        &ClientFiles {
            writer,
            edge_address: loopback(args.tunnel_port),
            upstream,
            admin_listen: Some(loopback(args.admin_port + 1)),
            egress_listen: loopback(args.egress_port),
            audit: Durability::Always,
        },
        &policies(),
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    proxy::telemetry::init("warn");
    let dir = args.state_dir.clone();
    files::ensure_dev_pki(&dir).context("generating development certificates")?;
    let up = upstream::start("127.0.0.1:0".parse()?).await?;
    let cp = upstream::start("127.0.0.1:0".parse()?).await?;
    write_configs(&dir, &args, up.addr, cp.addr)?;

    let edge_cfg = tunnel_server::Config::load(&dir.join(files::EDGE_CONFIG))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let edge = tunnel_server::build(edge_cfg)
        .await
        .context("starting the edge (is another quick start running? use --plaintext-port/--ingress-port/--tunnel-port)")?;
    let client_cfg = tunnel_client::Config::load(&dir.join(files::CLIENT_CONFIG))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = tunnel_client::build(client_cfg)?;
    tokio::time::timeout(Duration::from_secs(10), client.connected())
        .await
        .context("the tunnel client did not connect within 10 s")?;
    edge.registry.wait_live("demo").await;

    println!("Tether is running:");
    println!(
        "  edge      tunnels on udp/{}, mTLS ingress on {}, plaintext dev ingress on {}",
        edge.tunnel_addr, args.ingress_port, args.plaintext_port
    );
    println!("  client    tunnel 'demo' connected, services: echo (gRPC, h2c), web (HTTP/1.1)");
    println!(
        "  upstreams example service (data plane) on {}, control-plane example service on {}",
        up.addr, cp.addr
    );
    println!("  files     {}", dir.display());
    println!();

    // 1. Plain HTTP through the plaintext development listener.
    let plain: SocketAddr = format!("127.0.0.1:{}", args.plaintext_port).parse()?;
    let mut http = HttpCaller::plaintext(plain, false).await?;
    for path in ["/hello", "/admin"] {
        let host = format!("web.demo.{DOMAIN}");
        let resp = http
            .send(request(Method::GET, &host, path, empty())?)
            .await?;
        let status = resp.status();
        let body = upstream::collect(resp.into_body()).await?;
        println!(
            "HTTP/1.1 GET http://{host}{path:<7} →  {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }

    // 2. gRPC over mTLS with the caller certificate.
    let caller = proxy::tls::load_identity(
        &dir.join(format!("{}.pem", files::CALLER_CERT)),
        &dir.join(format!("{}.key", files::CALLER_CERT)),
    )?;
    let roots = proxy::tls::load_trust_bundle(&dir.join(files::CA_CERT))?;
    let tls = identity_tls(caller, roots, &[b"h2"])?;
    let ingress: SocketAddr = format!("127.0.0.1:{}", args.ingress_port).parse()?;
    let mut grpc = grpc_tls(ingress, &format!("echo.demo.{DOMAIN}"), tls).await?;
    let reply = grpc
        .unary(EchoRequest {
            text: "hello through the tunnel".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "gRPC  tether.echo.v1.Echo/Unary          →  OK: {:?} (service saw {})",
        reply.text, reply.caller
    );
    let mut stream = grpc
        .server_stream(StreamRequest {
            text: "tick".into(),
            count: 3,
            hang_after: false,
        })
        .await?
        .into_inner();
    let mut ticks = Vec::new();
    while let Some(m) = stream.message().await? {
        ticks.push(m.text);
    }
    println!(
        "gRPC  tether.echo.v1.Echo/ServerStream   →  OK: {}",
        ticks.join(", ")
    );

    // 3. Egress: a data-plane workload reaches the control plane through the
    //    same tunnel, via the client's local proxy.
    let egress: SocketAddr = format!("127.0.0.1:{}", args.egress_port).parse()?;
    let mut proxy_client = HttpCaller::plaintext(egress, false).await?;
    let req = http::Request::builder()
        .uri("http://cp-web/hello")
        .header(http::header::HOST, "cp-web")
        .body(empty())?;
    let resp = proxy_client.send(req).await?;
    let status = resp.status();
    let body = upstream::collect(resp.into_body()).await?;
    println!(
        "egress GET http://cp-web/hello (http_proxy) →  {status}: {}",
        String::from_utf8_lossy(&body).trim()
    );
    let mut out = tether_tests::callers::grpc_plaintext(egress, "cp-echo").await?;
    let reply = out
        .unary(EchoRequest {
            text: "report from the data plane".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "egress gRPC cp-echo Echo/Unary          →  OK: {:?}",
        reply.text
    );
    println!();
    println!("Try it yourself:");
    println!(
        "  curl -H 'Host: web.demo.{DOMAIN}' http://127.0.0.1:{}/hello",
        args.plaintext_port
    );
    println!(
        "  curl --cacert {d}/ca.pem --cert {d}/caller-dev.pem --key {d}/caller-dev.key \\\n       --resolve web.demo.{DOMAIN}:{p}:127.0.0.1 https://web.demo.{DOMAIN}:{p}/hello",
        d = dir.display(),
        p = args.ingress_port
    );
    println!(
        "  curl -H 'Host: web.nope.{DOMAIN}' http://127.0.0.1:{}/hello   # unknown tunnel → 404",
        args.plaintext_port
    );
    println!(
        "  curl -H 'Host: web.demo.{DOMAIN}' http://127.0.0.1:{}/admin   # denied by policy → 403",
        args.plaintext_port
    );
    println!(
        "  http_proxy=http://127.0.0.1:{} curl http://cp-web/hello   # egress: data plane → control plane",
        args.egress_port
    );
    println!();
    println!(
        "Policies (they reload on change or SIGHUP): {d}/edge-policy.toml, {d}/client-policy.toml",
        d = dir.display()
    );
    println!();
    println!(
        "Audit logs (every call above, allowed and denied, is in them):\n  {d}/audit/edge.log\n  {d}/audit/client-demo.log",
        d = dir.display()
    );
    println!(
        "  verify: cargo run -p tunnel-server -- audit verify {}/audit/edge.log",
        dir.display()
    );
    println!(
        "Health: curl http://127.0.0.1:{}/readyz (edge), http://127.0.0.1:{}/readyz (client)",
        args.admin_port,
        args.admin_port + 1
    );
    println!();
    println!("Run the binaries yourself with the same files:");
    println!(
        "  cargo run -p tunnel-server -- run --config {}/edge.toml",
        dir.display()
    );
    println!(
        "  cargo run -p tunnel-client -- run --config {}/client.toml",
        dir.display()
    );

    let grace = proxy::Limits::default().shutdown_grace;
    if args.exit_after_demo {
        client.shutdown(grace).await;
        edge.shutdown(grace).await;
        return Ok(());
    }
    println!();
    println!("Serving until Ctrl-C.");
    let mut signals = proxy::lifecycle::signals::Signals::install()?;
    signals.recv().await;
    println!("Draining (calls in flight get up to {grace:?}; Ctrl-C again to stop now).");
    let ending = client
        .shutdown_or_force(grace, async {
            signals.recv().await;
        })
        .await;
    // Forced once is forced for both.
    let grace = match ending {
        proxy::lifecycle::Ending::Forced { .. } => std::time::Duration::ZERO,
        _ => grace,
    };
    edge.shutdown_or_force(grace, async {
        signals.recv().await;
    })
    .await;
    drop((up, cp));
    Ok(())
}
