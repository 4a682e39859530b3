//! Bulk transfers on raw QUIC streams: the `ceiling` of the `bulk`
//! scenario, both ends in bench on one quinn connection with Tether's TLS
//! and transport settings (see [`echo::ceiling`](crate::load::echo::ceiling)).
//! No HTTP, no frames of Tether's protocol: the most this QUIC stack
//! carries on one stream (or on N at once) on this machine.
//!
//! Each transfer is one bidirectional stream opened by a 9-byte request:
//! a command byte and a length N (u64, big-endian).
//!
//! - `U` (upload): the client sends N bytes and finishes; the echo answers
//!   one [`ACK`] byte once it has read the first payload byte (at once when
//!   N is 0: the time to first byte), then, at the end of the stream, the
//!   count it read (u64, big-endian) and finishes. A count other than N
//!   resets the stream instead.
//! - `D` (download): the client finishes after the request; the echo
//!   sends N bytes and finishes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;

use crate::load::bulk::transfer::{chunk, Transfer};

/// The upload command byte.
const UPLOAD: u8 = b'U';
/// The download command byte.
const DOWNLOAD: u8 = b'D';
/// The echo's acknowledgement of the first payload byte of an upload.
pub const ACK: u8 = 0x06;
/// The stream error code the echo resets with when a request is malformed
/// or an upload's length is not the announced one.
const REFUSED: u32 = 1;

fn request(command: u8, bytes: u64) -> [u8; 9] {
    let mut head = [command; 9];
    head[1..].copy_from_slice(&bytes.to_be_bytes());
    head
}

/// Sends `bytes` bytes on a new stream of `conn`; the echo's count must
/// equal them.
pub async fn upload(
    conn: &quinn::Connection,
    bytes: u64,
    moved: &AtomicU64,
) -> anyhow::Result<Transfer> {
    let started = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.context("opening a stream")?;
    let sending = async {
        send.write_all(&request(UPLOAD, bytes)).await?;
        write_payload(&mut send, bytes, Some(moved)).await?;
        send.finish()?;
        anyhow::Ok(())
    };
    let receiving = async {
        let mut ack = [0u8; 1];
        recv.read_exact(&mut ack)
            .await
            .context("the echo did not acknowledge the upload")?;
        anyhow::ensure!(ack[0] == ACK, "the echo answered {:#04x}, not ACK", ack[0]);
        let ttfb = started.elapsed();
        let mut count = [0u8; 8];
        recv.read_exact(&mut count)
            .await
            .context("upload cut short: the echo's count did not arrive")?;
        Ok((ttfb, u64::from_be_bytes(count)))
    };
    let ((), (ttfb, count)) = tokio::try_join!(sending, receiving)?;
    anyhow::ensure!(count == bytes, "the echo received {count} of {bytes} bytes");
    Ok(Transfer { bytes, ttfb })
}

/// Asks the echo for `bytes` bytes on a new stream of `conn` and reads
/// them, counting; any other length is an error.
pub async fn download(
    conn: &quinn::Connection,
    bytes: u64,
    moved: &AtomicU64,
) -> anyhow::Result<Transfer> {
    let started = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.context("opening a stream")?;
    send.write_all(&request(DOWNLOAD, bytes)).await?;
    send.finish()?;
    let (mut got, mut ttfb) = (0u64, None);
    loop {
        let next = recv
            .read_chunk(usize::MAX, true)
            .await
            .with_context(|| format!("download cut after {got} of {bytes} bytes"))?;
        let Some(c) = next else { break };
        if !c.bytes.is_empty() {
            ttfb.get_or_insert_with(|| started.elapsed());
            got += c.bytes.len() as u64;
            moved.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
        }
    }
    anyhow::ensure!(got == bytes, "download ended after {got} of {bytes} bytes");
    Ok(Transfer {
        bytes,
        ttfb: ttfb.unwrap_or_else(|| started.elapsed()),
    })
}

/// Writes `bytes` bytes as slices of one shared chunk (no copy per write).
async fn write_payload(
    send: &mut quinn::SendStream,
    bytes: u64,
    moved: Option<&AtomicU64>,
) -> anyhow::Result<()> {
    let chunk: Bytes = chunk();
    let mut left = bytes;
    while left > 0 {
        let take = left.min(chunk.len() as u64);
        // `take` ≤ the chunk's length, a usize.
        send.write_chunk(chunk.slice(..usize::try_from(take).unwrap_or(0)))
            .await?;
        if let Some(moved) = moved {
            moved.fetch_add(take, Ordering::Relaxed);
        }
        left -= take;
    }
    Ok(())
}

/// The echo's side of one stream: answers an upload or a download request
/// as the module describes; anything else, or an upload of the wrong
/// length, resets the stream.
pub async fn serve(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    if serve_request(&mut send, &mut recv).await.is_err() {
        let _ = send.reset(REFUSED.into());
        let _ = recv.stop(REFUSED.into());
    }
}

async fn serve_request(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> anyhow::Result<()> {
    let mut head = [0u8; 9];
    recv.read_exact(&mut head).await?;
    let mut length = [0u8; 8];
    length.copy_from_slice(&head[1..]);
    let bytes = u64::from_be_bytes(length);
    match head[0] {
        UPLOAD => {
            let mut got = 0u64;
            let mut acked = false;
            if bytes == 0 {
                send.write_all(&[ACK]).await?;
                acked = true;
            }
            while let Some(c) = recv.read_chunk(usize::MAX, true).await? {
                got += c.bytes.len() as u64;
                if !acked && got > 0 {
                    send.write_all(&[ACK]).await?;
                    acked = true;
                }
            }
            anyhow::ensure!(acked && got == bytes, "{got} of {bytes} bytes");
            send.write_all(&got.to_be_bytes()).await?;
        }
        DOWNLOAD => write_payload(send, bytes, None).await?,
        other => anyhow::bail!("unknown command {other:#04x}"),
    }
    send.finish()?;
    Ok(())
}
