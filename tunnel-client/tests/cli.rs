//! The client's commands as a user runs them: `--help`, `check` of a
//! complete file, and `run --ready-file -`, which reports the bound egress
//! listener once the tunnel is connected to an edge (one started in this
//! test from its library).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use certs::{Ca, IdentityKind, LeafSpec};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnel-client"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A CA, an edge identity (`edge.pem`) and the demo tunnel's (`demo.pem`).
fn write_certs(dir: &Path) {
    let ca = Ca::create("tether.local", Duration::from_secs(3600 * 24 * 30)).unwrap();
    ca.write_files(dir, true).unwrap();
    for (kind, name, stem) in [
        (IdentityKind::Edge, "edge-1", "edge"),
        (IdentityKind::Tunnel, "demo", "demo"),
    ] {
        ca.issue(&LeafSpec::new(kind, name))
            .unwrap()
            .write_files(dir, stem, true)
            .unwrap();
    }
}

fn client_toml(edge: &str) -> String {
    format!(
        r#"
[tls]
cert = "demo.pem"
key = "demo.key"
trust_bundle = "ca.pem"

[edge]
address = "{edge}"
server_name = "localhost"

[services.echo]
url = "http://127.0.0.1:9"
protocol = "h2c"

[audit]
path = "audit/client.log"

[[egress.listener]]
listen = "127.0.0.1:0"
"#
    )
}

#[test]
fn help_explains_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let t = text(&out);
    for cmd in ["run", "check", "policy", "audit"] {
        assert!(t.contains(cmd), "{cmd} missing from --help:\n{t}");
    }
    let t = text(&run(&["run", "--help"]));
    assert!(t.contains("--ready-file"), "{t}");
}

#[test]
fn check_accepts_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let cfg = dir.path().join("client.toml");
    std::fs::write(&cfg, client_toml("127.0.0.1:4433")).unwrap();
    let out = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tunnel 'demo'"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_the_egress_listener_once_connected() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let edge_cfg = dir.path().join("edge.toml");
    std::fs::write(
        &edge_cfg,
        r#"
[tls]
cert = "edge.pem"
key = "edge.key"
trust_bundle = "ca.pem"

[tunnels]
listen = "127.0.0.1:0"

[ingress]
domain = "tunnel.local"
listen = "127.0.0.1:0"

[audit]
path = "audit/edge.log"
"#,
    )
    .unwrap();
    let edge = tunnel_server::build(tunnel_server::Config::load(&edge_cfg).unwrap())
        .await
        .unwrap();
    let cfg = dir.path().join("client.toml");
    std::fs::write(&cfg, client_toml(&edge.tunnel_addr.to_string())).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnel-client"))
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--ready-file",
            "-",
        ])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await;
    assert!(
        matches!(read, Ok(Ok(n)) if n > 0),
        "no readiness line: {read:?}"
    );
    let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let egress: std::net::SocketAddr = ready["egress"][0].as_str().unwrap().parse().unwrap();
    assert_ne!(egress.port(), 0, "{line}");
    assert!(ready["admin"].is_null(), "{line}");
    // Connected means the edge answered HELLO; it registers the tunnel
    // right after.
    tokio::time::timeout(Duration::from_secs(10), edge.registry.wait_live("demo"))
        .await
        .expect("the edge never registered the tunnel");
    // The listener the line names accepts connections.
    tokio::net::TcpStream::connect(egress).await.unwrap();
    child.kill().await.unwrap();
    edge.shutdown(Duration::ZERO).await;
}
