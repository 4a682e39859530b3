//! [`AuditLog`]: the handle streams use to append records.
//!
//! Under `Always`, appends go through a bounded queue to one writer
//! thread (see [`super::worker`]), which batches them under one fsync.
//! Under `None` and `Interval` an appender writes its record itself when
//! it finds the file free, and queues it otherwise. Appenders wait when
//! the queue is full, so a slow disk slows admission of new streams
//! instead of growing memory.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::config::AuditConfig;
use super::error::AuditError;
#[cfg(test)]
use super::faults::Faults;
use super::record::{AuditEvent, EncodedEvent, Side};
use super::segment::Segment;
use super::state::{AuditStats, Shared};
use super::worker::{Request, Worker};

/// Requests that may wait for the writer. 4096 covers a burst of new streams
/// on a busy edge; beyond it appenders wait (backpressure), bounding memory
/// to a few megabytes.
pub const QUEUE_CAPACITY: usize = 4096;

/// A handle to an open audit log. Cloning is cheap (a channel sender and an
/// `Arc`); all clones feed the same writer. When the last clone is dropped
/// the writer finishes what is queued, fsyncs if it has unsynced records,
/// and exits.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Request>,
    /// The file and chain, shared with the writer thread: appenders write
    /// through it themselves under `None` and `Interval`.
    worker: Arc<Mutex<Worker>>,
    /// The mode lets appenders write their own records (not `Always`);
    /// a check before the lock, so `Always` appenders never take it
    /// (`Worker::write_inline` decides the rest).
    inline: bool,
    side: Side,
    shared: Arc<Shared>,
    #[cfg(test)]
    faults: Arc<Faults>,
}

impl AuditLog {
    /// Opens the log at `config.path`, creating it if absent, and resumes
    /// the chain after its last record (looking at rotated files if the live
    /// one is empty). Fails if the last record is torn or does not verify:
    /// continuing the chain would hide that. Starts the writer thread.
    pub fn open(config: AuditConfig) -> Result<AuditLog, AuditError> {
        config.validate()?;
        #[cfg(test)]
        let faults = Arc::new(Faults::default());
        let (segment, head) = Segment::open(
            &config.path,
            #[cfg(test)]
            faults.clone(),
        )?;
        let shared = Arc::new(Shared::new());
        if let Some(seq) = head.next_seq.checked_sub(1) {
            shared.set_head(seq, &head.prev);
        }
        let worker = Worker {
            segment,
            head,
            durability: config.durability,
            close_sync: config.close_sync,
            max_file_bytes: config.max_file_bytes,
            shared: shared.clone(),
            dirty_since: None,
        };
        let worker = Arc::new(Mutex::new(worker));
        let open_error = |e: std::io::Error| AuditError::Open {
            path: config.path.clone(),
            reason: format!("cannot start the writer: {e}"),
        };
        // The writer blocks on write and fsync, so it gets its own thread
        // (with a timer-only runtime for the `Interval` fsync) instead of a
        // runtime worker. It ends when every handle is dropped.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(open_error)?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = worker.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || runtime.block_on(Worker::run(writer, rx)))
            .map_err(open_error)?;
        Ok(AuditLog {
            tx,
            worker,
            inline: !matches!(config.durability, super::Durability::Always),
            side: config.side,
            shared,
            #[cfg(test)]
            faults,
        })
    }

    /// Appends one record and returns its `seq` once it is durable as the
    /// log's [`super::Durability`] requires. `Err` means the record is not
    /// in the log and the stream it describes must not proceed (fail
    /// closed); a later append retries the disk.
    ///
    /// Cancelling this future after the record was queued does not withdraw
    /// it: it is still written.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        self.append_ref(&event).await
    }

    /// [`AuditLog::append`] without giving up the event, so a stream can
    /// reuse its fields for its next record. The record is encoded here, on
    /// the caller's thread; the writer only adds the chain fields.
    pub async fn append_ref(&self, event: &AuditEvent) -> Result<u64, AuditError> {
        let receipt = self.queue(event).await?;
        self.settle(receipt, event).await
    }

    /// Queues a record and returns at once with a [`Receipt`] for its
    /// outcome: a stream's opener sends OPEN while its open record is
    /// being made durable (the far end reaches its service only after the
    /// AUDITED frame that follows, see `crate::forward::open`). `Err`:
    /// the record was not queued.
    pub(crate) async fn queue(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let encoded = self.encode(event)?;
        if let Some(outcome) = self.write_inline(&encoded, false) {
            return Ok(Receipt::Ready(outcome));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append {
                event: encoded,
                reply: Some(reply),
                guards: event.event == super::record::Event::Open,
            })
            .await
            .map_err(|_| self.stopped())?;
        Ok(Receipt::Waiting(rx))
    }

    /// Writes a record on this thread when the mode allows it (not
    /// `Always`) and the file is free this instant: no hand-off to the
    /// writer thread and back, which under `None` was most of a record's
    /// cost. `None`: the record must be queued (the writer is busy with a
    /// batch or a background fsync, the log is unhealthy, the record needs
    /// a rotation, or a test holds the writer); nothing was written.
    /// Never waits for the lock, so a runtime thread never blocks on
    /// another's fsync; it does wait for its own `write` to the OS.
    fn write_inline(
        &self,
        encoded: &EncodedEvent,
        detached: bool,
    ) -> Option<Result<u64, AuditError>> {
        if !self.inline {
            return None;
        }
        #[cfg(any(test, feature = "testing"))]
        if self.shared.hold.is_held() {
            return None;
        }
        let mut worker = self.worker.try_lock().ok()?;
        let was_clean = worker.dirty_since.is_none();
        let outcome = worker.write_inline(encoded, detached)?;
        let now_dirty = was_clean && worker.dirty_since.is_some();
        drop(worker);
        if now_dirty {
            // The writer starts the background fsync's period; if its
            // queue is full it is busy and looks at the log after that.
            let _ = self.tx.try_send(Request::Nudge);
        }
        Some(outcome)
    }

    /// Waits for a queued record's outcome (its seq once durable per the
    /// mode) and counts it in the metrics.
    pub(crate) async fn settle(
        &self,
        receipt: Receipt,
        event: &AuditEvent,
    ) -> Result<u64, AuditError> {
        let outcome = match receipt {
            Receipt::Ready(outcome) => outcome,
            Receipt::Waiting(rx) => rx.await.map_err(|_| self.stopped())?,
        };
        // An open that failed is not a stream that opened (it is refused
        // unrecorded); a close that failed still ends its stream.
        if outcome.is_ok() || event.event == super::record::Event::Close {
            self.observe(event);
        }
        outcome
    }

    /// Counts every record appended from now on in `metrics` (stream
    /// metrics come from the audit events; see `crate::metrics`). The
    /// first attachment wins; every clone of this log shares it.
    pub fn attach_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.shared.metrics.set(metrics);
    }

    fn observe(&self, event: &AuditEvent) {
        if let Some(m) = self.shared.metrics.get() {
            m.observe(event);
        }
    }

    /// Queues a record nobody waits for: the close record of a stream whose
    /// task is gone. It is written like any other (the writer logs it if it
    /// cannot be); when the queue is full the send waits in a task of its
    /// own, so the queue's bound still holds.
    pub fn append_detached(&self, event: &AuditEvent) {
        self.observe(event);
        let event = match self.encode(event) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "audit record (stream close) could not be written");
                return;
            }
        };
        if let Some(outcome) = self.write_inline(&event, true) {
            if let Err(e) = outcome {
                tracing::error!(error = %e, "audit record (stream close) could not be written");
            }
            return;
        }
        let request = Request::Append {
            event,
            reply: None,
            guards: false,
        };
        match self.tx.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                let log = self.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if log.tx.send(request).await.is_err() {
                            let e = log.stopped();
                            tracing::error!(error = %e, "audit record (stream close) could not be written");
                        }
                    });
                } else {
                    tracing::error!(
                        "audit record (stream close) dropped: queue full outside a runtime"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                let e = self.stopped();
                tracing::error!(error = %e, "audit record (stream close) could not be written");
            }
        }
    }

    fn encode(&self, event: &AuditEvent) -> Result<EncodedEvent, AuditError> {
        event
            .encode(self.side)
            .map_err(|e| AuditError::Unavailable(format!("cannot encode record: {e}")))
    }

    /// Fsyncs every record appended before this call, whatever the
    /// durability mode: both binaries call it as the last step of a
    /// shutdown, so no queued record is lost when the process exits.
    pub async fn sync(&self) -> Result<(), AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Sync { reply })
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// False from a failed write or fsync until the next success; for
    /// `/readyz`, health and metrics. Appends are attempted regardless, and
    /// only a successful one makes the log healthy again.
    pub fn healthy(&self) -> bool {
        self.shared.healthy()
    }

    /// The newest record written (resumed from the file at open); `None`
    /// for a log with no record yet.
    pub fn head(&self) -> Option<super::state::ChainHead> {
        self.shared.head()
    }

    /// The most recent failure, kept after recovery so operators can see
    /// what happened; [`AuditLog::healthy`] says whether it still applies.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    /// Waits until at least `n` records have been written since open: lets
    /// tests and tools wait for close records, which are written after the
    /// stream's handler has returned.
    pub async fn wait_written(&self, n: u64) {
        self.shared.wait_written(n).await;
    }

    /// Counters since open, for metrics.
    pub fn stats(&self) -> AuditStats {
        self.shared.stats()
    }

    /// Holds this log's writer before its next batch until the returned
    /// guard is released (feature `testing`: ordering tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn hold(&self) -> super::AuditHold {
        super::AuditHold::new(self.shared.hold.clone())
    }

    /// The writer thread is gone (it panicked): nothing can be recorded.
    fn stopped(&self) -> AuditError {
        let message = "audit writer stopped";
        self.shared.failed(message);
        AuditError::Unavailable(message.into())
    }

    /// Appends queued for the writer and not yet taken by it (tests).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        QUEUE_CAPACITY - self.tx.capacity()
    }

    /// The fault switches of this log's file.
    #[cfg(test)]
    pub(super) fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// The outcome of a record [`AuditLog::queue`]d, to be awaited with
/// [`AuditLog::settle`].
pub(crate) enum Receipt {
    /// Written on the appender's thread: the outcome is known.
    Ready(Result<u64, AuditError>),
    /// Queued for the writer thread, which answers here.
    Waiting(oneshot::Receiver<Result<u64, AuditError>>),
}
