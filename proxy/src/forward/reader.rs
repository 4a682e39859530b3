//! Reads frames from a QUIC receive stream with bounded buffering: never
//! more than one maximal non-DATA frame plus one read chunk is held, and
//! DATA payloads are handed on as slices of quinn's chunks, uncopied (see
//! [`FrameAssembler`]); a DATA frame may so arrive as several `Data`
//! pieces.

use futures_util::FutureExt;
use quinn::{ReadError, RecvStream, VarInt};

use super::error::StreamError;
use crate::wire::{Frame, FrameAssembler, WireLimits};

/// Bytes asked of quinn per read: an upper bound only, as quinn hands out
/// what one received STREAM frame carried.
const READ_CHUNK: usize = 64 * 1024;

/// Turns a `RecvStream` into a sequence of frames.
pub struct FrameReader {
    recv: RecvStream,
    frames: FrameAssembler,
    fin: bool,
    deferred: Option<StreamError>,
}

impl FrameReader {
    /// Wraps a receive stream; `limits` are the ones this side enforces.
    pub fn new(recv: RecvStream, limits: WireLimits) -> Self {
        Self {
            recv,
            frames: FrameAssembler::new(limits),
            fin: false,
            deferred: None,
        }
    }

    /// The next frame, or `None` when the peer finished the stream cleanly
    /// on a frame boundary. Cancel-safe: bytes read stay buffered.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        if let Some(err) = self.deferred.take() {
            return Err(err);
        }
        loop {
            if let Some(frame) = self.frames.next_frame()? {
                return Ok(Some(frame));
            }
            if self.fin {
                return if self.frames.at_boundary() {
                    Ok(None)
                } else {
                    Err(StreamError::Truncated("stream finished inside a frame"))
                };
            }
            let read = self.recv.read_chunk(READ_CHUNK, true).await;
            self.absorb(read)?;
        }
    }

    fn absorb(&mut self, read: Result<Option<quinn::Chunk>, ReadError>) -> Result<(), StreamError> {
        match read {
            Ok(Some(chunk)) => self.frames.push(chunk.bytes),
            Ok(None) => self.fin = true,
            Err(ReadError::Reset(code)) => return Err(StreamError::reset(code)),
            Err(e) => return Err(StreamError::ConnectionLost(e.to_string())),
        }
        Ok(())
    }

    /// The next frame if it can be had without waiting: `None` when that
    /// would need bytes not yet received. Lets a body join the DATA pieces
    /// that arrived together instead of passing each QUIC packet's worth on
    /// as its own write.
    pub fn next_ready(&mut self) -> Option<Result<Option<Frame>, StreamError>> {
        if let Some(err) = self.deferred.take() {
            return Some(Err(err));
        }
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => return Some(Ok(Some(frame))),
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            if self.fin {
                return Some(if self.frames.at_boundary() {
                    Ok(None)
                } else {
                    Err(StreamError::Truncated("stream finished inside a frame"))
                });
            }
            let read = self.recv.read_chunk(READ_CHUNK, true).now_or_never()?;
            if let Err(e) = self.absorb(read) {
                return Some(Err(e));
            }
        }
    }

    /// Takes in whatever has already arrived without waiting, so a stream
    /// whose FIN came with its head is seen as bodiless. That lets the far
    /// side send HEADERS with END_STREAM (gRPC trailers-only, GET without
    /// body) exactly as the original peer did.
    pub fn poll_arrived(&mut self) {
        while !self.fin && self.deferred.is_none() {
            match self.recv.read_chunk(READ_CHUNK, true).now_or_never() {
                Some(read) => {
                    if let Err(e) = self.absorb(read) {
                        self.deferred = Some(e);
                    }
                }
                None => break,
            }
        }
    }

    /// True when nothing but FIN follows what was consumed so far.
    pub fn at_clean_end(&self) -> bool {
        self.fin && self.frames.at_boundary() && self.deferred.is_none()
    }

    /// Tells the peer to stop sending; used when the reader gives up early.
    pub fn stop(&mut self, code: VarInt) {
        // Already finished or reset: nothing to stop, and that is fine.
        let _ = self.recv.stop(code);
    }
}
