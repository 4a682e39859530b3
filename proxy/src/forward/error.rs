//! How a tunnel stream can fail, and how each failure maps onto HTTP/2
//! reset reasons so callers see the same cancellation semantics as without
//! a tunnel.

use std::error::Error as StdError;

use quinn::VarInt;

use crate::wire::codes::stream as codes;
use crate::wire::WireError;

/// A failure while reading or writing a tunnel stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer reset the stream; `reason` is the HTTP/2 equivalent and is
    /// found by hyper in the error chain to reset the caller the same way.
    #[error("tunnel stream reset by peer (code {code})")]
    Reset {
        /// The QUIC application error code received.
        code: VarInt,
        /// The HTTP/2 reason it maps to.
        #[source]
        reason: h2::Error,
    },
    /// The peer sent bytes that are not a valid frame.
    #[error("malformed frame on tunnel stream: {0}")]
    Wire(#[from] WireError),
    /// A valid frame arrived where the protocol does not allow it.
    #[error("unexpected {0} frame on tunnel stream")]
    Unexpected(&'static str),
    /// The stream ended in the middle of a frame or before a required frame.
    #[error("tunnel stream ended early: {0}")]
    Truncated(&'static str),
    /// The QUIC connection under the stream is gone.
    #[error("tunnel connection lost: {0}")]
    ConnectionLost(String),
    /// The peer stopped reading what we send.
    #[error("tunnel peer stopped reading (code {0})")]
    Stopped(VarInt),
}

impl StreamError {
    /// A reset from the peer, with its HTTP/2 meaning attached.
    pub fn reset(code: VarInt) -> Self {
        Self::Reset {
            code,
            reason: h2::Error::from(h2_reason_for_code(code)),
        }
    }

    /// The QUIC code to reset the *other* direction with when this error
    /// ends a stream, so the far end learns the same cause.
    pub fn code_for_peer(&self) -> VarInt {
        match self {
            Self::Reset { code, .. } | Self::Stopped(code) => *code,
            Self::Wire(_) | Self::Unexpected(_) | Self::Truncated(_) => codes::PROTOCOL,
            Self::ConnectionLost(_) => codes::INTERNAL,
        }
    }
}

/// Maps a QUIC stream error code to the HTTP/2 reset reason a caller should
/// see.
pub fn h2_reason_for_code(code: VarInt) -> h2::Reason {
    let raw = code.into_inner();
    if raw >= u64::from(codes::H2_REASON_BASE) {
        let r = raw - u64::from(codes::H2_REASON_BASE);
        return h2::Reason::from(u32::try_from(r).unwrap_or(2));
    }
    match code {
        codes::CANCELLED | codes::TIMEOUT => h2::Reason::CANCEL,
        codes::NO_ERROR => h2::Reason::NO_ERROR,
        codes::PROTOCOL => h2::Reason::PROTOCOL_ERROR,
        _ => h2::Reason::INTERNAL_ERROR,
    }
}

/// Finds the QUIC code that best carries `err` to the other end: an HTTP/2
/// reason anywhere in the chain is passed through exactly; a tunnel error is
/// passed on; anything else (a cut connection, a failed body) gets
/// `otherwise`, which says whose side failed: `CANCELLED` for a caller's
/// body (the caller gave up), `UPSTREAM_RESET` for a service's body (the
/// service failed — not a cancellation, which gRPC callers would read as
/// CANCELLED).
pub fn reset_code_for(err: &(dyn StdError + 'static), otherwise: VarInt) -> VarInt {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(se) = e.downcast_ref::<StreamError>() {
            return se.code_for_peer();
        }
        if let Some(h2e) = e.downcast_ref::<h2::Error>() {
            if let Some(reason) = h2e.reason() {
                return match reason {
                    h2::Reason::CANCEL => codes::CANCELLED,
                    r => VarInt::from_u32(codes::H2_REASON_BASE + u32::from(r)),
                };
            }
        }
        cur = e.source();
    }
    otherwise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_reasons_survive_a_round_trip() {
        for reason in [
            h2::Reason::CANCEL,
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::REFUSED_STREAM,
            h2::Reason::ENHANCE_YOUR_CALM,
        ] {
            let code = reset_code_for(&h2::Error::from(reason), codes::UPSTREAM_RESET);
            assert_eq!(h2_reason_for_code(code), reason);
        }
    }

    #[test]
    fn stream_errors_pass_their_code_on() {
        let e = StreamError::reset(codes::TIMEOUT);
        assert_eq!(reset_code_for(&e, codes::UPSTREAM_RESET), codes::TIMEOUT);
    }

    #[test]
    fn other_failures_say_whose_side_failed() {
        let io = std::io::Error::other("boom");
        assert_eq!(reset_code_for(&io, codes::CANCELLED), codes::CANCELLED);
        let code = reset_code_for(&io, codes::UPSTREAM_RESET);
        assert_eq!(code, codes::UPSTREAM_RESET);
        assert_eq!(h2_reason_for_code(code), h2::Reason::INTERNAL_ERROR);
    }
}
