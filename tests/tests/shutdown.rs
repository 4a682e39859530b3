//! The shutdown sequence, as an orchestrator drives it: SIGTERM to the
//! `tunnel-server` or `tunnel-client` process drains (listeners closed,
//! readiness failing, new calls refused with `draining`), lets the calls
//! in flight finish (a bidirectional stream and a client-streaming upload
//! that keep moving during the drain), then exits 0; the grace period bounds the wait and a
//! second signal cuts it short. And in process: once `shutdown` returns,
//! no task of the edge or the client is left on the runtime.
//!
//! The process tests run the debug binaries through
//! [`tether_tests::process`]. Every wait is on an event (a log line, a
//! reply, the process's exit), bounded so a hang fails instead of stalling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;
use proxy::audit::{verify_files, Durability};
use tether_tests::audit_trail::{by_stream, records};
use tether_tests::callers::{empty, grpc_plaintext, request, HttpCaller};
use tether_tests::files::{self, ClientFiles, EdgeFiles, Policies};
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::EchoRequest;
use tether_tests::process::{Process, PATIENCE};
use tether_tests::topology::Topology;
use tether_tests::upstream::{self, Upstream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const ECHO_HOST: &str = "echo.demo.tunnel.local";

const LOCALHOST_ANY: &str = "127.0.0.1:0";

fn any() -> SocketAddr {
    LOCALHOST_ANY.parse().unwrap()
}

/// An edge and a client as processes, from the same files the quick start
/// writes, around in-process example upstreams.
struct Deployment {
    _dir: tempfile::TempDir,
    upstream: Upstream,
    _cp_upstream: Upstream,
    edge: Process,
    client: Process,
}

impl Deployment {
    async fn start(edge_grace_ms: u64, client_grace_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        files::ensure_dev_pki(dir.path()).unwrap();
        let upstream = upstream::start(any()).await.unwrap();
        let cp_upstream = upstream::start(any()).await.unwrap();
        let policies = Policies::allow_all();
        let edge_cfg = files::write_edge(
            dir.path(),
            &EdgeFiles {
                writer: "tests/tests/shutdown.rs".into(),
                tunnel_listen: any(),
                ingress_listen: any(),
                plaintext_listen: any(),
                admin_listen: Some(any()),
                cp_upstream: cp_upstream.addr,
                audit: Durability::None,
            },
            &policies,
        )
        .unwrap();
        append_grace(&edge_cfg, edge_grace_ms);
        let edge = Process::start("tunnel-server", &edge_cfg).await;
        let client_cfg = files::write_client(
            dir.path(),
            &ClientFiles {
                writer: "tests/tests/shutdown.rs".into(),
                edge_address: edge.addr("tunnels"),
                upstream: upstream.addr,
                admin_listen: Some(any()),
                egress_listen: any(),
                audit: Durability::None,
            },
            &policies,
        )
        .unwrap();
        append_grace(&client_cfg, client_grace_ms);
        let client = Process::start("tunnel-client", &client_cfg).await;
        Self {
            _dir: dir,
            upstream,
            _cp_upstream: cp_upstream,
            edge,
            client,
        }
    }

    async fn echo(&self) -> EchoClient<Channel> {
        grpc_plaintext(self.edge.addr("plaintext"), ECHO_HOST)
            .await
            .unwrap()
    }

    fn egress(&self) -> SocketAddr {
        self.client.ready["egress"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn append_grace(config: &Path, grace_ms: u64) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!("\n[limits]\nshutdown_grace_ms = {grace_ms}\n"));
    std::fs::write(config, text).unwrap();
}

/// A client-streaming upload kept open: the caller sends parts while the
/// process drains, and the service answers with everything it received
/// once the caller ends the upload.
struct Upload {
    tx: mpsc::Sender<EchoRequest>,
    reply: tokio::task::JoinHandle<Result<tether_tests::pb::EchoReply, tonic::Status>>,
}

impl Upload {
    /// Starts the upload and returns once the service has it.
    async fn open(client: &EchoClient<Channel>, observed: &upstream::Observed) -> Self {
        let before = observed.requests();
        let (tx, rx) = mpsc::channel(4);
        let mut client = client.clone();
        let reply = tokio::spawn(async move {
            client
                .client_stream(ReceiverStream::new(rx))
                .await
                .map(tonic::Response::into_inner)
        });
        let upload = Self { tx, reply };
        upload.send("a").await;
        tokio::time::timeout(PATIENCE, observed.wait_requests(before + 1))
            .await
            .expect("the upload reaches the service");
        upload
    }

    async fn send(&self, part: &str) {
        self.tx
            .send(EchoRequest {
                text: part.into(),
                ..Default::default()
            })
            .await
            .expect("the upload is open");
    }

    /// Ends the upload and returns what the service says it received.
    async fn finish(self) -> String {
        let Self { tx, reply } = self;
        drop(tx);
        tokio::time::timeout(PATIENCE, reply)
            .await
            .expect("the upload was answered")
            .unwrap()
            .expect("the upload in flight ends cleanly")
            .text
    }
}

/// A bidirectional call kept open: each message is echoed, and the call
/// ends only when the caller closes its side.
struct OpenCall {
    tx: mpsc::Sender<EchoRequest>,
    replies: tonic::Streaming<tether_tests::pb::EchoReply>,
}

impl OpenCall {
    async fn open(client: &mut EchoClient<Channel>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let replies = client
            .bidi(ReceiverStream::new(rx))
            .await
            .expect("bidi")
            .into_inner();
        let mut call = Self { tx, replies };
        call.round_trip("opened").await;
        call
    }

    /// Sends one message and waits for its echo: the call is forwarding.
    async fn round_trip(&mut self, text: &str) {
        self.tx
            .send(EchoRequest {
                text: text.into(),
                ..Default::default()
            })
            .await
            .expect("the call is open");
        let reply = tokio::time::timeout(PATIENCE, self.replies.message())
            .await
            .expect("a reply")
            .expect("the call is still forwarding")
            .expect("an echo, not the end");
        assert_eq!(reply.text, text);
    }

    /// Closes the caller's side and returns how the call ended.
    async fn finish(self) -> Result<(), tonic::Status> {
        let Self { tx, mut replies } = self;
        drop(tx);
        match tokio::time::timeout(PATIENCE, replies.message()).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(r))) => panic!("an echo after the end: {r:?}"),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("the call did not end"),
        }
    }

    /// Waits for the call to end without closing it (the tunnel cut it).
    async fn ended(mut self) -> Result<(), tonic::Status> {
        match tokio::time::timeout(PATIENCE, self.replies.message()).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(r))) => panic!("an echo nobody asked for: {r:?}"),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("the call was not cut"),
        }
    }
}

async fn get(addr: SocketAddr, host: &str, target: &str) -> (u16, String, Option<String>) {
    let mut caller = HttpCaller::plaintext(addr, false).await.unwrap();
    let resp = caller
        .send(request(Method::GET, host, target, empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let error = resp
        .headers()
        .get("tether-error")
        .map(|v| v.to_str().unwrap().to_string());
    let body = upstream::collect(resp.into_body()).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), error)
}

async fn readyz(admin: SocketAddr) -> (u16, String) {
    let (status, body, _) = get(admin, "admin", "/readyz").await;
    (status, body)
}

const DRAINING: &str = "draining: listeners closed, new calls refused";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_sigterm_drains_the_calls_in_flight_and_refuses_new_ones() {
    let mut d = Deployment::start(30_000, 30_000).await;
    let (status, body) = readyz(d.edge.addr("admin")).await;
    assert_eq!(status, 200, "ready before the signal: {body}");
    let mut echo = d.echo().await;
    let mut call = OpenCall::open(&mut echo).await;
    let upload = Upload::open(&echo, &d.upstream.observed).await;

    d.edge.terminate();
    d.edge.log.wait_for(DRAINING).await;

    // Probes see the edge leave, while it still answers them.
    let (status, body) = readyz(d.edge.addr("admin")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lifecycle: FAILING: draining"), "{body}");
    // The ingress listener is closed: a new caller cannot connect.
    assert!(
        grpc_plaintext(d.edge.addr("plaintext"), ECHO_HOST)
            .await
            .is_err(),
        "the ingress listener still accepts while draining"
    );
    // Egress through the tunnel is refused by the edge, retryably.
    let (status, body, error) = get(d.egress(), "cp-web", "http://cp-web/hello").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error.as_deref(), Some("draining"), "{body}");
    assert!(body.contains("the edge is shutting down"), "{body}");

    // The calls admitted before the signal run on to their ends: the
    // stream answers both ways, the upload takes more parts.
    call.round_trip("during the drain").await;
    upload.send("b").await;
    call.finish()
        .await
        .expect("the call in flight ends cleanly");
    assert_eq!(
        upload.finish().await,
        "ab",
        "every part of the upload arrived"
    );

    let status = d.edge.wait_exit().await;
    assert!(status.success(), "{status:?}; log:\n{}", d.edge.log.text());
    let log = d.edge.log.text();
    assert!(log.contains("every call in flight finished"), "{log}");
    assert!(log.contains("edge stopped"), "{log}");
    // The edge told the client (GOAWAY), which went to dial a replacement
    // while the old connection carried the calls in flight.
    d.client
        .log
        .wait_for("edge is going away; dialing a replacement")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sigterm_drains_the_calls_in_flight_and_refuses_new_ones() {
    let mut d = Deployment::start(30_000, 30_000).await;
    let mut echo = d.echo().await;
    let mut call = OpenCall::open(&mut echo).await;
    let upload = Upload::open(&echo, &d.upstream.observed).await;
    let seen = d.upstream.observed.requests();

    d.client.terminate();
    d.client.log.wait_for(DRAINING).await;

    let (status, body) = readyz(d.client.addr("admin")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lifecycle: FAILING: draining"), "{body}");
    // The egress listener is closed.
    assert!(
        tokio::net::TcpStream::connect(d.egress()).await.is_err(),
        "the egress listener still accepts while draining"
    );
    // A new call from the edge is refused by the client, retryably, and
    // never reaches the service.
    let refused = echo
        .unary(EchoRequest {
            text: "new".into(),
            ..Default::default()
        })
        .await
        .expect_err("a new call while the client drains");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused
            .metadata()
            .get("tether-error")
            .and_then(|v| v.to_str().ok()),
        Some("draining"),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("tunnel client is shutting down"),
        "{refused:?}"
    );
    assert_eq!(d.upstream.observed.requests(), seen);

    call.round_trip("during the drain").await;
    upload.send("b").await;
    call.finish()
        .await
        .expect("the call in flight ends cleanly");
    assert_eq!(
        upload.finish().await,
        "ab",
        "every part of the upload arrived"
    );

    let status = d.client.wait_exit().await;
    assert!(
        status.success(),
        "{status:?}; log:\n{}",
        d.client.log.text()
    );
    let log = d.client.log.text();
    assert!(log.contains("every call in flight finished"), "{log}");
    assert!(log.contains("client stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_the_drain() {
    let mut d = Deployment::start(300, 30_000).await;
    let call = OpenCall::open(&mut d.echo().await).await;

    d.edge.terminate();
    // The call never finishes: the edge cuts it when the grace period ends.
    let status = d.edge.wait_exit().await;
    assert!(status.success(), "{status:?}; log:\n{}", d.edge.log.text());
    let log = d.edge.log.text();
    assert!(log.contains("the grace period ended with"), "{log}");
    assert!(log.contains("edge stopped"), "{log}");
    assert!(call.ended().await.is_err(), "a cut call must not end OK");
    // The cut call's close record was queued as the edge stopped; the
    // edge flushed it before exiting, so the log is whole.
    let path = d._dir.path().join("audit/edge.log");
    let trail = records(&path);
    let streams = by_stream(&trail);
    assert!(
        streams
            .values()
            .any(|(open, close)| open.path.ends_with("/Bidi") && close.error.is_some()),
        "the cut call has its close record: {trail:?}"
    );
    verify_files(&[path]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_forces_the_stop() {
    // A grace period longer than PATIENCE: only the second signal can end
    // the drain before wait_exit gives up.
    let mut d = Deployment::start(3_600_000, 30_000).await;
    let call = OpenCall::open(&mut d.echo().await).await;

    d.edge.terminate();
    d.edge.log.wait_for(DRAINING).await;
    d.edge.terminate();

    let status = d.edge.wait_exit().await;
    assert!(status.success(), "{status:?}; log:\n{}", d.edge.log.text());
    let log = d.edge.log.text();
    assert!(log.contains("second signal: forcing the stop"), "{log}");
    assert!(log.contains("a second signal forced the stop"), "{log}");
    assert!(call.ended().await.is_err(), "a cut call must not end OK");
}

/// Every task the edge and the client spawn belongs to their lifecycle:
/// after calls of every flow and a shutdown, the runtime holds no task
/// of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_task_behind() {
    let runtime = tokio::runtime::Handle::current().metrics();
    let baseline = runtime.num_alive_tasks();
    let mut topo = Topology::start().await.unwrap();
    {
        let mut echo = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
            .await
            .unwrap();
        echo.unary(EchoRequest {
            text: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let call = OpenCall::open(&mut echo).await;
        call.finish().await.unwrap();
        let (status, body, _) =
            get(topo.egress_addr.unwrap(), "cp-web", "http://cp-web/hello").await;
        assert_eq!(status, 200, "{body}");
    }
    let client = topo.client.take().unwrap();
    let edge = topo.edge.take().unwrap();
    let (client_life, edge_life) = (client.lifecycle().clone(), edge.lifecycle().clone());
    client.shutdown(Duration::from_secs(10)).await;
    edge.shutdown(Duration::from_secs(10)).await;
    for (name, life) in [("client", &client_life), ("edge", &edge_life)] {
        assert_eq!(life.tasks(), 0, "{name} tasks left after shutdown");
        assert_eq!(life.calls(), 0, "{name} calls left after shutdown");
    }
    drop(topo);
    // Tasks outside the lifecycles (the upstreams', quinn's endpoint
    // drivers, the callers' connections) end as their sockets close.
    let settled = tokio::time::timeout(PATIENCE, async {
        while runtime.num_alive_tasks() > baseline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} tasks alive after shutdown, {baseline} before the topology started",
        runtime.num_alive_tasks()
    );
}
