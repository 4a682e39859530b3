//! The operator commands as a user runs them: exit codes and messages of
//! `check`, `policy check`, `policy explain` and `audit verify`, and the
//! readiness report of `run --ready-file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use certs::{Ca, IdentityKind, LeafSpec};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnel-server"))
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

fn write_certs(dir: &Path) {
    let ca = Ca::create(
        "tether.local",
        std::time::Duration::from_secs(3600 * 24 * 30),
    )
    .unwrap();
    ca.write_files(dir, true).unwrap();
    ca.issue(&LeafSpec::new(IdentityKind::Edge, "edge-1"))
        .unwrap()
        .write_files(dir, "edge", true)
        .unwrap();
}

#[test]
fn check_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        r#"
[tls]
cert = "edge.pem"
key = "edge.key"
trust_bundle = "missing.pem"

[tunnels]
listen = "not-an-address"
max_egress_streams = 0

[ingress]
domain = "tunnel.local"
"#,
    )
    .unwrap();
    let out = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    for key in [
        "tls.trust_bundle",
        "tunnels.listen",
        "tunnels.max_egress_streams",
        "ingress",
        "audit.path",
    ] {
        assert!(t.contains(key), "{key} missing from:\n{t}");
    }
}

#[test]
fn check_accepts_a_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://tether.local/caller/*\"]\n",
    )
    .unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
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

[policy]
file = "policy.toml"

[audit]
path = "audit/edge.log"
"#,
    )
    .unwrap();
    let out = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK"));
}

#[test]
fn policy_check_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/tunnel/east*\"]\n",
    )
    .unwrap();
    let out = run(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("line 1") && text(&out).contains("callers"),
        "{}",
        text(&out)
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[rule]]\nid = \"ops\"\neffect = \"allow\"\ncallers = [\"spiffe://td/caller/ops/*\"]\n\n[[rule]]\nid = \"no-admin\"\neffect = \"deny\"\ncallers = [\"spiffe://td/*\"]\npaths = [\"/admin\"]\n",
    )
    .unwrap();
    let out = run(&["policy", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let explain = |path: &str| {
        text(&run(&[
            "policy",
            "explain",
            good.to_str().unwrap(),
            "--caller",
            "spiffe://td/caller/ops/a",
            "--tunnel",
            "spiffe://td/tunnel/x",
            "--service",
            "web",
            "--method",
            "GET",
            "--path",
            path,
        ]))
    };
    let t = explain("/status");
    assert!(t.contains("decision: allow (rule: ops)"), "{t}");
    let t = explain("/admin/x");
    assert!(t.contains("decision: deny (rule: no-admin)"), "{t}");
    let t = explain("/a/../admin");
    assert!(t.contains("refused before policy"), "{t}");
}

#[test]
fn audit_verify_passes_intact_logs_and_names_tampering() {
    use proxy::audit::{AuditConfig, AuditEvent, AuditLog, Side};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = AuditLog::open(AuditConfig::new(&path, Side::Edge)).unwrap();
        for i in 0..5 {
            log.append(AuditEvent {
                stream_id: i,
                caller: "spiffe://td/caller/a".into(),
                ..AuditEvent::default()
            })
            .await
            .unwrap();
        }
    });
    let out = run(&["audit", "verify", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK: 5 records"), "{}", text(&out));

    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replacen("caller/a", "caller/b", 1);
    std::fs::write(&path, edited).unwrap();
    let out = run(&["audit", "verify", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("does not verify"), "{}", text(&out));

    let mut lines: Vec<&str> = original.lines().collect();
    lines.remove(2);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = run(&["audit", "verify", path.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "a deleted record must fail verification"
    );
}

#[test]
fn help_explains_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let t = text(&out);
    for cmd in ["run", "check", "policy", "audit"] {
        assert!(t.contains(cmd), "{cmd} missing from --help:\n{t}");
    }
}

/// `run --ready-file -` prints the addresses actually bound (every
/// listener on port 0 here) as one JSON line once they accept.
#[test]
fn run_reports_the_bound_addresses_when_ready() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
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

[ingress.plaintext]
listen = "127.0.0.1:0"
caller_identity = "spiffe://tether.local/caller/dev"

[audit]
path = "audit/edge.log"
"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunnel-server"))
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
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A thread reads the line, so a hung edge fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no readiness line within 30 s");
    let ready: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let addr = |key: &str| -> std::net::SocketAddr {
        ready[key].as_str().unwrap_or_default().parse().unwrap()
    };
    for key in ["tunnels", "ingress", "plaintext"] {
        assert_ne!(addr(key).port(), 0, "{key} in {line}");
    }
    assert!(
        ready["admin"].is_null(),
        "no admin listener configured: {line}"
    );
    assert_eq!(ready["tcp"], serde_json::json!([]));
}
