//! What every bulk transfer shares, whatever carries it: the message
//! size and the one buffer messages are cut from, the direction, and the
//! verified result.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

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
