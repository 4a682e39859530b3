//! Wire-level helpers on the frame types of `frame.rs`: type bytes, names.

use std::fmt;

use super::frame::{Frame, FrameType, StreamKind};

impl FrameType {
    /// Maps a wire byte to a frame type; unknown bytes are `None`.
    pub fn from_wire(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Hello,
            0x02 => Self::Welcome,
            0x03 => Self::GoAway,
            0x04 => Self::Error,
            0x10 => Self::Open,
            0x11 => Self::Response,
            0x12 => Self::Refuse,
            0x13 => Self::Data,
            0x14 => Self::Trailers,
            0x15 => Self::Audited,
            _ => return None,
        })
    }

    /// The frame's name as the protocol document spells it (`OPEN`, `DATA`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "HELLO",
            Self::Welcome => "WELCOME",
            Self::GoAway => "GOAWAY",
            Self::Error => "ERROR",
            Self::Open => "OPEN",
            Self::Response => "RESPONSE",
            Self::Refuse => "REFUSE",
            Self::Data => "DATA",
            Self::Trailers => "TRAILERS",
            Self::Audited => "AUDITED",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Frame {
    /// The type byte this frame is sent with.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello(_) => FrameType::Hello,
            Self::Welcome(_) => FrameType::Welcome,
            Self::GoAway(_) => FrameType::GoAway,
            Self::Error(_) => FrameType::Error,
            Self::Open(_) => FrameType::Open,
            Self::Response(_) => FrameType::Response,
            Self::Refuse(_) => FrameType::Refuse,
            Self::Data(_) => FrameType::Data,
            Self::Trailers(_) => FrameType::Trailers,
            Self::Audited => FrameType::Audited,
        }
    }
}

impl StreamKind {
    /// Maps a wire byte to a stream kind; unknown bytes are `None`.
    pub fn from_wire(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Http),
            1 => Some(Self::Tcp),
            _ => None,
        }
    }
}
