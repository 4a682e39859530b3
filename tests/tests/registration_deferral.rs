//! A registration the edge refuses for now comes with a retry-after that
//! the client honours: a tunnel over `[tunnels] max_connections_per_tunnel`
//! is refused at HELLO as overloaded with the edge's
//! `registration_retry_after_ms`, its slot reports the refusal and waits at
//! least that long (not its 20 ms backoff step), and the connections the
//! tunnel already holds keep serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tether_tests::callers::grpc_plaintext;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{Options, Topology, DOMAIN};

const WAIT: Duration = Duration::from_secs(20);
const HINT: Duration = Duration::from_secs(7);

#[tokio::test]
async fn a_tunnel_over_its_connection_bound_is_deferred_by_the_edges_retry_after() {
    let opts = Options {
        edge_max_connections_per_tunnel: Some(1),
        edge_registration_retry_after: Some(HINT),
        ..Default::default()
    };
    let topo = Topology::start_with(opts.clone()).await.unwrap();
    let mut cfg = topo.client_config("pair", &opts).unwrap();
    cfg.connections_per_edge = 2;
    // The topology's 500 ms cap would cut the hint short (a hint is never
    // waited beyond the client's own cap).
    cfg.max_backoff = Duration::from_secs(30);
    cfg.egress_listeners.clear();
    let client = tunnel_client::build(cfg).unwrap();
    topo.registry.wait_live("pair").await;

    // One slot registers; the other is refused with the hint and waits it.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            let status = client.pool_status();
            if let Some(slot) = status.slots.iter().find(|s| {
                s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("max_connections_per_tunnel"))
            }) {
                return slot.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a slot is refused as over max_connections_per_tunnel");
    let error = refused.last_error.clone().unwrap();
    assert!(
        error.contains(&format!("retry after {} ms", HINT.as_millis())),
        "the refusal carries the edge's hint: {error}"
    );
    let waits = refused.next_attempt_after_ms.expect("the slot is waiting");
    let hint = u64::try_from(HINT.as_millis()).unwrap();
    assert!(
        (hint..=hint + hint / 4).contains(&waits),
        "the slot waits the hint plus at most a quarter, not its backoff step: {waits} ms"
    );
    assert_eq!(
        topo.registry.connections("pair").len(),
        1,
        "the bound holds at the edge"
    );

    // The connection the tunnel holds serves calls all along.
    let plaintext = topo.plaintext_addr;
    let mut echo = grpc_plaintext(plaintext, &format!("echo.pair.{DOMAIN}"))
        .await
        .unwrap();
    echo.unary(EchoRequest::default()).await.unwrap();
    assert_eq!(client.pool_status().connections.len(), 1);

    client.shutdown(Duration::from_secs(1)).await;
    topo.shutdown().await;
}
