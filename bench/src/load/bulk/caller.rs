//! The callers of the `bulk` scenario: one large transfer in either
//! direction along a path, whatever the path is made of: HTTP/2 request
//! and response bodies for `direct`, `tunnel` and `egress`
//! ([`bulk_http`](crate::load::bulk::http)), raw QUIC streams for `ceiling`
//! ([`bulk_quic`](crate::load::bulk::quic)). Every transfer counts the bytes it
//! moved and has the far side confirm the count, so a truncated transfer is
//! an error, never a fast result.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;

use crate::deploy::deployment::Deployment;
use crate::load::bulk::http::HttpBulk;
use crate::paths::{self, EchoMode, Path, StreamEcho};

/// Bytes per message (an HTTP/2 body frame handed to hyper, a QUIC chunk
/// handed to quinn, the upstream's `GET /bytes` chunk): large enough that
/// per-message costs do not dominate, the size gRPC and HTTP stacks
/// commonly buffer in.
pub const CHUNK: usize = 64 * 1024;

/// The bytes every message is cut from: one shared buffer, so producing a
/// message is a reference-count increment, not a copy or an allocation.
pub fn chunk() -> Bytes {
    Bytes::from(vec![b'x'; CHUNK])
}

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The caller streams the bytes to the upstream, which answers with the
    /// count.
    Upload,
    /// The caller asks for the bytes and the upstream streams them.
    Download,
}

impl Direction {
    /// Both directions, upload first.
    pub const ALL: [Direction; 2] = [Direction::Upload, Direction::Download];

    /// The direction's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One finished, verified transfer.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    /// Payload bytes moved (and confirmed by the receiving side).
    pub bytes: u64,
    /// Time to first byte: from opening the request (or stream) until the
    /// receiver's first sign of the payload. Download: the first payload
    /// bytes arrive. Upload: the upstream's answer to the first payload
    /// bytes arrives (the HTTP response head, sent once the first body
    /// byte was read; the ceiling echo's one-byte acknowledgement). Both
    /// are one round trip plus whatever the path does to set up a stream.
    pub ttfb: Duration,
}

/// One caller along a path; clones share its connection.
#[derive(Clone, Debug)]
pub enum BulkCaller {
    /// An HTTP/2 connection to the example upstream's bulk endpoints.
    Http(HttpBulk),
    /// A QUIC connection to the ceiling's bulk echo.
    Quic(quinn::Connection),
}

impl BulkCaller {
    /// Moves `bytes` in `direction` on a stream of its own, adding every
    /// message to `moved` as it goes (the progress line reads it).
    pub async fn transfer(
        &self,
        direction: Direction,
        bytes: u64,
        moved: &Arc<AtomicU64>,
    ) -> anyhow::Result<Transfer> {
        match (self, direction) {
            (BulkCaller::Http(h), Direction::Upload) => h.upload(bytes, moved).await,
            (BulkCaller::Http(h), Direction::Download) => h.download(bytes, moved).await,
            (BulkCaller::Quic(c), Direction::Upload) => {
                crate::load::bulk::quic::upload(c, bytes, moved).await
            }
            (BulkCaller::Quic(c), Direction::Download) => {
                crate::load::bulk::quic::download(c, bytes, moved).await
            }
        }
    }
}

/// The callers of one path, and whatever must outlive them.
#[derive(Debug)]
pub struct BulkCallers {
    /// The callers; stream `i` of a measurement uses caller `i % len`.
    pub callers: Vec<BulkCaller>,
    /// The `ceiling` echo, stopped when the callers are dropped.
    _echo: Option<StreamEcho>,
}

/// Bytes of the warm-up transfers: one message each way, enough to open
/// the connection's streams and buffers before anything is measured.
const WARM_UP: u64 = CHUNK as u64;

/// Opens the callers of `path` for `streams` concurrent transfers, each
/// warmed by one small transfer each way: for the HTTP paths
/// [`paths::CONNECTIONS`] HTTP/2 connections (fewer when fewer streams),
/// streams spread over them as a client pool would; for `ceiling` one QUIC
/// connection carrying every stream, as the tunnel carries everything on
/// its one connection. `timeout` bounds the whole set-up.
pub async fn connect(
    deployment: &Deployment,
    path: Path,
    streams: usize,
    timeout: Duration,
) -> anyhow::Result<BulkCallers> {
    let connecting = async {
        let (callers, echo) = if path == Path::Ceiling {
            let (conn, echo) = paths::ceiling(deployment.ceiling()?, EchoMode::Bulk).await?;
            (vec![BulkCaller::Quic(conn)], Some(echo))
        } else {
            let endpoint = deployment.endpoint(path)?;
            let mut callers = Vec::new();
            for _ in 0..paths::CONNECTIONS.min(streams.max(1)) {
                let http = HttpBulk::connect(&endpoint)
                    .await
                    .with_context(|| format!("connecting the {path} path ({})", endpoint.addr))?;
                callers.push(BulkCaller::Http(http));
            }
            (callers, None)
        };
        let ignored = Arc::new(AtomicU64::new(0));
        for caller in &callers {
            for direction in Direction::ALL {
                caller
                    .transfer(direction, WARM_UP, &ignored)
                    .await
                    .with_context(|| format!("warm-up {direction} on the {path} path"))?;
            }
        }
        anyhow::Ok(BulkCallers {
            callers,
            _echo: echo,
        })
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .with_context(|| format!("connecting the {path} path took over {timeout:?}"))?
}
