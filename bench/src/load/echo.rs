//! The callers of the small-call scenarios (`unary`, `rate`, `audit`,
//! `fairness`, the light load of `tunnels`) for each [`Path`], and the
//! `ceiling`'s bare QUIC echo, which the `bulk` callers use too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use proxy::identity::IdentityRule;
use proxy::tls::{client_config, server_config};
use proxy::wire::ALPN;
use proxy::Limits;
use tether_tests::pb::echo_client::EchoClient;
use tether_tests::pb::EchoRequest;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::deploy::deployment::Deployment;
use crate::load::bulk::quic;
use crate::paths::{grpc, CeilingKeys, Path};

/// HTTP/2 connections per path, as a real client pool would use: enough
/// to spread the calls over more than one connection task, few enough that
/// connection setup is not what is measured.
pub const CONNECTIONS: usize = 4;

/// The most bytes a ceiling call reads back; replies are as long as the
/// request, so this only bounds a misbehaving echo.
const CEILING_REPLY_LIMIT: usize = 16 * 1024 * 1024;

/// One caller along a path; cloning shares its connection.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A gRPC Echo client (`direct`, `tunnel`, `egress`).
    Grpc(EchoClient<Channel>),
    /// A QUIC connection to the stream echo (`ceiling`).
    Quic(quinn::Connection),
}

impl Caller {
    /// One call carrying `payload`, answered in full.
    pub async fn call(&mut self, payload: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Caller::Grpc(client) => {
                client
                    .unary(EchoRequest {
                        payload,
                        ..Default::default()
                    })
                    .await?;
            }
            Caller::Quic(conn) => {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(&payload).await?;
                send.finish()?;
                let reply = recv.read_to_end(CEILING_REPLY_LIMIT).await?;
                anyhow::ensure!(
                    reply.len() == payload.len(),
                    "echo returned {} of {} bytes",
                    reply.len(),
                    payload.len()
                );
            }
        }
        Ok(())
    }
}

/// The callers of one path, and whatever must outlive them.
#[derive(Debug)]
pub struct Callers {
    /// The callers; workers take them in turn.
    pub callers: Vec<Caller>,
    /// The `ceiling` echo, stopped when the callers are dropped.
    _echo: Option<StreamEcho>,
}

impl std::ops::Deref for Callers {
    type Target = [Caller];

    fn deref(&self) -> &[Caller] {
        &self.callers
    }
}

/// A bare QUIC endpoint answering every bidirectional stream (as its
/// [`EchoMode`] says), and the client endpoint connected to it; dropping it
/// closes both and stops the echo.
#[derive(Debug)]
pub struct StreamEcho {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    task: JoinHandle<()>,
}

impl Drop for StreamEcho {
    fn drop(&mut self) {
        self.client.close(0u32.into(), b"done");
        self.server.close(0u32.into(), b"done");
        self.task.abort();
    }
}

/// What the `ceiling` echo does with each stream: the scenarios differ in
/// what a call is, so each starts an echo of its own kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoMode {
    /// Reads the stream to its end and writes the bytes back (`unary`,
    /// `rate`: one small call per stream).
    Echo,
    /// Answers the upload and download requests of the `bulk` scenario
    /// ([`bulk::quic`](crate::load::bulk::quic)): gigabytes per stream, counted,
    /// never held in memory.
    Bulk,
}

/// Starts the `ceiling` echo on loopback and connects one QUIC connection
/// to it, both ends configured as Tether's: the server presents the
/// deployment's edge certificate and admits only `tunnel` identities, the
/// client presents a tunnel certificate and admits only `edge`
/// identities, ALPN [`ALPN`], transport from [`Limits::default`].
pub async fn ceiling(
    keys: CeilingKeys,
    mode: EchoMode,
) -> anyhow::Result<(quinn::Connection, StreamEcho)> {
    let limits = Limits::default();
    let rule = |kind| IdentityRule {
        trust_domain: keys.trust_domain.clone(),
        kind: Some(kind),
    };
    let tls = server_config(&keys.edge, keys.roots.clone(), rule("tunnel"), &[ALPN])?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
    ));
    server_cfg.transport_config(limits.transport_config());
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let buffers = limits.udp_buffer_bytes as usize;
    let server =
        proxy::udp::endpoint(loopback, buffers, Some(server_cfg)).context("binding the echo")?;
    let addr = server.local_addr()?;

    let tls = client_config(&keys.tunnel, keys.roots, rule("edge"), &[ALPN])?;
    let mut client_cfg = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    client_cfg.transport_config(limits.transport_config());
    let client = proxy::udp::endpoint(loopback, buffers, None).context("binding the client")?;

    // Aborted when the echo is dropped; each connection and stream task
    // ends with its connection.
    let task = tokio::spawn(accept_loop(server.clone(), mode));
    let echo = StreamEcho {
        server,
        client: client.clone(),
        task,
    };
    let conn = client
        .connect_with(client_cfg, addr, "localhost")?
        .await
        .context("QUIC handshake with the echo")?;
    Ok((conn, echo))
}

async fn accept_loop(server: quinn::Endpoint, mode: EchoMode) {
    while let Some(incoming) = server.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                match mode {
                    EchoMode::Echo => tokio::spawn(echo_stream(send, recv)),
                    EchoMode::Bulk => tokio::spawn(quic::serve(send, recv)),
                };
            }
        });
    }
}

/// Reads the stream to its end, writes the bytes back and finishes.
async fn echo_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    if let Ok(data) = recv.read_to_end(CEILING_REPLY_LIMIT).await {
        if send.write_all(&data).await.is_ok() {
            let _ = send.finish();
        }
    }
}

/// Opens the callers of `path`, each warmed by one call so that connection
/// setup and first-use allocation fall outside the measurement: for the
/// gRPC paths [`CONNECTIONS`] Echo clients (fewer when `concurrency` is
/// lower), for `ceiling` one QUIC connection shared by every worker, as
/// the tunnel shares its one connection.
pub async fn connect(
    deployment: &Deployment,
    path: Path,
    concurrency: usize,
) -> anyhow::Result<Callers> {
    if path == Path::Ceiling {
        let (conn, echo) = ceiling(deployment.ceiling()?, EchoMode::Echo).await?;
        let mut caller = Caller::Quic(conn);
        caller
            .call(Vec::new())
            .await
            .context("warm-up call on the ceiling path")?;
        return Ok(Callers {
            callers: vec![caller],
            _echo: Some(echo),
        });
    }
    let endpoint = deployment.endpoint(path)?;
    let mut callers = Vec::new();
    for _ in 0..CONNECTIONS.min(concurrency.max(1)) {
        let mut client = grpc(&endpoint)
            .await
            .with_context(|| format!("connecting the {path} path ({})", endpoint.addr))?;
        client
            .unary(EchoRequest::default())
            .await
            .with_context(|| format!("warm-up call on the {path} path"))?;
        callers.push(Caller::Grpc(client));
    }
    Ok(Callers {
        callers,
        _echo: None,
    })
}
