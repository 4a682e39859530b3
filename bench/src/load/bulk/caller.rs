//! The callers of the `bulk` scenario: one large transfer in either
//! direction along a path, whatever the path is made of: HTTP/2 request
//! and response bodies for `direct`, `tunnel` and `egress`
//! ([`http`]), raw QUIC streams for `ceiling`
//! ([`quic`]). Every transfer counts the bytes it
//! moved and has the far side confirm the count, so a truncated transfer is
//! an error, never a fast result.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::deploy::deployment::Deployment;
use crate::load::bulk::http::HttpBulk;
use crate::load::bulk::quic;
use crate::load::bulk::transfer::{Direction, Transfer, CHUNK};
use crate::load::echo::{self, EchoMode, StreamEcho};
use crate::paths::Path;

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
            (BulkCaller::Quic(c), Direction::Upload) => quic::upload(c, bytes, moved).await,
            (BulkCaller::Quic(c), Direction::Download) => quic::download(c, bytes, moved).await,
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
/// [`echo::CONNECTIONS`] HTTP/2 connections (fewer when fewer streams),
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
            let (conn, echo) = echo::ceiling(deployment.ceiling()?, EchoMode::Bulk).await?;
            (vec![BulkCaller::Quic(conn)], Some(echo))
        } else {
            let endpoint = deployment.endpoint(path)?;
            let mut callers = Vec::new();
            for _ in 0..echo::CONNECTIONS.min(streams.max(1)) {
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
