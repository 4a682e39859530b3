//! The audit trail of one stream, as two types so the compiler knows which
//! records have been written: a [`Trail`] has written nothing; opening it
//! writes the `open` record, waits until it is durable, and only then
//! yields an [`OpenTrail`], which writes exactly one `close` record — when
//! the stream ends, or from `Drop` if the stream was abandoned, so no path
//! forgets it (ztunnel's "one record object per connection").
//!
//! Both are crate-private: streams get them through `crate::admission`,
//! which ties the open record to a policy decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::writer::Receipt;
use super::{AuditDecision, AuditError, AuditEvent, AuditLog, Event};

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

/// A stream's trail before its open record: identities, service, method,
/// path and ids, repeated in both records.
pub(crate) struct Trail {
    log: AuditLog,
    base: AuditEvent,
    started: Instant,
}

impl Trail {
    pub(crate) fn new(log: AuditLog, base: AuditEvent) -> Self {
        Self {
            log,
            base,
            started: Instant::now(),
        }
    }

    /// Fields learnt after the stream started (service, tunnel).
    pub(crate) fn base_mut(&mut self) -> &mut AuditEvent {
        &mut self.base
    }

    /// Writes the `open` record and waits until it is durable. `Err`
    /// means nothing was recorded: the stream must not proceed.
    pub(crate) async fn open(
        self,
        decision: AuditDecision,
        rule: Option<&str>,
        reason: Option<String>,
    ) -> Result<OpenTrail, AuditError> {
        let (mut trail, receipt) = self.open_queued(decision, rule, reason).await?;
        trail.settle_open(receipt).await?;
        Ok(trail)
    }

    /// Queues the `open` record without waiting for it to be durable; the
    /// trail owns its close record from here (queued after the open, so
    /// the log keeps their order), and [`OpenTrail::settle_open`] says
    /// whether the open record made it. `Err`: nothing was queued.
    pub(crate) async fn open_queued(
        mut self,
        decision: AuditDecision,
        rule: Option<&str>,
        reason: Option<String>,
    ) -> Result<(OpenTrail, Receipt), AuditError> {
        self.base.event = Event::Open;
        self.base.decision = Some(decision);
        self.base.rule = rule.map(str::to_string);
        self.base.reason = reason;
        let receipt = self.log.queue(&self.base).await?;
        let trail = OpenTrail {
            log: self.log,
            base: self.base,
            started: self.started,
            closed: false,
            bytes_in: None,
            bytes_out: None,
            ending: Ending::default(),
            span: tracing::Span::current(),
        };
        Ok((trail, receipt))
    }
}

/// A stream whose open record is durable; owns its close record.
pub(crate) struct OpenTrail {
    log: AuditLog,
    base: AuditEvent,
    started: Instant,
    closed: bool,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: Option<Arc<AtomicU64>>,
    ending: Ending,
    /// The stream's span at open: the close may run after the stream's
    /// task (a response body finishing in the server), and its line must
    /// still name the stream.
    span: tracing::Span,
}

impl OpenTrail {
    /// Waits until the open record queued by [`Trail::open_queued`] is
    /// durable. `Err`: it is not in the log, so the stream writes no close
    /// record either and must not proceed.
    pub(crate) async fn settle_open(&mut self, receipt: Receipt) -> Result<u64, AuditError> {
        // Counted with the record as it was appended, reason included.
        let outcome = self.log.settle(receipt, &self.base).await;
        if outcome.is_err() {
            self.closed = true;
        }
        // The reason explains the decision; the close record need not
        // repeat it.
        self.base.reason = None;
        outcome
    }

    /// Counts request-body bytes (from the caller).
    pub(crate) fn count_in(&mut self, counter: Arc<AtomicU64>) {
        self.bytes_in = Some(counter);
    }

    /// Counts response-body bytes (towards the caller).
    pub(crate) fn count_out(&mut self, counter: Arc<AtomicU64>) {
        self.bytes_out = Some(counter);
    }

    /// How the stream ended so far; later calls refine it.
    pub(crate) fn ending_mut(&mut self) -> &mut Ending {
        &mut self.ending
    }

    /// The stream id its records carry.
    pub(crate) fn stream_id(&self) -> u64 {
        self.base.stream_id
    }

    /// The request id its records carry.
    pub(crate) fn request_id(&self) -> &str {
        &self.base.request_id
    }

    /// Turns `base` into the close record.
    fn close_event(&mut self) -> &AuditEvent {
        let ev = &mut self.base;
        ev.event = Event::Close;
        // Only the open record explains its decision (also when the close
        // is written before the open record was settled).
        ev.reason = None;
        ev.http_status = self.ending.http_status;
        ev.grpc_status = self.ending.grpc_status;
        ev.error = self.ending.error.clone();
        let load = |c: &Option<Arc<AtomicU64>>| c.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        ev.bytes_in = Some(load(&self.bytes_in));
        ev.bytes_out = Some(load(&self.bytes_out));
        ev.duration_ms =
            Some(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        // In the stream's span, so the line names the stream (debug: one
        // line per stream is too many at info on a busy edge).
        let _in_stream = self.span.enter();
        tracing::debug!(
            http_status = ev.http_status,
            grpc_status = ev.grpc_status,
            error = ev.error.as_deref(),
            bytes_in = ev.bytes_in,
            bytes_out = ev.bytes_out,
            duration_ms = ev.duration_ms,
            "stream ended"
        );
        ev
    }

    /// Writes the `close` record and waits for it (where the handler
    /// outlives the stream and can afford to).
    pub(crate) async fn close(mut self) {
        self.closed = true;
        let log = self.log.clone();
        if let Err(e) = log.append_ref(self.close_event()).await {
            tracing::error!(error = %e, "audit close record could not be written");
        }
    }
}

impl Drop for OpenTrail {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Queued without waiting: the stream is over and its task may be
        // gone, but the close record must still be written.
        let log = self.log.clone();
        log.append_detached(self.close_event());
    }
}
