//! QUIC application error codes Tether uses in RESET_STREAM, STOP_SENDING
//! and CONNECTION_CLOSE. Kept in one place so both ends agree and the
//! protocol document can list them.

use quinn::VarInt;

/// Stream error codes (RESET_STREAM / STOP_SENDING).
pub mod stream {
    use super::VarInt;
    /// The reader does not want more bytes; nothing went wrong.
    pub const NO_ERROR: VarInt = VarInt::from_u32(0x0);
    /// The caller (or workload) gave up: maps to HTTP/2 CANCEL and gRPC CANCELLED.
    pub const CANCELLED: VarInt = VarInt::from_u32(0x1);
    /// The service at the far end reset its side of the call.
    pub const UPSTREAM_RESET: VarInt = VarInt::from_u32(0x2);
    /// A malformed or oversized frame was received on this stream.
    pub const PROTOCOL: VarInt = VarInt::from_u32(0x3);
    /// Tether itself failed while forwarding.
    pub const INTERNAL: VarInt = VarInt::from_u32(0x4);
    /// A deadline passed before the call finished.
    pub const TIMEOUT: VarInt = VarInt::from_u32(0x5);
    /// `H2_REASON_BASE + r`: an HTTP/2 peer at the far end reset the call
    /// with RST_STREAM reason `r`; the near end resets its caller with the
    /// same reason, so HTTP/2 and gRPC semantics survive the tunnel.
    pub const H2_REASON_BASE: u32 = 0x100;
}

/// Connection close codes (CONNECTION_CLOSE, application variant).
pub mod conn {
    use super::VarInt;
    /// Orderly close.
    pub const NORMAL: VarInt = VarInt::from_u32(0x0);
    /// The peer broke the protocol on the control stream.
    pub const PROTOCOL: VarInt = VarInt::from_u32(0x1);
    /// Registration was refused (bad HELLO, version, identity).
    pub const REFUSED: VarInt = VarInt::from_u32(0x2);
    /// The process is shutting down.
    pub const GOING_AWAY: VarInt = VarInt::from_u32(0x3);
    /// A newer connection from the same tunnel replaced this one.
    pub const REPLACED: VarInt = VarInt::from_u32(0x4);
    /// The peer's certificate reached its `not_after`; redial with a
    /// current one.
    pub const EXPIRED: VarInt = VarInt::from_u32(0x5);
    /// The peer's identity or certificate is on the `[revoked]` list.
    pub const REVOKED: VarInt = VarInt::from_u32(0x6);
}
