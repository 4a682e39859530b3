//! One audit object per stream, which writes exactly one `open` and exactly
//! one `close` record (ztunnel's "one record object per connection"). The
//! open is awaited — it is durable before a byte is forwarded — and the
//! close is written when the stream ends, or from `Drop` if the stream was
//! abandoned, so no path forgets it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{AuditError, AuditEvent, AuditLog, Event};

/// How a stream ended, for its close record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    /// HTTP status the caller saw.
    pub http_status: Option<u16>,
    /// gRPC status, from trailers or a trailers-only response.
    pub grpc_status: Option<u32>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// The audit trail of one stream.
pub struct StreamAudit {
    log: AuditLog,
    base: AuditEvent,
    started: Instant,
    opened: bool,
    closed: bool,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: Option<Arc<AtomicU64>>,
    ending: Ending,
}

impl StreamAudit {
    /// Starts the trail; `base` carries identities, service, method, path
    /// and ids, and is repeated in both records.
    pub fn new(log: AuditLog, base: AuditEvent) -> Self {
        Self {
            log,
            base,
            started: Instant::now(),
            opened: false,
            closed: false,
            bytes_in: None,
            bytes_out: None,
            ending: Ending::default(),
        }
    }

    /// Fills in what is learnt after the stream starts (service, tunnel…).
    pub fn base_mut(&mut self) -> &mut AuditEvent {
        &mut self.base
    }

    /// Writes the `open` record and waits until it is durable. Forwarding
    /// must not start unless this returned `Ok`.
    pub async fn open(
        &mut self,
        decision: &str,
        rule: Option<&str>,
        reason: Option<String>,
    ) -> Result<(), AuditError> {
        if self.opened {
            return Ok(());
        }
        self.base.event = Event::Open;
        self.base.decision = Some(decision.to_string());
        self.base.rule = rule.map(str::to_string);
        self.base.reason = reason;
        let written = self.log.append_ref(&self.base).await;
        // The reason explains the decision; the close record need not
        // repeat it.
        self.base.reason = None;
        written?;
        self.opened = true;
        Ok(())
    }

    /// True once the open record is durable.
    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// Counts request-body bytes (towards the service).
    pub fn count_in(&mut self, counter: Arc<AtomicU64>) {
        self.bytes_in = Some(counter);
    }

    /// Counts response-body bytes (towards the caller).
    pub fn count_out(&mut self, counter: Arc<AtomicU64>) {
        self.bytes_out = Some(counter);
    }

    /// Records how the stream ended so far; later calls refine it.
    pub fn ending_mut(&mut self) -> &mut Ending {
        &mut self.ending
    }

    /// Turns `base` into the close record.
    fn close_event(&mut self) -> &AuditEvent {
        let ev = &mut self.base;
        ev.event = Event::Close;
        ev.http_status = self.ending.http_status;
        ev.grpc_status = self.ending.grpc_status;
        ev.error = self.ending.error.clone();
        ev.bytes_in = Some(
            self.bytes_in
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        );
        ev.bytes_out = Some(
            self.bytes_out
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        );
        ev.duration_ms =
            Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        ev
    }

    /// Writes the `close` record and waits for it (used where the handler
    /// outlives the stream, e.g. at the client).
    pub async fn close(mut self) {
        if !self.opened || self.closed {
            return;
        }
        self.closed = true;
        let log = self.log.clone();
        if let Err(e) = log.append_ref(self.close_event()).await {
            tracing::error!(error = %e, "audit close record could not be written");
        }
    }
}

impl Drop for StreamAudit {
    fn drop(&mut self) {
        if !self.opened || self.closed {
            return;
        }
        self.closed = true;
        // Queued without waiting: the stream is over and its task may be
        // gone, but the close record must still be written.
        let log = self.log.clone();
        log.append_detached(self.close_event());
    }
}
