//! The single writer: drains the queue, assigns `seq` and `prev` in queue
//! order, writes, fsyncs per the durability mode, and answers each waiter.
//!
//! Group commit: the writer takes every request already queued (up to
//! [`MAX_BATCH`]), writes them with one `write`, then does one
//! `fdatasync` for all of them before completing their waiters. While it
//! syncs, new requests queue up and form the next batch, so under load one
//! fsync covers many records.
//!
//! Under `None` and `Interval` an appender writes its record itself, on
//! its own thread, when it finds the worker free (see
//! `AuditLog::queue`): the worker sits behind a mutex shared by the
//! writer thread and every handle, so the chain stays one sequence, and
//! a record costs no hand-off to the writer and back. The writer thread
//! then serves the rest: records that found the worker busy, rotation,
//! `Always`, and the background fsync.
//!
//! Records are sealed against a tentative chain head; the head only moves
//! when their bytes are committed. A failed write or fsync is rolled back
//! (the file cut back to its committed length) and every record not yet
//! committed gets an error, so a failure consumes no `seq` and leaves no
//! torn line.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::chain::{seal_encoded, Head, Sealed};
use super::clock;
use super::config::Durability;
use super::error::AuditError;
use super::record::EncodedEvent;
use super::segment::Segment;
use super::state::Shared;

/// Most requests one batch takes; bounds the memory of one write and how
/// long the first waiter of a batch waits for the last to be sealed.
pub(super) const MAX_BATCH: usize = 1024;

/// What a handle asks of the writer.
#[derive(Debug)]
pub(super) enum Request {
    /// Append one record; answered with its seq once durable per the mode.
    Append {
        /// The caller's part of the record, encoded on the caller's thread.
        event: EncodedEvent,
        /// Where the outcome goes; `None` for a detached append (a close
        /// record written from `Drop`), whose failure the writer logs.
        reply: Option<oneshot::Sender<Result<u64, AuditError>>>,
        /// An open record: a stream waits on it before forwarding, so
        /// under `Always` it is answered only once fsynced. Other records
        /// (closes) are answered once written and ride the next fsync.
        guards: bool,
    },
    /// Fsync everything written so far, whatever the mode.
    Sync {
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), AuditError>>,
    },
    /// An appender wrote a record itself and left the log unsynced: the
    /// writer wakes to start the period of its background fsync.
    Nudge,
}

/// Who learns a staged record's outcome.
enum Reply {
    /// A queued appender, waiting on its receipt.
    Waiter(oneshot::Sender<Result<u64, AuditError>>),
    /// Nobody: a detached record (a close written from `Drop`).
    Detached,
    /// The appender writing it on its own thread, from `flush`'s result.
    Caller,
}

/// A sealed record and its waiter.
struct Staged {
    sealed: Sealed,
    reply: Reply,
}

impl Staged {
    /// Tells the waiter, or logs a detached record's failure (nobody else
    /// would see it; the log is already marked unhealthy).
    fn answer(self, outcome: Result<u64, AuditError>) {
        match (self.reply, outcome) {
            (Reply::Waiter(reply), outcome) => {
                // A waiter that gave up still has its record written: it
                // was queued, so it is part of the chain.
                let _ = reply.send(outcome);
            }
            (Reply::Detached, Err(e)) => {
                tracing::error!(error = %e, "audit record (stream close) could not be written");
            }
            (Reply::Detached | Reply::Caller, _) => {}
        }
    }
}

/// The log's file and chain; behind a mutex shared by the writer thread
/// and the handles that write their own records.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) segment: Segment,
    pub(super) head: Head,
    pub(super) durability: Durability,
    /// See `AuditConfig::close_sync`.
    pub(super) close_sync: std::time::Duration,
    pub(super) max_file_bytes: u64,
    pub(super) shared: Arc<Shared>,
    /// Since when records are written but not yet fsynced (`Interval`,
    /// and `Always`'s close records); the next fsync clears it. The
    /// background fsync's period counts from here.
    pub(super) dirty_since: Option<Instant>,
}

impl Worker {
    /// Serves requests until every handle is dropped, then fsyncs what
    /// the log still holds unsynced (`Interval`, and `Always`'s close
    /// records). The lock is never held across an await: only while a
    /// batch or a background fsync runs.
    pub(super) async fn run(worker: Arc<Mutex<Worker>>, mut rx: mpsc::Receiver<Request>) {
        let lock = || worker.lock().unwrap_or_else(PoisonError::into_inner);
        let period = lock().sync_period();
        #[cfg(any(test, feature = "testing"))]
        let shared = lock().shared.clone();
        loop {
            let deadline = period.and_then(|p| lock().dirty_since.map(|since| since + p));
            let first = match deadline {
                Some(deadline) => tokio::select! {
                    r = rx.recv() => r,
                    () = tokio::time::sleep_until(deadline.into()) => {
                        lock().periodic_sync();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            // Not under the lock: a held writer must not hold the file.
            #[cfg(any(test, feature = "testing"))]
            shared.hold.wait_while_held();
            let mut worker = lock();
            worker.process(batch);
            // Under constant load the select above may always find a
            // request ready; sync here too so the period holds.
            if let (Some(period), Some(since)) = (period, worker.dirty_since) {
                if since.elapsed() >= period {
                    worker.periodic_sync();
                }
            }
        }
        let mut worker = lock();
        if worker.dirty_since.is_some() {
            worker.periodic_sync();
        }
    }

    /// How long a written record may stay unsynced: the background
    /// fsync's period, if the mode has one.
    fn sync_period(&self) -> Option<std::time::Duration> {
        match self.durability {
            Durability::Interval(d) => Some(d),
            Durability::Always => Some(self.close_sync),
            Durability::None => None,
        }
    }

    /// Writes one record on the appender's thread and returns its seq:
    /// for `None` and `Interval` while the log is healthy, where a record
    /// needs no fsync before it is answered. `None` when it must go
    /// through the writer instead (another mode, an unhealthy log that
    /// must prove itself with an fsync, or a record that needs the live
    /// file rotated first); nothing is written then.
    pub(super) fn write_inline(
        &mut self,
        event: &EncodedEvent,
        detached: bool,
    ) -> Option<Result<u64, AuditError>> {
        if matches!(self.durability, Durability::Always) || !self.shared.healthy() {
            return None;
        }
        let sealed = seal_encoded(self.head.next_seq, &self.head.prev, &clock::now(), event);
        let used = self.segment.len();
        if used > 0 && used + sealed.line.len() as u64 > self.max_file_bytes {
            return None;
        }
        let seq = sealed.seq;
        let reply = if detached {
            Reply::Detached
        } else {
            Reply::Caller
        };
        let outcome = self.flush(vec![Staged { sealed, reply }], false);
        if outcome.is_ok() {
            self.shared.wrote_inline();
        }
        Some(outcome.map(|()| seq).map_err(AuditError::Unavailable))
    }

    /// Handles one batch.
    fn process(&mut self, batch: Vec<Request>) {
        let mut staged = VecDeque::with_capacity(batch.len());
        let mut syncs = Vec::new();
        let mut head = self.head.clone();
        let mut guards = false;
        // One timestamp per batch: its records are sealed within
        // microseconds of each other, and `ts` has millisecond precision.
        let ts = clock::now();
        for request in batch {
            match request {
                Request::Append {
                    event,
                    reply,
                    guards: g,
                } => {
                    guards |= g;
                    let sealed = seal_encoded(head.next_seq, &head.prev, &ts, &event);
                    head = Head {
                        next_seq: sealed.seq.saturating_add(1),
                        prev: sealed.hash.clone(),
                    };
                    let reply = reply.map_or(Reply::Detached, Reply::Waiter);
                    staged.push_back(Staged { sealed, reply });
                }
                Request::Sync { reply } => syncs.push(reply),
                Request::Nudge => {}
            }
        }
        // Interval mode proves recovery with an fsync before acknowledging;
        // Always fsyncs a batch that holds an open record (a batch of close
        // records only is synced with the next one, or by the period).
        let must_sync = match self.durability {
            Durability::Always => guards || !self.shared.healthy(),
            Durability::Interval(_) => !self.shared.healthy(),
            Durability::None => false,
        };
        self.write_staged(staged, must_sync);
        if syncs.is_empty() {
            return;
        }
        let result = self.sync_now();
        for reply in syncs {
            let _ = reply.send(result.clone());
        }
    }

    /// Writes staged records, rotating where a record would overflow the
    /// live file.
    fn write_staged(&mut self, mut queue: VecDeque<Staged>, must_sync: bool) {
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0u64;
        while let Some(next) = queue.pop_front() {
            let len = next.sealed.line.len() as u64;
            let used = self.segment.len() + chunk_bytes;
            if used > 0 && used + len > self.max_file_bytes {
                let outcome = self.flush(std::mem::take(&mut chunk), must_sync);
                chunk_bytes = 0;
                if let Err(message) = outcome.and_then(|()| self.rotate()) {
                    queue.push_front(next);
                    fail_all(queue, &message);
                    return;
                }
            }
            chunk_bytes += len;
            chunk.push(next);
        }
        let _ = self.flush(chunk, must_sync);
    }

    /// Writes one chunk (all in the same file), fsyncs if asked, commits and
    /// answers its waiters. On failure rolls back and answers them with the
    /// error, which it also returns.
    fn flush(&mut self, chunk: Vec<Staged>, must_sync: bool) -> Result<(), String> {
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        let new_head = Head {
            next_seq: last.sealed.seq.saturating_add(1),
            prev: last.sealed.hash.clone(),
        };
        let started = Instant::now();
        let outcome = match chunk.as_slice() {
            // One record (every record written on its appender's thread):
            // its line as it is, without a copy.
            [one] => self.segment.write(&one.sealed.line),
            _ => {
                let mut bytes = Vec::with_capacity(chunk.iter().map(|s| s.sealed.line.len()).sum());
                for s in &chunk {
                    bytes.extend_from_slice(&s.sealed.line);
                }
                self.segment.write(&bytes)
            }
        };
        let outcome = outcome.map_err(|e| format!("write failed: {e}"));
        let outcome = outcome.and_then(|()| {
            if must_sync {
                self.segment
                    .sync()
                    .map_err(|e| format!("fsync failed: {e}"))?;
                self.shared.synced();
            }
            Ok(())
        });
        // Written but not synced: the next fsync (or the period) makes it
        // durable; `None` never fsyncs.
        let unsynced = !must_sync && !matches!(self.durability, Durability::None);
        if let Err(message) = outcome {
            self.segment.rollback();
            self.shared.failed(&message);
            fail_all(chunk, &message);
            return Err(message);
        }
        self.segment.commit();
        if must_sync {
            self.dirty_since = None;
        } else if unsynced && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.head = new_head;
        self.shared.written(chunk.len() as u64);
        self.shared
            .set_head(self.head.next_seq.saturating_sub(1), &self.head.prev);
        if let Some(m) = self.shared.metrics.get() {
            m.audit_flush.observe(started.elapsed().as_secs_f64());
            m.audit_batch.observe(chunk.len() as f64);
        }
        for s in chunk {
            let seq = s.sealed.seq;
            s.answer(Ok(seq));
        }
        Ok(())
    }

    /// Starts a new live file, first fsyncing what the old one holds
    /// unsynced (nothing would sync it once it is closed); failures are
    /// reported like write failures.
    fn rotate(&mut self) -> Result<(), String> {
        if self.dirty_since.is_some() {
            self.sync_now().map_err(|e| e.to_string())?;
        }
        self.segment.rotate().map_err(|e| {
            let message = format!("rotation failed: {e}");
            self.shared.failed(&message);
            message
        })
    }

    /// The background fsync of `Interval` mode and of `Always`'s close
    /// records; a failure leaves the log dirty, so it is retried a period
    /// later.
    fn periodic_sync(&mut self) {
        if self.sync_now().is_err() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Fsyncs now; a failure marks the log unhealthy.
    fn sync_now(&mut self) -> Result<(), AuditError> {
        match self.segment.sync() {
            Ok(()) => {
                self.shared.synced();
                self.dirty_since = None;
                Ok(())
            }
            Err(e) => {
                let message = format!("fsync failed: {e}");
                self.shared.failed(&message);
                Err(AuditError::Unavailable(message))
            }
        }
    }
}

/// Answers every waiter in `staged` with `message`.
fn fail_all(staged: impl IntoIterator<Item = Staged>, message: &str) {
    for s in staged {
        s.answer(Err(AuditError::Unavailable(message.to_owned())));
    }
}
