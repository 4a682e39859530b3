//! One emulated tunnel of `bench tunnels`, registering as the real tunnel
//! client does (`tunnel_client::dial::connect_once`): a QUIC handshake
//! with mutual TLS under its own identity and ALPN `tether/1`, HELLO on
//! the first bidirectional stream it opens, then WELCOME read back, both
//! through `proxy::wire` (encoded by [`wire::encode`], read by the
//! client's own [`FrameReader`]). It then holds the connection and both
//! halves of the control stream and does nothing: quinn's keepalives, as
//! `Limits::default()` sets them, are all that flows, as for an idle
//! registered client.
//!
//! The ceiling's variant ([`Goal::Handshake`]) stops once the QUIC
//! handshake completes.

use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::BytesMut;
use proxy::forward::FrameReader;
use proxy::wire::{self, Frame, Hello, ServiceOffer};
use proxy::Limits;

/// How far an emulated tunnel goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Handshake, HELLO, WELCOME: a registered tunnel (against the edge).
    Register,
    /// The QUIC and TLS handshake only (against the ceiling's bare
    /// endpoint, which speaks no Tether).
    Handshake,
}

/// A connected emulated tunnel. Dropping it closes its connection (quinn
/// closes a connection when its last handle goes).
pub struct Held {
    conn: quinn::Connection,
    /// The control stream, kept open for the connection's life as the real
    /// client keeps it (its send half is where a GOAWAY would go).
    _control: Option<(quinn::SendStream, FrameReader)>,
}

impl Held {
    /// Closes the connection now, with the code a stopping client uses.
    pub fn close(&self) {
        self.conn
            .close(wire::codes::conn::GOING_AWAY, b"bench tunnels done");
    }
}

/// Dials `addr` (verifying the edge as `server_name`) from `endpoint` with
/// `cfg` and goes as far as `goal`; errors say which step failed.
pub async fn dial(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    goal: Goal,
) -> anyhow::Result<Held> {
    let conn = endpoint
        .connect_with(cfg, addr, server_name)
        .context("connect")?
        .await
        .context("handshake")?;
    if goal == Goal::Handshake {
        return Ok(Held {
            conn,
            _control: None,
        });
    }
    let control = register(&conn).await?;
    Ok(Held {
        conn,
        _control: Some(control),
    })
}

/// HELLO with one service and one label, as a small real client sends;
/// the WELCOME it gets back.
async fn register(conn: &quinn::Connection) -> anyhow::Result<(quinn::SendStream, FrameReader)> {
    let limits = Limits::default().wire;
    let (mut send, recv) = conn.open_bi().await.context("opening the control stream")?;
    let hello = Frame::Hello(Hello {
        version: wire::VERSION,
        services: vec![ServiceOffer {
            name: "echo".to_string(),
        }],
        labels: vec![("bench".to_string(), "tunnels".to_string())],
    });
    let mut buf = BytesMut::new();
    wire::encode(&hello, &limits, &mut buf).context("encoding HELLO")?;
    send.write_all(&buf).await.context("sending HELLO")?;
    let mut reader = FrameReader::new(recv, limits);
    match reader.next().await {
        Ok(Some(Frame::Welcome(w))) if w.version == wire::VERSION => Ok((send, reader)),
        Ok(Some(Frame::Welcome(w))) => anyhow::bail!("WELCOME of version {}", w.version),
        Ok(Some(Frame::Error(e))) => anyhow::bail!("refused: {}", e.message),
        Ok(Some(other)) => anyhow::bail!("expected WELCOME, got {}", other.frame_type()),
        Ok(None) => anyhow::bail!("the edge closed the control stream"),
        Err(e) => Err(match conn.close_reason() {
            Some(reason) => anyhow::anyhow!("closed by the edge: {reason}"),
            None => anyhow::anyhow!("reading WELCOME: {e}"),
        }),
    }
}
