//! The Tether wire protocol, sans IO: frame types, their byte encoding, and
//! the QUIC error codes. `docs/protocol.md` is the full specification.
//!
//! A Tether connection is a QUIC connection negotiated with ALPN
//! [`ALPN`] (`tether/1`). Everything on it is a sequence of frames, each
//! `type (1 byte) | length (QUIC varint) | payload (length bytes)`, with
//! integers in payloads as QUIC varints and strings as a varint byte length
//! followed by UTF-8.
//!
//! - **Control stream**: the first bidirectional stream the client opens.
//!   The client sends HELLO (version, services, labels); the edge answers
//!   WELCOME (edge id, limits) or ERROR (code, message) and closes. A
//!   process that starts to drain sends GOAWAY on it (the edge's clients
//!   dial a replacement; the edge routes new calls to the tunnel's other
//!   connections), refuses new streams with REFUSE `Draining`, and once its
//!   calls are done closes with [`codes::conn::GOING_AWAY`].
//! - **Data streams**: one call each, opened by whichever side initiates the
//!   call (ingress calls: the edge). The opener sends OPEN; the acceptor
//!   answers RESPONSE or REFUSE. Then each direction carries DATA frames,
//!   optionally one TRAILERS frame, and ends with the stream's FIN.
//!   Cancellation is RESET_STREAM / STOP_SENDING with a [`codes::stream`]
//!   code.
//!
//! Every length is bounded by [`WireLimits`] and checked as soon as a frame
//! header is readable. [`FrameDecoder::decode`] turns a buffer into frames
//! (`Ok(None)` = need more bytes, nothing consumed); [`encode`] and
//! [`encode_data_header`] go the other way and refuse what the peer would
//! reject.

mod assembler;
pub mod codes;
mod decode;
mod encode;
mod error;
mod frame;
mod kinds;
mod limits;
pub mod varint;

#[cfg(test)]
mod tests;

pub use assembler::FrameAssembler;
pub use decode::{FrameDecoder, FrameHeader};
pub use encode::{encode, encode_data_header};
pub use error::WireError;
pub use frame::{
    ControlError, Frame, FrameType, GoAway, Hello, Open, PeerLimits, Refuse, RefuseCode, Response,
    ServiceOffer, StreamKind, Welcome, VERSION,
};
pub use limits::WireLimits;
pub use varint::VarintOverflow;

/// ALPN protocol id of Tether over QUIC; both ends offer only this.
pub const ALPN: &[u8] = b"tether/1";
