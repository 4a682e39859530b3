//! The frames of the Tether protocol as plain data.
//!
//! These types are what the rest of the code speaks; `codec` turns them into
//! bytes and back. Nothing here does IO.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

/// Protocol version carried in HELLO and WELCOME; a peer refuses any other.
pub const VERSION: u32 = 1;

/// Wire value of each frame type: the first byte of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Client → edge on the control stream: who I am offering what.
    Hello = 0x01,
    /// Edge → client on the control stream: accepted, with the edge's limits.
    Welcome = 0x02,
    /// Either way on the control stream: the sender drains and takes no new
    /// streams on this connection.
    GoAway = 0x03,
    /// Either way on the control stream: a fatal problem, said before closing.
    Error = 0x04,
    /// First frame of every data stream.
    Open = 0x10,
    /// Acceptor's answer to OPEN: the response head.
    Response = 0x11,
    /// Acceptor's refusal of OPEN; the stream ends after it.
    Refuse = 0x12,
    /// Body bytes, either way.
    Data = 0x13,
    /// Trailing headers, either way; the last frame before FIN.
    Trailers = 0x14,
    /// Opener → acceptor, right after OPEN: the opener's open record for
    /// the stream is durable. The acceptor reaches its service only after
    /// it, so both ends can make their records durable at the same time.
    Audited = 0x15,
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// An HTTP request/response (HTTP/1.1, HTTP/2 or gRPC at the ends).
    Http = 0,
    /// A raw byte stream (TCP).
    Tcp = 1,
}

/// A service a tunnel client offers, as announced in HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOffer {
    /// Name callers use in the host (`<service>.<tunnel>.<domain>`).
    pub name: String,
}

/// Client → edge, the first frame on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u32,
    /// Services this client serves; the edge refuses calls to anything else early.
    pub services: Vec<ServiceOffer>,
    /// Free-form labels (zone, cluster…) for operators; not used for trust.
    pub labels: Vec<(String, String)>,
}

/// Limits the edge applies and asks the client to respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Largest encoded header block (OPEN, RESPONSE, TRAILERS payload) accepted.
    pub max_header_bytes: u32,
    /// Largest DATA payload accepted.
    pub max_data_frame: u32,
    /// Concurrent streams the edge will open towards the client.
    pub max_streams: u32,
}

/// Edge → client: registration accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version the edge speaks.
    pub version: u32,
    /// The edge's own name, for logs on the client side.
    pub edge_id: String,
    /// Limits the edge enforces.
    pub limits: PeerLimits,
}

/// Sent on the control stream by an end that starts to drain: it takes no
/// new streams on this connection (REFUSE `Draining`), serves those in
/// flight, then closes with `GOING_AWAY`. The edge's GOAWAY makes the
/// client dial a replacement at once while this connection keeps serving;
/// the client's makes the edge route new calls to the tunnel's other
/// connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// Why, for logs.
    pub reason: String,
}

/// Codes carried by ERROR and REFUSE frames. Unknown values decode as `Internal`
/// only through [`RefuseCode::from_wire`]; the codec never invents one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseCode {
    /// Policy said no.
    Denied = 1,
    /// The named service is not offered here.
    UnknownService = 2,
    /// Too many streams or too little capacity right now.
    Overloaded = 3,
    /// The local service could not be reached.
    UpstreamUnavailable = 4,
    /// The request itself was not acceptable (bad header, bad path).
    BadRequest = 5,
    /// Something failed inside Tether.
    Internal = 6,
    /// The service did not answer in time.
    UpstreamTimeout = 7,
    /// Version or registration problem on the control stream.
    Unsupported = 8,
    /// The acceptor cannot serve any stream now (its audit log cannot be
    /// written); retry later.
    Unavailable = 9,
    /// The acceptor is shutting down and takes no new streams; the stream
    /// was not started, so retrying (on another connection) is safe.
    Draining = 10,
}

impl RefuseCode {
    /// Maps a wire byte to a code; unknown bytes are an error, not a guess.
    pub fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Denied,
            2 => Self::UnknownService,
            3 => Self::Overloaded,
            4 => Self::UpstreamUnavailable,
            5 => Self::BadRequest,
            6 => Self::Internal,
            7 => Self::UpstreamTimeout,
            8 => Self::Unsupported,
            9 => Self::Unavailable,
            10 => Self::Draining,
            _ => return None,
        })
    }
}

/// A fatal problem on the control stream, sent before the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// Machine-readable reason.
    pub code: RefuseCode,
    /// Human-readable reason that says what to do.
    pub message: String,
    /// How long the peer should wait before trying again, in
    /// milliseconds; 0: no hint (the peer's own backoff applies). An
    /// overloaded or draining edge sets it so that clients refused
    /// together come back when it can take them, not on their next
    /// backoff step.
    pub retry_after_ms: u64,
}

/// The first frame of a data stream: what is being asked, by whom.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    /// HTTP or TCP.
    pub kind: StreamKind,
    /// Target service name at the acceptor.
    pub service: String,
    /// Correlates logs and audit across both ends.
    pub request_id: String,
    /// Caller identity as verified by the opener's side (a SPIFFE ID).
    pub caller: String,
    /// W3C traceparent, when the caller sent one.
    pub traceparent: Option<String>,
    /// HTTP method (GET for TCP streams, ignored).
    pub method: Method,
    /// `http` or `https` as the caller used it.
    pub scheme: String,
    /// Authority the caller used.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// End-to-end request headers (hop-by-hop already removed).
    pub headers: HeaderMap,
}

/// The acceptor's response head.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status from the service.
    pub status: StatusCode,
    /// End-to-end response headers.
    pub headers: HeaderMap,
}

/// The acceptor will not serve this stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// Why, for status mapping.
    pub code: RefuseCode,
    /// Why, for people.
    pub message: String,
}

/// Every frame of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`GoAway`].
    GoAway(GoAway),
    /// See [`ControlError`].
    Error(ControlError),
    /// See [`Open`].
    Open(Box<Open>),
    /// See [`Response`].
    Response(Box<Response>),
    /// See [`Refuse`].
    Refuse(Refuse),
    /// Body bytes; zero-copy slices of the receive buffer.
    Data(Bytes),
    /// Trailing headers.
    Trailers(HeaderMap),
    /// The opener's open record is durable (no payload).
    Audited,
}
