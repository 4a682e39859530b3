//! A tunnel with two client replicas (the same identity, two connections
//! to one edge): the edge balances calls on the connection with the fewest
//! in flight, and when one replica drains it tells the edge (GOAWAY), the
//! edge sends every new call to the other replica, and the replica's calls
//! in flight finish. No call fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tether_tests::callers::grpc_plaintext;
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::{EchoReply, EchoRequest};
use tether_tests::topology::{Options, Topology, TUNNEL};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Bounds every wait: only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A bidirectional call held open: it counts as in flight on the
/// connection the edge chose for it until the caller ends it.
struct Held {
    tx: mpsc::Sender<EchoRequest>,
    replies: tonic::Streaming<EchoReply>,
}

impl Held {
    async fn open(echo: &mut EchoClient<Channel>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let replies = echo
            .bidi(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut held = Self { tx, replies };
        held.round_trip("open").await;
        held
    }

    async fn round_trip(&mut self, text: &str) {
        self.tx
            .send(EchoRequest {
                text: text.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let reply = tokio::time::timeout(PATIENCE, self.replies.message())
            .await
            .expect("an echo")
            .expect("the call is forwarding")
            .expect("an echo, not the end");
        assert_eq!(reply.text, text);
    }

    async fn finish(self) {
        let Self { tx, mut replies } = self;
        drop(tx);
        let end = tokio::time::timeout(PATIENCE, replies.message())
            .await
            .expect("the call ends");
        assert!(matches!(end, Ok(None)), "the call ends cleanly: {end:?}");
    }
}

fn in_flight(topo: &Topology) -> Vec<usize> {
    let mut v: Vec<_> = topo
        .registry
        .connections(TUNNEL)
        .iter()
        .map(|c| c.in_flight())
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_replica_gets_no_new_calls_and_finishes_its_own() {
    let mut topo = Topology::start().await.unwrap();
    let mut cfg = topo.client_config(TUNNEL, &Options::default()).unwrap();
    cfg.audit.path = topo.state_dir.path().join("audit/client-replica-2.log");
    let replica = tunnel_client::build(cfg).unwrap();
    tokio::time::timeout(
        PATIENCE,
        topo.registry.wait_connections(TUNNEL, |c| c.len() == 2),
    )
    .await
    .expect("both replicas registered");

    // Least loaded: the second held call goes to the other connection.
    let mut echo = grpc_plaintext(topo.plaintext_addr, &topo.host("echo"))
        .await
        .unwrap();
    let mut first = Held::open(&mut echo).await;
    assert_eq!(in_flight(&topo), [0, 1]);
    let mut second = Held::open(&mut echo).await;
    assert_eq!(in_flight(&topo), [1, 1], "calls spread over both replicas");

    // The first replica drains, with a grace long enough for the test.
    let draining = topo.client.take().unwrap();
    let stopping = tokio::spawn(async move { draining.shutdown(PATIENCE).await });
    tokio::time::timeout(
        PATIENCE,
        topo.registry
            .wait_connections(TUNNEL, |c| c.iter().any(|c| c.is_draining())),
    )
    .await
    .expect("the edge learnt that the replica drains");

    // Every new call goes to the replica that is not draining.
    for n in 0..20 {
        echo.unary(EchoRequest {
            text: format!("while one replica drains {n}"),
            ..Default::default()
        })
        .await
        .expect("no call fails while a replica drains");
    }
    // The calls in flight on both replicas still run, then finish.
    first.round_trip("during the drain").await;
    second.round_trip("during the drain").await;
    first.finish().await;
    second.finish().await;
    let ending = tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the replica stopped")
        .unwrap();
    assert_eq!(ending, proxy::lifecycle::Ending::Drained, "{ending:?}");

    tokio::time::timeout(
        PATIENCE,
        topo.registry.wait_connections(TUNNEL, |c| c.len() == 1),
    )
    .await
    .expect("the drained replica deregistered");
    echo.unary(EchoRequest::default())
        .await
        .expect("the remaining replica serves");
    replica.shutdown(Duration::ZERO).await;
    topo.shutdown().await;
}
