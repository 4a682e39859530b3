//! Raw TCP over a tunnel stream: bytes become DATA frames, a half-close
//! (FIN) one way is the stream's FIN that way and does not cut the other,
//! and a reset either way resets the other end too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{FrameReader, SendGuard, StreamError};
use crate::admission::Admitted;
use crate::wire::{codes, encode_data_header, Frame, WireLimits};

/// Both halves of a tunnel stream confirmed for raw TCP (a RESPONSE went
/// one way). Made only by the forwarding code, for an admitted stream.
pub struct TunnelStream {
    pub(crate) reader: FrameReader,
    pub(crate) send: SendGuard,
}

/// Which side of the call the bridged socket is, so byte counts land in
/// the right field of the close record (`bytes_in` is always what the
/// caller sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// The caller's connection (the opening end).
    Caller,
    /// The service's connection (the accepting end).
    Service,
}

/// How a bridged connection ended.
#[derive(Debug, Default)]
pub struct TcpOutcome {
    /// The far end reset the stream (or broke the protocol): the local
    /// socket should be reset too, not closed gracefully.
    pub reset_local: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Bytes read from the socket per DATA frame at most.
const READ_CHUNK: usize = 64 * 1024;

async fn socket_to_stream<R: AsyncRead + Unpin>(
    mut rd: R,
    send: &mut SendGuard,
    limits: &WireLimits,
    count: &AtomicU64,
) -> Result<(), String> {
    loop {
        let mut buf = BytesMut::with_capacity(READ_CHUNK.min(limits.max_data_frame));
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                // Half-close: our side is done sending; the other way goes on.
                return send
                    .finish_acked()
                    .await
                    .map_err(|e| format!("tunnel stream: {e}"));
            }
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                let mut head = BytesMut::with_capacity(9);
                encode_data_header(n, limits, &mut head).map_err(|e| e.to_string())?;
                let mut chunks = [head.freeze(), buf.freeze()];
                if let Err(e) = send.stream().write_all_chunks(&mut chunks).await {
                    return Err(format!("tunnel stream: {e}"));
                }
            }
            Err(e) => {
                send.reset(codes::stream::UPSTREAM_RESET);
                return Err(format!("socket: {e}"));
            }
        }
    }
}

async fn stream_to_socket<W: AsyncWrite + Unpin>(
    reader: &mut FrameReader,
    mut wr: W,
    count: &AtomicU64,
) -> Result<(), (String, bool)> {
    loop {
        match reader.next().await {
            Ok(Some(Frame::Data(data))) => {
                count.fetch_add(data.len() as u64, Ordering::Relaxed);
                wr.write_all(&data)
                    .await
                    .map_err(|e| (format!("socket: {e}"), false))?;
            }
            Ok(Some(other)) => {
                reader.stop(codes::stream::PROTOCOL);
                return Err((
                    format!("unexpected {} frame on a TCP stream", other.frame_type()),
                    true,
                ));
            }
            Ok(None) => {
                // The far end half-closed: pass the FIN on.
                let _ = wr.shutdown().await;
                return Ok(());
            }
            Err(e @ StreamError::Reset { .. }) => return Err((e.to_string(), true)),
            Err(e) => {
                reader.stop(e.code_for_peer());
                return Err((e.to_string(), true));
            }
        }
    }
}

/// Moves bytes both ways between `io` and a tunnel stream until both
/// directions have ended (each by FIN) or either fails. A failure resets the
/// tunnel stream; `reset_local` tells the caller to reset the socket. Bytes
/// are counted into `admitted`'s close record.
pub async fn bridge<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    stream: TunnelStream,
    limits: &WireLimits,
    admitted: &mut Admitted,
    socket: Socket,
) -> TcpOutcome {
    let TunnelStream {
        mut reader,
        mut send,
    } = stream;
    let send = &mut send;
    let (to_stream, from_stream) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (inbound, outbound) = match socket {
        Socket::Caller => (to_stream.clone(), from_stream.clone()),
        Socket::Service => (from_stream.clone(), to_stream.clone()),
    };
    admitted.count_in(inbound);
    admitted.count_out(outbound);
    let (rd, wr) = tokio::io::split(io);
    // The first failure, if any, and which way it happened.
    let failure = {
        let up = socket_to_stream(rd, send, limits, &to_stream);
        let down = stream_to_socket(&mut reader, wr, &from_stream);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        let mut failure = None;
        while failure.is_none() && !(up_done && down_done) {
            tokio::select! {
                r = &mut up, if !up_done => {
                    up_done = true;
                    if let Err(error) = r {
                        failure = Some((error, true, true));
                    }
                }
                r = &mut down, if !down_done => {
                    down_done = true;
                    if let Err((error, reset_local)) = r {
                        failure = Some((error, reset_local, false));
                    }
                }
            }
        }
        failure
    };
    match failure {
        None => TcpOutcome::default(),
        Some((error, reset_local, socket_side)) => {
            // Tear down the other direction too: a reset is the whole connection.
            if socket_side {
                reader.stop(codes::stream::CANCELLED);
            } else {
                send.reset(codes::stream::CANCELLED);
            }
            TcpOutcome {
                reset_local,
                error: Some(error),
            }
        }
    }
}
