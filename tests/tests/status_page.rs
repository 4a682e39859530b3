//! The live status page in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `.ci/run`) loads each admin listener's
//! `/status` from the running binaries. The edge's page lists the
//! connected tunnel, a refused call with its cause and the audit chain
//! head; the client's lists its edge and services; once the client stops,
//! the edge's page no longer lists the tunnel. `tunnel-server status`
//! prints the same for a terminal. A missing browser fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{bin, Process};
use tether_tests::upstream;

const ECHO_HOST: &str = "echo.demo.tunnel.local";
const BROWSER_BOUND: Duration = Duration::from_secs(90);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs headless Chromium on `url` with `extra` arguments; its stdout.
async fn chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let out = tokio::time::timeout(
        BROWSER_BOUND,
        tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER_BOUND:?}"))
    .unwrap_or_else(|e| {
        panic!("cannot run chromium ({e}): install Debian's chromium package (.ci/run does)")
    });
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn dom(profile: &Path, admin: SocketAddr) -> String {
    chromium(profile, &format!("http://{admin}/status"), &["--dump-dom"]).await
}

#[tokio::test]
async fn the_status_page_shows_the_live_tunnel_in_a_browser_and_updates_when_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let profile = d.join("chromium-profile");
    files::ensure_dev_pki(d).unwrap();
    let up = upstream::start(any()).await.unwrap();
    let policies = Policies::allow_all();
    let edge_toml = files::write_edge(
        d,
        &EdgeFiles {
            writer: "tests/tests/status_page.rs".into(),
            tunnel_listen: any(),
            ingress_listen: any(),
            plaintext_listen: any(),
            admin_listen: Some(any()),
            cp_upstream: up.addr,
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let edge = Process::start("tunnel-server", &edge_toml).await;
    let client_toml = files::write_client(
        d,
        &ClientFiles {
            writer: "tests/tests/status_page.rs".into(),
            edge_address: edge.addr("tunnels"),
            upstream: up.addr,
            admin_listen: Some(any()),
            egress_listen: any(),
            audit: Durability::None,
        },
        &policies,
    )
    .unwrap();
    let mut client = Process::start("tunnel-client", &client_toml).await;
    let (edge_admin, client_admin) = (edge.addr("admin"), client.addr("admin"));

    let mut echo = grpc_plaintext(edge.addr("plaintext"), ECHO_HOST)
        .await
        .unwrap();
    echo.unary(EchoRequest::default()).await.unwrap();
    let mut lost = grpc_plaintext(edge.addr("plaintext"), "echo.demo.elsewhere.example")
        .await
        .unwrap();
    lost.unary(EchoRequest::default()).await.unwrap_err();

    let page = dom(&profile, edge_admin).await;
    assert!(
        page.contains("<td>demo</td>"),
        "the tunnel is listed:\n{page}"
    );
    assert!(
        page.contains("<td>no-route</td>"),
        "the refusal and its cause:\n{page}"
    );
    assert!(
        page.contains("chain head seq"),
        "the audit chain head:\n{page}"
    );
    assert!(!page.contains("no tunnel is connected"), "{page}");

    let client_page = dom(&profile, client_admin).await;
    assert!(client_page.contains("<td>edge-1</td>"), "{client_page}");
    assert!(client_page.contains("<td>echo</td>"), "{client_page}");

    let shot = d.join("status.png");
    chromium(
        &profile,
        &format!("http://{edge_admin}/status"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,720",
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");

    // The terminal form of the same page.
    let out = tokio::process::Command::new(bin("tunnel-server"))
        .args(["status", "--admin", &edge_admin.to_string()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Tunnels") && text.contains("demo"), "{text}");

    // The client leaves: the page shows it is gone.
    client.terminate();
    assert!(client.wait_exit().await.success());
    edge.log
        .wait_until("the edge saw the tunnel go", |lines| {
            lines.iter().any(|l| l.contains("tunnel disconnected"))
        })
        .await;
    let after = dom(&profile, edge_admin).await;
    assert!(after.contains("no tunnel is connected"), "{after}");
    assert!(!after.contains("<td>demo</td>"), "{after}");
}
