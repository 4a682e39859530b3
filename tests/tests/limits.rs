//! Fair shares at the edge (`[limits]` max_caller_calls, max_tunnel_streams,
//! caller_rate): a call over one is refused at once with a retryable
//! 503 / RESOURCE_EXHAUSTED that says when to retry, is audited, and takes
//! nothing from anyone else; the share comes back when a call ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use certs::{IdentityKind, IssuedCert};
use proxy::audit::{AuditDecision, Event};
use proxy::quota::QuotaLimits;
use proxy::Limits;
use tether_tests::audit_trail::records;
use tether_tests::callers::{caller_tls, grpc_tls};
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::EchoRequest;
use tether_tests::topology::{Options, Topology, TRUST_DOMAIN};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

async fn start(quota: QuotaLimits) -> Topology {
    Topology::start_with(Options {
        limits: Limits {
            quota,
            ..Limits::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn none() -> QuotaLimits {
    QuotaLimits {
        max_tunnel_streams: 0,
        max_caller_calls: 0,
        caller_rate: 0,
        caller_burst: 0,
        max_callers: 1024,
    }
}

fn cert(topo: &Topology, name: &str) -> IssuedCert {
    topo.pki.leaf(IdentityKind::Caller, name).unwrap()
}

async fn echo(topo: &Topology, cert: &IssuedCert) -> EchoClient<Channel> {
    let tls = caller_tls(cert, topo.pki.roots().unwrap(), &[b"h2"]).unwrap();
    grpc_tls(topo.ingress_addr, &topo.host("echo"), tls)
        .await
        .unwrap()
}

fn text(t: &str) -> EchoRequest {
    EchoRequest {
        text: t.into(),
        ..Default::default()
    }
}

/// Starts `n` calls that the service parks, and waits until it holds them.
async fn park(
    topo: &Topology,
    client: &EchoClient<Channel>,
    n: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let already = topo
        .upstream
        .observed
        .hanging
        .load(std::sync::atomic::Ordering::SeqCst);
    let calls = (0..n)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let _ = c
                    .unary(EchoRequest {
                        hang: true,
                        ..Default::default()
                    })
                    .await;
            })
        })
        .collect();
    within(
        "the service holds the parked calls",
        topo.upstream.observed.wait_hanging(already + n),
    )
    .await;
    calls
}

fn assert_over_limit(status: &tonic::Status, key: &str) {
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(key), "{status:?}");
    let meta = status.metadata();
    assert_eq!(meta.get("tether-error").unwrap(), "over-limit");
    let pushback: u64 = meta
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushback >= 1, "{pushback}");
    assert!(meta.get("retry-after").is_some(), "{status:?}");
}

async fn over_limit_records(topo: &Topology, caller: &str) -> usize {
    topo.edge_audit_log.sync().await.unwrap();
    records(&topo.edge_audit)
        .into_iter()
        .filter(|r| {
            r.event == Event::Open
                && r.decision == Some(AuditDecision::Refuse)
                && r.reason.as_deref() == Some("over-limit")
                && r.caller == caller
        })
        .count()
}

#[tokio::test]
async fn a_caller_over_its_concurrent_calls_is_refused_and_others_are_not() {
    let topo = start(QuotaLimits {
        max_caller_calls: 2,
        ..none()
    })
    .await;
    let (flood, quiet) = (cert(&topo, "flood"), cert(&topo, "quiet"));
    let flood_client = echo(&topo, &flood).await;
    let parked = park(&topo, &flood_client, 2).await;

    let status = within("the third call", flood_client.clone().unary(text("three")))
        .await
        .expect_err("over max_caller_calls");
    assert_over_limit(&status, "max_caller_calls");

    let mut q = echo(&topo, &quiet).await;
    let reply = within("another caller's call", q.unary(text("quiet"))).await;
    assert_eq!(reply.unwrap().into_inner().text, "quiet");

    // The share comes back when a parked call ends.
    for call in &parked {
        call.abort();
    }
    within(
        "the service sees both cancellations",
        topo.upstream.observed.wait_cancelled(2),
    )
    .await;
    let again = within("the flood caller once its calls ended", async {
        loop {
            match flood_client.clone().unary(text("again")).await {
                Ok(r) => break r,
                // The edge learns of the cancellations a moment after
                // the service does.
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    tokio::task::yield_now().await
                }
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    assert_eq!(again.into_inner().text, "again");
    let flood_id = format!("spiffe://{TRUST_DOMAIN}/caller/flood");
    assert!(over_limit_records(&topo, &flood_id).await >= 1);
    topo.shutdown().await;
}

#[tokio::test]
async fn a_tunnel_over_its_concurrent_streams_refuses_every_caller() {
    let topo = start(QuotaLimits {
        max_tunnel_streams: 2,
        ..none()
    })
    .await;
    let (a, b) = (cert(&topo, "a"), cert(&topo, "b"));
    let a_client = echo(&topo, &a).await;
    let parked = park(&topo, &a_client, 2).await;
    let mut b_client = echo(&topo, &b).await;
    let status = within("b's call", b_client.unary(text("b")))
        .await
        .expect_err("over max_tunnel_streams");
    assert_over_limit(&status, "max_tunnel_streams");
    assert_eq!(
        topo.edge
            .as_ref()
            .unwrap()
            .quotas
            .refused()
            .tunnel_streams
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    for call in parked {
        call.abort();
    }
    topo.shutdown().await;
}

#[tokio::test]
async fn a_caller_over_its_rate_is_told_when_to_retry() {
    // One call per second, burst 3: calls in a row succeed until the
    // bucket is empty; a slow machine may earn a token back meanwhile, so
    // the test counts how many passed against the time they took.
    let topo = start(QuotaLimits {
        caller_rate: 1,
        caller_burst: 3,
        ..none()
    })
    .await;
    let (fast, other) = (cert(&topo, "fast"), cert(&topo, "other"));
    let mut f = echo(&topo, &fast).await;
    let began = std::time::Instant::now();
    let mut passed = 0u64;
    let status = loop {
        match within("a call", f.unary(text("again"))).await {
            Ok(_) => passed += 1,
            Err(status) => break status,
        }
        assert!(passed < 100, "the rate is never enforced");
    };
    let earned = began.elapsed().as_secs() + 1;
    assert!(
        (3..=3 + earned).contains(&passed),
        "{passed} calls passed in {:?} at 1/s with a burst of 3",
        began.elapsed()
    );
    assert_over_limit(&status, "caller_rate");
    let pushback: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pushback <= 1000,
        "one token comes back within 1 s: {pushback}"
    );
    let mut o = echo(&topo, &other).await;
    within("another caller", o.unary(text("other")))
        .await
        .unwrap();
    let fast_id = format!("spiffe://{TRUST_DOMAIN}/caller/fast");
    assert_eq!(over_limit_records(&topo, &fast_id).await, 1);
    topo.shutdown().await;
}

#[tokio::test]
async fn a_plain_http_caller_over_a_limit_gets_503_with_retry_after() {
    let topo = start(QuotaLimits {
        caller_rate: 1,
        caller_burst: 1,
        ..none()
    })
    .await;
    let mut caller = tether_tests::callers::HttpCaller::plaintext(topo.plaintext_addr, false)
        .await
        .unwrap();
    let host = topo.host("web");
    let get = || {
        tether_tests::callers::request(
            http::Method::GET,
            &host,
            "/hello",
            tether_tests::callers::empty(),
        )
        .unwrap()
    };
    let first = within("the first call", caller.send(get())).await.unwrap();
    assert_eq!(first.status(), 200);
    // The next call is over unless a slow machine earned a token back.
    let mut second = within("the second call", caller.send(get())).await.unwrap();
    for _ in 0..100 {
        if second.status() != 200 {
            break;
        }
        second = within("another call", caller.send(get())).await.unwrap();
    }
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["tether-error"], "over-limit");
    let after: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&after), "{after}");
    topo.shutdown().await;
}
