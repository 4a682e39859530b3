//! 200 tunnel clients lose their edge at the same instant (it stops and
//! a new one starts on the same address): their redials spread over the
//! first backoff step (full jitter, uniform in [0, initial_backoff])
//! instead of arriving together. The spread is printed; the test asserts
//! that no 20 ms window holds more than a quarter of the reconnects (in
//! lockstep, all 200 would land within a few milliseconds). A slower
//! machine only spreads them further.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tether_tests::topology::{Options, Topology};

const CLIENTS: usize = 200;
/// The production default of `[reconnect] initial_backoff_ms`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const WINDOW: Duration = Duration::from_millis(20);
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_lose_their_edge_together_spread_their_reconnects() {
    let opts = Options {
        start_client: false,
        ..Options::default()
    };
    let mut topo = Topology::start_with(opts.clone()).await.unwrap();
    let mut clients = Vec::new();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("storm-{i}")).collect();
    for name in &names {
        let mut cfg = topo.client_config(name, &opts).unwrap();
        cfg.initial_backoff = INITIAL_BACKOFF;
        cfg.max_backoff = Duration::from_secs(30);
        // Every client counts as long connected: the first redial draws
        // from the first backoff step, as after a long-lived connection.
        cfg.stable_after = Duration::ZERO;
        clients.push(tunnel_client::build(cfg).unwrap());
    }
    let registry = topo.registry.clone();
    tokio::time::timeout(PATIENCE, async {
        for name in &names {
            registry.wait_live(name).await;
        }
    })
    .await
    .expect("every client registered");

    topo.restart_edge().await.unwrap();
    let lost_at = Instant::now();
    let registry = topo.registry.clone();
    let waits: Vec<_> = names
        .iter()
        .map(|name| {
            let registry = registry.clone();
            let name = name.clone();
            tokio::spawn(async move {
                registry.wait_live(&name).await;
                lost_at.elapsed()
            })
        })
        .collect();
    let mut back = Vec::new();
    for w in waits {
        back.push(
            tokio::time::timeout(PATIENCE, w)
                .await
                .expect("every client reconnected")
                .unwrap(),
        );
    }
    back.sort();
    let busiest = back
        .iter()
        .enumerate()
        .map(|(i, start)| {
            back[i..]
                .iter()
                .take_while(|t| **t < *start + WINDOW)
                .count()
        })
        .max()
        .unwrap();
    let pct = |q: usize| back[(CLIENTS * q / 100).min(CLIENTS - 1)];
    println!(
        "{CLIENTS} reconnects after the edge restart: first {:?}, p10 {:?}, p50 {:?}, p90 {:?}, last {:?}; \
         at most {busiest} within any {WINDOW:?}",
        back[0],
        pct(10),
        pct(50),
        pct(90),
        back[CLIENTS - 1]
    );
    assert!(
        busiest <= CLIENTS / 4,
        "{busiest} of {CLIENTS} reconnects landed within {WINDOW:?}: the redials are not spread"
    );
    for c in clients {
        c.shutdown(Duration::ZERO).await;
    }
    topo.shutdown().await;
}
