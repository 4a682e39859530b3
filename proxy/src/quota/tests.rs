#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn limits() -> QuotaLimits {
    QuotaLimits {
        max_tunnel_streams: 0,
        max_caller_calls: 0,
        caller_rate: 0,
        caller_burst: 0,
        max_callers: 16,
    }
}

#[test]
fn tunnel_streams_are_bounded_over_all_callers_and_freed_on_drop() {
    let q = Quotas::new(QuotaLimits {
        max_tunnel_streams: 2,
        ..limits()
    });
    let now = Instant::now();
    let a = q.acquire("demo", "spiffe://t/a", now).unwrap();
    let _b = q.acquire("demo", "spiffe://t/b", now).unwrap();
    let over = q.acquire("demo", "spiffe://t/c", now).unwrap_err();
    assert_eq!(over, Over::TunnelStreams { limit: 2 });
    assert_eq!(over.retry_after(), Duration::from_secs(1));
    // Another tunnel has its own share.
    let _other = q.acquire("other", "spiffe://t/c", now).unwrap();
    drop(a);
    assert_eq!(q.tunnel_in_flight("demo"), 1);
    q.acquire("demo", "spiffe://t/c", now).unwrap();
    assert_eq!(q.refused().tunnel_streams.load(Ordering::Relaxed), 1);
}

#[test]
fn caller_calls_are_bounded_per_caller() {
    let q = Quotas::new(QuotaLimits {
        max_caller_calls: 2,
        ..limits()
    });
    let now = Instant::now();
    let held: Vec<_> = (0..2)
        .map(|_| q.acquire("demo", "spiffe://t/flood", now).unwrap())
        .collect();
    let over = q.acquire("demo", "spiffe://t/flood", now).unwrap_err();
    assert_eq!(over, Over::CallerCalls { limit: 2 });
    // A refused call took no share of the tunnel.
    assert_eq!(q.tunnel_in_flight("demo"), 2);
    // Another caller is not affected.
    q.acquire("demo", "spiffe://t/quiet", now).unwrap();
    drop(held);
    q.acquire("demo", "spiffe://t/flood", now).unwrap();
    // No rate: idle callers leave no state behind.
    assert_eq!(q.callers_tracked(), 0);
    assert_eq!(q.tunnel_in_flight("demo"), 0);
}

#[test]
fn rate_is_a_token_bucket_with_an_exact_retry_after() {
    let q = Quotas::new(QuotaLimits {
        caller_rate: 10,
        caller_burst: 3,
        ..limits()
    });
    let t0 = Instant::now();
    for _ in 0..3 {
        drop(q.acquire("demo", "c", t0).unwrap());
    }
    let over = q.acquire("demo", "c", t0).unwrap_err();
    match over {
        Over::CallerRate { rate, retry_after } => {
            assert_eq!(rate, 10);
            assert_eq!(retry_after, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
    // 50 ms later half a token is back: still over, 50 ms to go.
    let over = q
        .acquire("demo", "c", t0 + Duration::from_millis(50))
        .unwrap_err();
    let wait = over.retry_after().as_secs_f64();
    assert!((wait - 0.05).abs() < 1e-6, "{wait}");
    // 100 ms after the start one token is back, and only one.
    let t1 = t0 + Duration::from_millis(100);
    drop(q.acquire("demo", "c", t1).unwrap());
    assert!(q.acquire("demo", "c", t1).is_err());
    // A long pause refills to the burst, no more.
    let t2 = t1 + Duration::from_secs(60);
    for _ in 0..3 {
        drop(q.acquire("demo", "c", t2).unwrap());
    }
    assert!(q.acquire("demo", "c", t2).is_err());
    // Other callers have their own bucket.
    drop(q.acquire("demo", "d", t2).unwrap());
    assert_eq!(q.refused().caller_rate.load(Ordering::Relaxed), 4);
}

#[test]
fn burst_defaults_to_one_second_of_rate() {
    let q = Quotas::new(QuotaLimits {
        caller_rate: 5,
        ..limits()
    });
    let t0 = Instant::now();
    for _ in 0..5 {
        drop(q.acquire("demo", "c", t0).unwrap());
    }
    assert!(q.acquire("demo", "c", t0).is_err());
}

#[test]
fn tracked_callers_are_bounded_and_idle_ones_are_forgotten() {
    let q = Quotas::new(QuotaLimits {
        caller_rate: 100,
        max_callers: 2,
        ..limits()
    });
    let t0 = Instant::now();
    let busy_a = q.acquire("demo", "a", t0).unwrap();
    let busy_b = q.acquire("demo", "b", t0).unwrap();
    // Both tracked callers are busy: a third is refused, not tracked.
    let over = q.acquire("demo", "c", t0).unwrap_err();
    assert_eq!(over, Over::Callers { limit: 2 });
    drop(busy_a);
    drop(busy_b);
    // Idle but their buckets are not yet full: still remembered.
    assert!(q.acquire("demo", "c", t0).is_err());
    // Once full again they are forgotten, making room.
    let later = t0 + Duration::from_secs(1);
    drop(q.acquire("demo", "c", later).unwrap());
    assert!(q.callers_tracked() <= 2);
}

#[test]
fn validation_names_the_key() {
    let bad = QuotaLimits {
        caller_burst: 10,
        ..limits()
    };
    assert!(bad.validate().unwrap_err().contains("caller_rate"));
    assert!(QuotaLimits::default().validate().is_ok());
}

#[test]
fn messages_say_which_key_and_what_to_do() {
    let over = Over::CallerRate {
        rate: 10,
        retry_after: Duration::from_millis(250),
    };
    let text = over.to_string();
    assert!(
        text.contains("caller_rate") && text.contains("250 ms"),
        "{text}"
    );
    assert_eq!(over.limit_name(), "caller_rate");
}
