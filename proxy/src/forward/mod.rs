//! The one bridge between HTTP and tunnel streams, used by both ends.
//!
//! An HTTP request becomes an OPEN frame plus a body pumped as DATA and
//! TRAILERS frames ([`pump`]); on the other side the frames become an HTTP
//! request again, with the body read lazily from the stream ([`body`]).
//! Responses take the same path back. Errors map to HTTP/2 reset reasons
//! ([`error`]) and to HTTP/gRPC statuses ([`status`]) so that callers see
//! what they would see without the tunnel.

pub mod accept;
pub mod body;
pub mod error;
pub mod guard;
pub mod head;
pub mod headers;
pub mod observe;
pub mod open;
pub mod pump;
pub mod reader;
pub mod replay;
pub mod status;
pub mod tcp;

use bytes::Bytes;

pub use body::TunnelBody;
pub use error::StreamError;
pub use guard::AbortOnDrop;
pub use observe::ForwardBody;
pub use pump::{
    pump_body, send_head, write_frame, write_frames, BoxError, PumpOutcome, SendGuard, Started,
};
pub use reader::FrameReader;
pub use status::CallError;

/// The body type both ends hand to hyper: any body, boxed, errors boxed.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
