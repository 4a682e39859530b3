//! Sends an HTTP body into a tunnel stream as DATA and TRAILERS frames.
//! Each write waits for QUIC flow control, and the next body frame is only
//! polled after the previous one was accepted, so a slow reader at the far
//! end slows the source here.

use super::observe::ForwardBody;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::Body;
use http_body_util::BodyExt;
use quinn::{SendStream, VarInt, WriteError};

use super::error::reset_code_for;
use crate::wire::{encode, encode_data_header, Frame, WireLimits};

/// A boxed error as hyper and http-body pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How sending a body ended; the caller decides what else to tear down.
#[derive(Debug)]
pub enum PumpOutcome {
    /// Every frame was sent and the stream finished.
    Done {
        /// Body bytes sent.
        bytes: u64,
    },
    /// The source body failed; the stream was reset with `code`.
    SourceFailed {
        /// Why the source failed.
        error: String,
        /// The code the stream was reset with.
        code: VarInt,
        /// Body bytes sent before the failure.
        bytes: u64,
    },
    /// The peer no longer reads (STOP_SENDING with `code`).
    PeerStopped {
        /// The peer's code.
        code: VarInt,
        /// Body bytes sent before the stop.
        bytes: u64,
    },
    /// The connection went away under the stream.
    ConnectionLost {
        /// Why, for logs.
        error: String,
        /// Body bytes sent before the loss.
        bytes: u64,
    },
}

enum SendFail {
    Stopped(VarInt),
    Lost(String),
}

impl From<WriteError> for SendFail {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stopped(code) => SendFail::Stopped(code),
            other => SendFail::Lost(other.to_string()),
        }
    }
}

/// Writes one frame.
pub async fn write_frame(
    send: &mut SendStream,
    frame: &Frame,
    limits: &WireLimits,
) -> Result<(), BoxError> {
    write_frames(send, std::slice::from_ref(frame), limits).await
}

/// Writes frames in one write (OPEN and AUDITED together).
pub async fn write_frames(
    send: &mut SendStream,
    frames: &[Frame],
    limits: &WireLimits,
) -> Result<(), BoxError> {
    let mut buf = BytesMut::new();
    for frame in frames {
        encode(frame, limits, &mut buf)?;
    }
    send.write_all(&buf).await?;
    Ok(())
}

/// What one body frame became on the wire.
enum Encoded {
    /// DATA frames carrying this many body bytes.
    Data(u64),
    /// A TRAILERS frame: the body ends here.
    Trailers,
    /// Nothing: a frame kind the protocol does not carry.
    Nothing,
}

/// Appends the wire form of one body frame to `out`: DATA frames of at
/// most `max_data_frame` whose payloads are slices of the frame's bytes
/// (uncopied), or one TRAILERS frame. `Err` says why it cannot be carried
/// (trailers over `max_header_bytes`). Shared by [`send_head`] and
/// [`pump_body`], so both put a body on the wire the same way.
fn encode_body_frame(
    frame: http_body::Frame<Bytes>,
    limits: &WireLimits,
    out: &mut Vec<Bytes>,
) -> Result<Encoded, String> {
    match frame.into_data() {
        Ok(mut data) => {
            let n = data.len() as u64;
            while !data.is_empty() {
                let piece = data.split_to(data.len().min(limits.max_data_frame));
                let mut header = BytesMut::with_capacity(9);
                encode_data_header(piece.len(), limits, &mut header)
                    .map_err(|e| format!("cannot frame body data: {e}"))?;
                out.push(header.freeze());
                out.push(piece);
            }
            Ok(Encoded::Data(n))
        }
        Err(frame) => match frame.into_trailers() {
            Ok(trailers) => {
                let mut buf = BytesMut::new();
                encode(&Frame::Trailers(trailers), limits, &mut buf)
                    .map_err(|e| format!("trailers too large to forward: {e}"))?;
                out.push(buf.freeze());
                Ok(Encoded::Trailers)
            }
            Err(_) => Ok(Encoded::Nothing),
        },
    }
}

/// Most body bytes [`send_head`] takes along with the head: enough for any
/// unary call, small enough that the head is not held back behind a bulk
/// body (the rest is pumped with flow control as usual).
const READY_BODY_BYTES: usize = 64 * 1024;

/// How [`send_head`] left the stream.
#[derive(Debug)]
pub enum Started {
    /// The body ended within what was ready: the stream is finished (or
    /// reset, if the body failed) and nothing is left to pump.
    Done(PumpOutcome),
    /// The whole body went out with the head and the stream is finished;
    /// the peer has not necessarily acknowledged it yet (wait with
    /// [`SendGuard::acked`] where that matters).
    Finished {
        /// Body bytes sent.
        bytes: u64,
    },
    /// The head and the ready part of the body went out; pump the rest
    /// with [`pump_body`].
    Pump,
}

/// Sends the head frames together with whatever body frames are ready
/// without waiting (up to `READY_BODY_BYTES`, 64 KiB), in one write, and
/// finishes the stream when the body ended among them. A unary call then
/// costs one write per direction instead of one per frame, and needs no
/// task to pump its body. `Err` means the head could not be sent (the
/// body frames taken with it are lost with it: the stream is dead).
pub async fn send_head<B>(
    guard: &mut SendGuard,
    heads: &[Frame],
    body: &mut B,
    limits: &WireLimits,
    source_failed: VarInt,
) -> Result<Started, BoxError>
where
    B: ForwardBody,
    B::Error: Into<BoxError>,
{
    let mut head_buf = BytesMut::new();
    for head in heads {
        encode(head, limits, &mut head_buf)?;
    }
    let mut chunks = vec![head_buf.freeze()];
    let mut bytes = 0u64;
    let mut ended = body.is_end_stream();
    let mut failed = None;
    while !ended && (bytes as usize) < READY_BODY_BYTES {
        let Some(next) = body.frame().now_or_never() else {
            break;
        };
        match next {
            None => ended = true,
            Some(Err(e)) => {
                let e: BoxError = e.into();
                failed = Some((e.to_string(), reset_code_for(e.as_ref(), source_failed)));
                break;
            }
            Some(Ok(frame)) => match encode_body_frame(frame, limits, &mut chunks) {
                Ok(Encoded::Data(n)) => {
                    bytes += n;
                    ended = body.is_end_stream();
                }
                Ok(Encoded::Trailers) => ended = true,
                Ok(Encoded::Nothing) => {}
                Err(error) => {
                    failed = Some((error, crate::wire::codes::stream::INTERNAL));
                    break;
                }
            },
        }
    }
    guard.send.write_all_chunks(&mut chunks).await?;
    if let Some((error, code)) = failed {
        guard.reset(code);
        return Ok(Started::Done(PumpOutcome::SourceFailed {
            error,
            code,
            bytes,
        }));
    }
    if !ended {
        return Ok(Started::Pump);
    }
    if let Err(e) = guard.finish() {
        let error = e.to_string();
        return Ok(Started::Done(PumpOutcome::ConnectionLost { error, bytes }));
    }
    Ok(Started::Finished { bytes })
}

/// Owns a send stream and resets it if dropped before it was finished.
/// quinn *finishes* a dropped stream, which would turn a cancelled or
/// failed body into a silently truncated one; this makes that impossible.
pub struct SendGuard {
    send: SendStream,
    armed: bool,
}

impl SendGuard {
    /// Guards `send` until [`SendGuard::finish`] or an explicit reset.
    pub fn new(send: SendStream) -> Self {
        Self { send, armed: true }
    }

    /// The stream, for writing.
    pub fn stream(&mut self) -> &mut SendStream {
        &mut self.send
    }

    /// Ends the stream cleanly.
    pub fn finish(&mut self) -> Result<(), quinn::ClosedStream> {
        self.armed = false;
        self.send.finish()
    }

    /// Ends the stream cleanly and waits until the peer has acknowledged
    /// every byte of it. Until then the data is only in quinn's buffers,
    /// and closing the connection (the last step of a shutdown, once no
    /// call is in flight) would discard it: a call is over when the peer
    /// has all of it, not when it was written. Costs the call's task one
    /// acknowledgement delay, not the caller.
    pub async fn finish_acked(&mut self) -> Result<(), String> {
        self.finish().map_err(|e| e.to_string())?;
        self.acked().await
    }

    /// Waits until the peer has acknowledged every byte of a finished
    /// stream (see [`SendGuard::finish_acked`]).
    pub async fn acked(&mut self) -> Result<(), String> {
        match self.send.stopped().await {
            // Acknowledged, or stopped by the peer after it had the FIN:
            // nothing of ours is lost either way.
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Ends the stream with an error code.
    pub fn reset(&mut self, code: VarInt) {
        self.armed = false;
        let _ = self.send.reset(code);
    }
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.send.reset(crate::wire::codes::stream::CANCELLED);
        }
    }
}

/// Sends `body` as DATA/TRAILERS frames then FIN. On a source error the
/// stream is reset with a code that tells the far end why: the HTTP/2 reason
/// in the error if it has one, else `source_failed` — `CANCELLED` when the
/// body is a caller's, `UPSTREAM_RESET` when it is a service's (see
/// [`reset_code_for`]). If this future is dropped midway, the stream is
/// reset as cancelled.
pub async fn pump_body<B>(
    mut body: B,
    guard: &mut SendGuard,
    limits: &WireLimits,
    source_failed: VarInt,
) -> PumpOutcome
where
    B: ForwardBody,
    B::Error: Into<BoxError>,
{
    let mut bytes = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            frame = body.frame() => frame,
            stopped = guard.send.stopped() => {
                let code = stopped.ok().flatten().unwrap_or(VarInt::from_u32(0));
                guard.reset(code);
                return PumpOutcome::PeerStopped { code, bytes };
            }
        };
        let result = match next {
            None => {
                return match guard.finish_acked().await {
                    Ok(()) => PumpOutcome::Done { bytes },
                    Err(error) => PumpOutcome::ConnectionLost { error, bytes },
                };
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                let code = reset_code_for(e.as_ref(), source_failed);
                guard.reset(code);
                return PumpOutcome::SourceFailed {
                    error: e.to_string(),
                    code,
                    bytes,
                };
            }
            Some(Ok(frame)) => {
                let mut chunks = Vec::with_capacity(2);
                match encode_body_frame(frame, limits, &mut chunks) {
                    Ok(encoded) => {
                        if let Encoded::Data(n) = encoded {
                            bytes += n;
                        }
                        guard
                            .send
                            .write_all_chunks(&mut chunks)
                            .await
                            .map_err(SendFail::from)
                    }
                    Err(error) => {
                        let code = crate::wire::codes::stream::INTERNAL;
                        guard.reset(code);
                        return PumpOutcome::SourceFailed { error, code, bytes };
                    }
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(SendFail::Stopped(code)) => {
                guard.reset(code);
                return PumpOutcome::PeerStopped { code, bytes };
            }
            Err(SendFail::Lost(error)) => {
                guard.armed = false;
                return PumpOutcome::ConnectionLost { error, bytes };
            }
        }
    }
}
