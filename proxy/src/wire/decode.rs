//! Bytes → Frame.

use bytes::{Buf, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use super::error::WireError;
use super::frame::{
    ControlError, Frame, FrameType, GoAway, Hello, Open, PeerLimits, Refuse, RefuseCode, Response,
    ServiceOffer, StreamKind, Welcome,
};
use super::limits::WireLimits;
use super::varint;

/// Upper bound on a `Vec` preallocated from a count read off the wire; longer
/// lists grow as their entries are actually parsed.
const PREALLOC: usize = 16;

/// Sans-IO frame decoder: feed it the bytes read so far, take frames out.
///
/// It holds only its limits, no state between calls: everything lives in the
/// caller's buffer. After an error the stream is broken (the buffer is left as
/// it was) and must be reset, or the connection closed for the control stream.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: WireLimits,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(WireLimits::default())
    }
}

impl FrameDecoder {
    /// A decoder enforcing `limits` (ours: what we accept from the peer).
    pub fn new(limits: WireLimits) -> Self {
        Self { limits }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &WireLimits {
        &self.limits
    }

    /// Largest whole frame (header included) the decoder can ask a reader to
    /// buffer before it yields it: while `decode` returns `Ok(None)`, the
    /// buffer is always shorter than this. Size read buffers with it.
    pub fn max_frame_len(&self) -> usize {
        let payload = self.limits.max_header_bytes.max(self.limits.max_data_frame);
        payload.saturating_add(1 + varint::MAX_LEN)
    }

    /// Takes one frame off the front of `src`.
    ///
    /// - `Ok(Some(frame))`: the frame's bytes were removed from `src`. A DATA
    ///   payload is split off `src` without copying.
    /// - `Ok(None)`: `src` does not hold a whole frame yet; nothing was
    ///   consumed. Read more and call again.
    /// - `Err(_)`: the peer broke the protocol; nothing was consumed.
    ///
    /// The announced length is checked against the limit for the frame type
    /// as soon as the type byte and length are readable, so an oversized
    /// frame fails before its payload is buffered.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(head) = self.header(src)? else {
            return Ok(None);
        };
        if src.len() - head.header_len < head.len {
            return Ok(None);
        }
        if head.ty == FrameType::Data {
            src.advance(head.header_len);
            return Ok(Some(Frame::Data(src.split_to(head.len).freeze())));
        }
        let frame = self.payload(head, &src[head.header_len..head.header_len + head.len])?;
        src.advance(head.header_len + head.len);
        Ok(Some(frame))
    }

    /// Reads a frame header (type and length) off the front of `src`,
    /// checking the length against the limit for the type: `Ok(None)` until
    /// the whole header is there. Lets a reader stream a DATA payload as it
    /// arrives instead of buffering the whole frame.
    pub fn header(&self, src: &[u8]) -> Result<Option<FrameHeader>, WireError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        let ty = FrameType::from_wire(first).ok_or(WireError::UnknownFrameType(first))?;
        let Some((len, varint_len)) = varint::decode(&src[1..]) else {
            return Ok(None);
        };
        let limit = match ty {
            FrameType::Data => self.limits.max_data_frame,
            _ => self.limits.max_header_bytes,
        };
        let len =
            usize::try_from(len)
                .ok()
                .filter(|l| *l <= limit)
                .ok_or(WireError::FrameTooLarge {
                    frame: ty,
                    len,
                    limit,
                })?;
        Ok(Some(FrameHeader {
            ty,
            header_len: 1 + varint_len,
            len,
        }))
    }

    /// Parses the whole payload of a frame whose header was `head`.
    pub fn payload(&self, head: FrameHeader, payload: &[u8]) -> Result<Frame, WireError> {
        parse(head.ty, payload, &self.limits)
    }
}

/// A frame's type and lengths, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub ty: FrameType,
    /// Bytes of the type byte and the length varint.
    pub header_len: usize,
    /// Bytes of payload that follow, within the type's limit.
    pub len: usize,
}

/// Parses the payload of a non-DATA frame. Layouts are in docs/protocol.md.
fn parse(ty: FrameType, payload: &[u8], limits: &WireLimits) -> Result<Frame, WireError> {
    let mut r = Reader {
        buf: payload,
        frame: ty,
    };
    let frame = match ty {
        FrameType::Hello => {
            let version = r.u32("version")?;
            let n = r.count("service count", 1)?;
            let mut services = Vec::with_capacity(n.min(PREALLOC));
            for _ in 0..n {
                services.push(ServiceOffer {
                    name: r.string("service name")?,
                });
            }
            let n = r.count("label count", 2)?;
            let mut labels = Vec::with_capacity(n.min(PREALLOC));
            for _ in 0..n {
                labels.push((r.string("label key")?, r.string("label value")?));
            }
            Frame::Hello(Hello {
                version,
                services,
                labels,
            })
        }
        FrameType::Welcome => Frame::Welcome(Welcome {
            version: r.u32("version")?,
            edge_id: r.string("edge_id")?,
            limits: PeerLimits {
                max_header_bytes: r.u32("max_header_bytes")?,
                max_data_frame: r.u32("max_data_frame")?,
                max_streams: r.u32("max_streams")?,
            },
        }),
        FrameType::GoAway => Frame::GoAway(GoAway {
            reason: r.string("reason")?,
        }),
        FrameType::Error => Frame::Error(ControlError {
            code: r.code()?,
            message: r.string("message")?,
            retry_after_ms: r.varint("retry_after_ms")?,
        }),
        FrameType::Open => {
            let kind = r.u8("kind")?;
            let kind = StreamKind::from_wire(kind)
                .ok_or_else(|| r.malformed("kind", "unknown stream kind (0 http, 1 tcp)"))?;
            let service = r.string("service")?;
            let request_id = r.string("request_id")?;
            let caller = r.string("caller")?;
            let traceparent = match r.u8("traceparent flag")? {
                0 => None,
                1 => Some(r.string("traceparent")?),
                _ => return Err(r.malformed("traceparent flag", "must be 0 or 1")),
            };
            let method = r.bytes("method")?;
            let method = Method::from_bytes(method)
                .map_err(|_| r.malformed("method", "not a valid HTTP method token"))?;
            Frame::Open(Box::new(Open {
                kind,
                service,
                request_id,
                caller,
                traceparent,
                method,
                scheme: r.string("scheme")?,
                authority: r.string("authority")?,
                path: r.string("path")?,
                headers: r.headers(limits)?,
            }))
        }
        FrameType::Response => {
            let status = r.varint("status")?;
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (100..=999).contains(s))
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| r.malformed("status", "not an HTTP status code (100..=999)"))?;
            Frame::Response(Box::new(Response {
                status,
                headers: r.headers(limits)?,
            }))
        }
        FrameType::Refuse => Frame::Refuse(Refuse {
            code: r.code()?,
            message: r.string("message")?,
        }),
        FrameType::Trailers => Frame::Trailers(r.headers(limits)?),
        FrameType::Audited => Frame::Audited,
        // `decode` splits DATA off without parsing; kept total for safety.
        FrameType::Data => Frame::Data(bytes::Bytes::copy_from_slice(r.buf)),
    };
    if !r.buf.is_empty() {
        return Err(r.malformed("payload", "bytes left over after the last field"));
    }
    Ok(frame)
}

/// A cursor over one payload that names the frame and field in its errors.
struct Reader<'a> {
    buf: &'a [u8],
    frame: FrameType,
}

impl<'a> Reader<'a> {
    fn malformed(&self, field: &'static str, reason: &'static str) -> WireError {
        WireError::Malformed {
            frame: self.frame,
            field,
            reason,
        }
    }

    fn invalid_header(&self, reason: &'static str) -> WireError {
        WireError::InvalidHeader {
            frame: self.frame,
            reason,
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.malformed(field, "payload ends before this field"))?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, WireError> {
        let (v, n) = varint::decode(self.buf)
            .ok_or_else(|| self.malformed(field, "payload ends inside this varint"))?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let v = self.varint(field)?;
        u32::try_from(v).map_err(|_| self.malformed(field, "value does not fit in 32 bits"))
    }

    /// A count of entries that each take at least `min_entry` bytes: a count
    /// the rest of the payload cannot hold is refused before any allocation.
    fn count(&mut self, field: &'static str, min_entry: usize) -> Result<usize, WireError> {
        let n = self.varint(field)?;
        usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(min_entry) <= self.buf.len())
            .ok_or_else(|| self.malformed(field, "more entries than the payload can hold"))
    }

    /// Varint length, then that many bytes.
    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.varint(field)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.buf.len())
            .ok_or_else(|| self.malformed(field, "length runs past the end of the payload"))?;
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(b)
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let b = self.bytes(field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.malformed(field, "not valid UTF-8"))
    }

    fn code(&mut self) -> Result<RefuseCode, WireError> {
        let b = self.u8("code")?;
        RefuseCode::from_wire(b).ok_or_else(|| self.malformed("code", "unknown code (1..=10)"))
    }

    fn headers(&mut self, limits: &WireLimits) -> Result<HeaderMap, WireError> {
        let count = self.varint("header count")?;
        let frame = self.frame;
        let too_many = move || WireError::TooManyHeaders {
            frame,
            count,
            limit: limits.max_headers,
        };
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c <= limits.max_headers)
            .ok_or_else(too_many)?;
        // Each field takes at least its two length prefixes.
        if count.saturating_mul(2) > self.buf.len() {
            return Err(self.malformed("header count", "more fields than the payload can hold"));
        }
        let mut map = HeaderMap::try_with_capacity(count).map_err(|_| too_many())?;
        for _ in 0..count {
            let name = self.bytes("header name")?;
            if name.iter().any(u8::is_ascii_uppercase) {
                return Err(self.invalid_header("name has uppercase letters; send it lowercase"));
            }
            let name = HeaderName::from_bytes(name)
                .map_err(|_| self.invalid_header("name is not a valid HTTP field name"))?;
            let value = self.bytes("header value")?;
            let value = HeaderValue::from_bytes(value).map_err(|_| {
                self.invalid_header("value has bytes not allowed in HTTP fields (CR, LF, NUL…)")
            })?;
            map.try_append(name, value).map_err(|_| too_many())?;
        }
        Ok(map)
    }
}
