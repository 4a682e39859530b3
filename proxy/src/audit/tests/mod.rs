//! Tests of the audit log as a whole: writer, verification, failures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{AuditConfig, AuditEvent, AuditLog, Durability, Event, Side};

mod failure;
mod verify;
mod writer;

/// An `open` event for stream `n`.
fn open_event(n: u64) -> AuditEvent {
    AuditEvent {
        event: Event::Open,
        direction: crate::audit::Direction::Ingress,
        stream_id: n,
        request_id: format!("req-{n}"),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        caller: "spiffe://example.org/caller/billing".into(),
        tunnel: "shop".into(),
        service: "orders".into(),
        method: "POST".into(),
        path: format!("/orders.v1.Orders/Get/{n}"),
        decision: Some(crate::audit::AuditDecision::Allow),
        rule: Some("billing-reads-orders".into()),
        ..Default::default()
    }
}

/// The `close` event matching [`open_event`].
fn close_event(n: u64) -> AuditEvent {
    AuditEvent {
        event: Event::Close,
        http_status: Some(200),
        grpc_status: Some(0),
        bytes_in: Some(120),
        bytes_out: Some(4096),
        duration_ms: Some(12),
        ..open_event(n)
    }
}

/// A config for `audit.log` in `dir`.
fn config(dir: &Path, durability: Durability) -> AuditConfig {
    AuditConfig {
        durability,
        ..AuditConfig::new(dir.join("audit.log"), Side::Edge)
    }
}

fn open(dir: &Path, durability: Durability) -> AuditLog {
    AuditLog::open(config(dir, durability)).unwrap()
}

/// The lines of a file, without newlines.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` back, each newline-terminated.
fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// A log of `n` records at `dir/audit.log`, written and closed.
async fn log_with(dir: &Path, n: u64) -> PathBuf {
    let log = open(dir, Durability::None);
    for i in 0..n {
        log.append(open_event(i)).await.unwrap();
    }
    log.sync().await.unwrap();
    dir.join("audit.log")
}

/// Polls `cond` until it holds or `limit` passes; for effects of a
/// background timer, which tests cannot otherwise wait on.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
