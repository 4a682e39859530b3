//! One DNS name, two edges: the Kubernetes headless-Service pattern, with
//! the real binaries. The tunnel client's only `[edge] address` is
//! `edges.tether.test:<port>`, a name its resolver answers with two
//! addresses; behind them listen two `tunnel-server` processes on the same
//! UDP port, each with an identity of its own (`edge-1`, `edge-2`, both
//! certificates valid for that name, which is the name the client
//! verifies). Proved: the client registers with both edges (two distinct
//! edge identities, one at each address), a unary call through each edge
//! is served, and after `kill -9` of one edge every call through the other
//! is served at once, first try.
//!
//! ```text
//!  root namespace (the test process)                 namespace tth-<pid>-<n>
//!  caller ─h2c─▶ edge-1 plaintext 127.0.0.1:p1
//!                edge-1 tunnels  <veth 1 root end>:u ◀═ QUIC ══╗
//!  caller ─h2c─▶ edge-2 plaintext 127.0.0.1:p2                 ╠═ tunnel-client
//!                edge-2 tunnels  <veth 2 root end>:u ◀═ QUIC ══╝  (admin listener on
//!  echo service  <veth 1 root end>:s ◀──────── TCP ────────────   veth 1's namespace end)
//!
//!  the client's /etc/hosts: both root ends as edges.tether.test;
//!  its route to veth 2's root end: over veth 1
//! ```
//!
//! The name resolves through the C library's files backend: `ip netns
//! exec <ns>` bind-mounts every file of `/etc/netns/<ns>/` over `/etc/`
//! for the process it starts, so the client (and only the client) sees a
//! `hosts` listing the name twice, a `host.conf` with `multi on` (without
//! it glibc returns only the first line's address) and an `nsswitch.conf`
//! sending host lookups to files alone. Before the client starts, `getent
//! ahosts` run the same way must return both addresses, or the test
//! fails. The second edge address is the root end of a second
//! namespace's veth (nothing runs in that namespace), reached from the
//! client's namespace through a /32 route over its own veth: the root
//! namespace delivers it locally, no forwarding involved.
//!
//! Needs root, iproute2, nftables (for [`Netns`]) and glibc's `getent`;
//! without them the test fails, never skips. Every wait is on a condition
//! (a log line, the client's `/connections`, a call's answer), bounded by
//! [`PATIENCE`]. `/etc/netns/<ns>` is removed when the test ends, also
//! when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use certs::{Ca, IdentityKind, LeafSpec};
use proxy::audit::Durability;
use tether_tests::callers::grpc_plaintext;
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::netns::{ip_program, tool, Netns};
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Process, PATIENCE};
use tether_tests::topology::TRUST_DOMAIN;
use tether_tests::upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WRITER: &str = "tests/tests/dns_edges.rs";
const ECHO_HOST: &str = "echo.demo.tunnel.local";
/// The one name the client is given (`.test` is reserved: RFC 6761).
const EDGES_NAME: &str = "edges.tether.test";
/// What a failed setup step needs; appended to its panic.
const HINT: &str = "needs root, iproute2, nftables and glibc's getent; .ci/run installs them";

/// Log lines (tunnel-client/src/dial.rs, tunnel-server/src/tunnels.rs).
const CONNECTED: &str = "tunnel connected";
const REGISTERED: &str = "tunnel registered";

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// `spiffe://<trust domain>/edge/<name>`.
fn edge_identity(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/edge/{name}")
}

/// `/etc/netns/<netns>/`: the files `ip netns exec <netns>` bind-mounts
/// over `/etc/` for every process it starts. Removed on drop (when the test
/// ends, also by a panic), with `/etc/netns` itself if this guard created
/// it and nothing else is in it.
struct EtcNetns {
    dir: PathBuf,
    created_parent: bool,
}

impl EtcNetns {
    /// Writes `entries` (name, contents) into `/etc/netns/<netns>/`, replacing
    /// whatever a dead process with our pid left there. Panics if it cannot.
    fn write(netns: &str, entries: &[(&str, String)]) -> Self {
        let parent = Path::new("/etc/netns");
        let guard = Self {
            dir: parent.join(netns),
            created_parent: !parent.exists(),
        };
        // Built before the first write: a panic below drops it, which
        // removes whatever was already written.
        let _ = std::fs::remove_dir_all(&guard.dir);
        std::fs::create_dir_all(&guard.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}\nhint: {HINT}", guard.dir.display()));
        for (name, text) in entries {
            let path = guard.dir.join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}\nhint: {HINT}", path.display()));
        }
        guard
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.created_parent {
            // Fails, harmlessly, if something else put files there since.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// Runs `program args` and returns its stdout; panics with the command
/// line, its status and its stderr if it cannot be run or fails.
fn run(program: &Path, args: &[&str]) -> String {
    let line = format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}\nhint: {HINT}"));
    assert!(
        out.status.success(),
        "`{line}` failed ({}): {}\nstdout: {}\nhint: {HINT}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim(),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Routes `to` (a root-namespace address on another veth) from inside
/// `net` over its own veth, via the root end.
fn route_via_host(net: &Netns, to: IpAddr) {
    let (to, via) = (format!("{to}/32"), net.host_addr().to_string());
    run(
        &ip_program(),
        &[
            "-n",
            net.name(),
            "route",
            "add",
            to.as_str(),
            "via",
            via.as_str(),
        ],
    );
}

/// The addresses `name` resolves to for a process started inside `netns`
/// (`getent ahosts`: getaddrinfo, as the client's resolver calls it).
fn resolved_in(netns: &str, name: &str) -> Vec<IpAddr> {
    let getent = tool("getent");
    let getent = getent.to_str().expect("a UTF-8 path to getent");
    let out = run(
        &ip_program(),
        &["netns", "exec", netns, getent, "ahosts", name],
    );
    let mut addrs: Vec<IpAddr> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|a| {
            a.parse::<IpAddr>()
                .unwrap_or_else(|e| panic!("getent printed {a:?} ({e}):\n{out}"))
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Issues the edge identity `name` into `dir` (the files the edge
/// configuration names), valid for [`EDGES_NAME`] beside the development
/// defaults, from the CA in `pki`.
fn issue_edge_cert(pki: &Path, dir: &Path, name: &str) {
    let mut spec = LeafSpec::new(IdentityKind::Edge, name);
    spec.dns_names.push(EDGES_NAME.to_string());
    Ca::load_dir(pki)
        .unwrap()
        .issue(&spec)
        .unwrap()
        .write_files(dir, files::EDGE_CERT, true)
        .unwrap();
}

/// Writes an edge's files into `dir`: edge id `id`, tunnels on `tunnels`,
/// callers on loopback.
fn edge_config(dir: &Path, id: &str, tunnels: SocketAddr, cp: SocketAddr) -> PathBuf {
    let path = files::write_edge(
        dir,
        &EdgeFiles {
            writer: WRITER.into(),
            tunnel_listen: tunnels,
            ingress_listen: loopback(),
            plaintext_listen: loopback(),
            admin_listen: None,
            cp_upstream: cp,
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let renamed = text.replacen("id = \"edge-1\"", &format!("id = \"{id}\""), 1);
    assert!(
        id == "edge-1" || renamed != text,
        "files::write_edge no longer writes `id = \"edge-1\"`:\n{text}"
    );
    std::fs::write(&path, renamed).unwrap();
    path
}

/// Writes the client's files into `dir`: its one edge address is
/// `edges.tether.test:<port>`, with no `server_name` (so the name verified
/// in each edge's certificate is that host) and `max_edges = 2`.
fn client_config(dir: &Path, port: u16, service: SocketAddr, admin: SocketAddr) -> PathBuf {
    // Any address: written by files::write_client, then replaced by the name.
    let placeholder = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let path = files::write_client(
        dir,
        &ClientFiles {
            writer: WRITER.into(),
            edge_address: placeholder,
            upstream: service,
            admin_listen: Some(admin),
            egress_listen: loopback(),
            audit: Durability::None,
        },
        &Policies::allow_all(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let by_name = text.replacen(
        &format!("address = \"{placeholder}\"\nserver_name = \"localhost\"\n"),
        &format!("address = \"{EDGES_NAME}:{port}\"\nmax_edges = 2\n"),
        1,
    );
    assert_ne!(
        by_name, text,
        "files::write_client no longer writes `address` then `server_name` in [edge]:\n{text}"
    );
    std::fs::write(&path, by_name).unwrap();
    path
}

/// Whether some `tunnel connected` line names `identity` and `address`
/// (the fields `identity=…` and `address=…` of tunnel-client/src/dial.rs).
fn connected(lines: &[String], identity: &str, address: SocketAddr) -> bool {
    let (identity, address) = (format!("identity={identity}"), format!("address={address}"));
    lines.iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        l.contains(CONNECTED)
            && words.contains(&identity.as_str())
            && words.contains(&address.as_str())
    })
}

/// The three processes' logs, for failure messages.
fn logs(client: &Process, edge1: &Process, edge2: &Process) -> String {
    format!(
        "the client's log:\n{}\nedge-1's log:\n{}\nedge-2's log:\n{}",
        client.log.text(),
        edge1.log.text(),
        edge2.log.text()
    )
}

/// `GET /connections` from the client's admin listener.
async fn connections(admin: SocketAddr) -> serde_json::Value {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /connections HTTP/1.0\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// The (edge identity, address) of each connection in a `/connections`
/// answer, sorted.
fn listed(status: &serde_json::Value) -> Vec<(String, SocketAddr)> {
    let mut conns: Vec<(String, SocketAddr)> = status["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["edge_identity"].as_str().unwrap().to_string(),
                c["address"]
                    .as_str()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap(),
            )
        })
        .collect();
    conns.sort();
    conns
}

/// `/connections` once it lists `want` (or after [`PATIENCE`], for the
/// assertion to show what it lists). The client logs `tunnel connected`
/// just before it adds the connection to what `/connections` shows.
async fn listed_once(admin: SocketAddr, want: &[(String, SocketAddr)]) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = connections(admin).await;
        if listed(&status) == want || tokio::time::Instant::now() > deadline {
            return status;
        }
        // Pacing between reads; the loop waits on what it reads.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One unary call through the edge's plaintext listener (a new caller
/// connection), bounded by [`PATIENCE`]; `Ok` once echoed.
async fn call_once(plaintext: SocketAddr, text: &str) -> Result<(), String> {
    let call = async {
        let mut echo = grpc_plaintext(plaintext, ECHO_HOST)
            .await
            .map_err(|e| e.to_string())?;
        let reply = echo
            .unary(EchoRequest {
                text: text.into(),
                ..Default::default()
            })
            .await
            .map_err(|s| s.to_string())?;
        if reply.get_ref().text == text {
            Ok::<(), String>(())
        } else {
            Err(format!("{text:?} was answered {:?}", reply.get_ref().text))
        }
    };
    tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PATIENCE:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_resolving_to_two_edges_connects_to_both_and_survives_losing_one() {
    // The client's namespace; edge-1 listens on the root end of its veth.
    let net = Netns::create();
    // Only for the address its veth gives the root namespace: edge-2's.
    let second = Netns::create();
    let (addr1, addr2) = (net.host_addr(), second.host_addr());
    route_via_host(&net, addr2);
    let _etc = EtcNetns::write(
        net.name(),
        &[
            (
                "hosts",
                format!(
                    "127.0.0.1 localhost\n::1 localhost\n{addr1} {EDGES_NAME}\n{addr2} {EDGES_NAME}\n"
                ),
            ),
            ("host.conf", "multi on\n".to_string()),
            (
                "nsswitch.conf",
                "passwd: files\ngroup: files\nshadow: files\nhosts: files\n".to_string(),
            ),
        ],
    );
    let mut both = vec![addr1, addr2];
    both.sort();
    let resolved = resolved_in(net.name(), EDGES_NAME);
    assert_eq!(
        resolved,
        both,
        "{EDGES_NAME} inside {} must resolve to both edge addresses (is /etc/host.conf or \
         /etc/nsswitch.conf missing, so `ip netns exec` could not cover it, or is nscd \
         answering from the root's /etc/hosts?)",
        net.name()
    );

    let dir = tempfile::tempdir().unwrap();
    let (dir1, dir2, client_dir) = (
        dir.path().join("edge-1"),
        dir.path().join("edge-2"),
        dir.path().join("client"),
    );
    files::ensure_dev_pki(&dir1).unwrap();
    files::copy_files(&dir1, &dir2).unwrap();
    files::copy_files(&dir1, &client_dir).unwrap();
    issue_edge_cert(&dir1, &dir1, "edge-1");
    issue_edge_cert(&dir1, &dir2, "edge-2");

    // The data-plane service on the root end of the client's veth; the
    // control-plane one (egress only, unused here) on loopback.
    let service = upstream::start(SocketAddr::new(addr1, 0)).await.unwrap();
    let cp = upstream::start(loopback()).await.unwrap();

    let mut edge1 = Process::start(
        "tunnel-server",
        &edge_config(&dir1, "edge-1", SocketAddr::new(addr1, 0), cp.addr),
    )
    .await;
    let tunnels1 = edge1.addr("tunnels");
    assert_eq!(
        tunnels1.ip(),
        addr1,
        "edge-1's tunnel listener: {}",
        edge1.ready
    );
    // The same port at the other address: the name carries one port.
    let tunnels2 = SocketAddr::new(addr2, tunnels1.port());
    let mut edge2 = Process::start(
        "tunnel-server",
        &edge_config(&dir2, "edge-2", tunnels2, cp.addr),
    )
    .await;
    assert_eq!(
        edge2.addr("tunnels"),
        tunnels2,
        "edge-2's tunnel listener: {}",
        edge2.ready
    );

    let client_cfg = client_config(
        &client_dir,
        tunnels1.port(),
        service.addr,
        SocketAddr::new(net.ns_addr(), 0),
    );
    let mut client = Process::start_in(net.name(), "tunnel-client", &client_cfg).await;

    // (1) The client registers with both edges: each edge logs the
    // registration, the client logs a connection to each identity at its
    // address, and its admin listener lists exactly those two.
    edge1.log.wait_for(REGISTERED).await;
    edge2.log.wait_for(REGISTERED).await;
    let want = vec![
        (edge_identity("edge-1"), tunnels1),
        (edge_identity("edge-2"), tunnels2),
    ];
    client
        .log
        .wait_until("`tunnel connected` to edge-1 and to edge-2", |lines| {
            want.iter().all(|(id, addr)| connected(lines, id, *addr))
        })
        .await;
    let status = listed_once(client.addr("admin"), &want).await;
    assert_eq!(
        listed(&status),
        want,
        "one connection to each edge, at its address: {status:#}\n{}",
        logs(&client, &edge1, &edge2)
    );

    // (2) A call through each edge is served.
    let (plain1, plain2) = (edge1.addr("plaintext"), edge2.addr("plaintext"));
    call_once(plain1, "via edge-1").await.unwrap_or_else(|e| {
        panic!(
            "a call through edge-1: {e}\n{}",
            logs(&client, &edge1, &edge2)
        )
    });
    call_once(plain2, "via edge-2").await.unwrap_or_else(|e| {
        panic!(
            "a call through edge-2: {e}\n{}",
            logs(&client, &edge1, &edge2)
        )
    });

    // A call through edge-1 that the service holds: in flight on the
    // client's connection to edge-1 when edge-1 dies, so the client's
    // drain below must give up on that connection.
    let held = tokio::spawn(async move {
        let mut echo = grpc_plaintext(plain1, ECHO_HOST).await.ok()?;
        let hang = EchoRequest {
            text: "held".into(),
            hang: true,
            ..Default::default()
        };
        echo.unary(hang).await.ok()
    });
    tokio::time::timeout(PATIENCE, service.observed.wait_hanging(1))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the held call did not reach the service within {PATIENCE:?}\n{}",
                logs(&client, &edge1, &edge2)
            )
        });

    // (3) kill -9 of edge-1: every call through edge-2 is served, first
    // try, right away (its tunnel connection never depended on edge-1).
    edge1.kill().await;
    for n in 0..20 {
        call_once(plain2, &format!("after the kill {n}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "call {n} through the surviving edge-2 failed: {e}\n{}",
                    logs(&client, &edge1, &edge2)
                )
            });
    }

    client.terminate();
    let status = client.wait_exit().await;
    assert!(
        status.success(),
        "the client's exit: {status:?}\n{}",
        logs(&client, &edge1, &edge2)
    );
    // The held call on the dead edge's connection could only end at the
    // idle timeout; draining, the client closes that connection once the
    // edge has been silent for the silence bound instead.
    assert!(
        client.log.has("the edge is silent; closing its connection"),
        "the client did not give up on the dead edge while draining:\n{}",
        logs(&client, &edge1, &edge2)
    );
    held.abort();
    edge2.terminate();
    let status = edge2.wait_exit().await;
    assert!(
        status.success(),
        "edge-2's exit: {status:?}\n{}",
        logs(&client, &edge1, &edge2)
    );
}
