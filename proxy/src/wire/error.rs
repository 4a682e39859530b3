//! Errors from encoding and decoding frames.

use super::frame::FrameType;
use super::varint::VarintOverflow;

/// Why a frame could not be encoded or decoded.
///
/// On decode, every variant is a protocol violation by the peer: reset the
/// data stream with `codes::stream::PROTOCOL`, or close the connection with
/// `codes::conn::PROTOCOL` when it happened on the control stream. On encode,
/// nothing was written and the frame must not be sent as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first byte of a frame is not a known frame type.
    #[error("unknown frame type 0x{0:02x}: the peer is not speaking tether/1")]
    UnknownFrameType(u8),
    /// A frame's payload is larger than the limit for its type.
    #[error(
        "{frame} frame payload of {len} bytes exceeds the {limit}-byte limit \
         (max_header_bytes for heads, max_data_frame for DATA)"
    )]
    FrameTooLarge {
        /// The frame's type.
        frame: FrameType,
        /// The payload length, as announced (decode) or computed (encode).
        len: u64,
        /// The limit that applies to this frame type.
        limit: usize,
    },
    /// A header map has more fields than `max_headers`.
    #[error("{frame} frame carries {count} header fields, more than the limit of {limit}")]
    TooManyHeaders {
        /// The frame's type.
        frame: FrameType,
        /// The field count, as announced (decode) or present (encode).
        count: u64,
        /// The `max_headers` limit.
        limit: usize,
    },
    /// A header name or value is not acceptable.
    #[error("invalid header in {frame} frame: {reason}")]
    InvalidHeader {
        /// The frame's type.
        frame: FrameType,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A payload field is truncated, out of range or not valid for its type,
    /// or bytes are left over after the last field.
    #[error("malformed {frame} frame: {field}: {reason}")]
    Malformed {
        /// The frame's type.
        frame: FrameType,
        /// Which field (or `"payload"`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value to encode does not fit a QUIC varint.
    #[error(transparent)]
    VarintOverflow(#[from] VarintOverflow),
}

impl WireError {
    /// The type of the frame the error is about, when known.
    pub fn frame_type(&self) -> Option<FrameType> {
        match self {
            Self::FrameTooLarge { frame, .. }
            | Self::TooManyHeaders { frame, .. }
            | Self::InvalidHeader { frame, .. }
            | Self::Malformed { frame, .. } => Some(*frame),
            Self::UnknownFrameType(_) | Self::VarintOverflow(_) => None,
        }
    }
}
