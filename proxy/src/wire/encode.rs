//! Frame → bytes.
//!
//! Encoding is two passes over the same code: the first counts the payload
//! length (and validates), the second writes it. So the frame header can be
//! written with the exact, minimal varint length, and a frame that is too
//! large or invalid writes nothing at all.

use bytes::{BufMut, BytesMut};
use http::HeaderMap;

use super::error::WireError;
use super::frame::{Frame, FrameType};
use super::limits::WireLimits;
use super::varint::{self, VarintOverflow};

/// Appends `frame` (type byte, varint length, payload) to `dst`.
///
/// `limits` are the limits of the peer that will decode the frame: a frame it
/// would reject (payload over `max_header_bytes` / `max_data_frame`, or more
/// than `max_headers` header fields) is refused here instead, with an error
/// and nothing written to `dst`.
///
/// A [`Frame::Data`] payload is copied into `dst`; to send a body chunk
/// without copying, use [`encode_data_header`] and write the `Bytes` after it.
pub fn encode(frame: &Frame, limits: &WireLimits, dst: &mut BytesMut) -> Result<(), WireError> {
    if let Frame::Data(body) = frame {
        encode_data_header(body.len(), limits, dst)?;
        dst.extend_from_slice(body);
        return Ok(());
    }
    let ty = frame.frame_type();
    let mut counter = Counter(0);
    payload(frame, limits, &mut counter)?;
    let len = counter.0;
    check_len(ty, len, limits.max_header_bytes)?;

    let start = dst.len();
    dst.reserve(1 + varint::MAX_LEN + len);
    let written = write_header(ty, len, dst).and_then(|()| payload(frame, limits, dst));
    if let Err(e) = written {
        // Unreachable after the counting pass succeeded; kept so a failure
        // can never leave half a frame behind.
        dst.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(
        dst.len() - start,
        1 + varint::encoded_len(len as u64).unwrap_or(0) + len
    );
    Ok(())
}

/// Appends only the header of a DATA frame whose payload is `len` bytes: the
/// caller writes exactly `len` body bytes next (for example the `Bytes` chunk
/// itself, without copying it into `dst`).
///
/// Refuses, writing nothing, a `len` above `limits.max_data_frame`; callers
/// split larger chunks with `Bytes::split_to`.
pub fn encode_data_header(
    len: usize,
    limits: &WireLimits,
    dst: &mut BytesMut,
) -> Result<(), WireError> {
    check_len(FrameType::Data, len, limits.max_data_frame)?;
    write_header(FrameType::Data, len, dst)
}

fn check_len(frame: FrameType, len: usize, limit: usize) -> Result<(), WireError> {
    if len > limit {
        return Err(WireError::FrameTooLarge {
            frame,
            len: len as u64,
            limit,
        });
    }
    Ok(())
}

fn write_header(ty: FrameType, len: usize, dst: &mut BytesMut) -> Result<(), WireError> {
    // Check before writing the type byte so an error writes nothing.
    let len = len as u64;
    if varint::encoded_len(len).is_none() {
        return Err(VarintOverflow(len).into());
    }
    dst.put_u8(ty as u8);
    varint::encode(len, dst)?;
    Ok(())
}

/// Where a payload goes: a length counter or a buffer.
trait Out {
    fn u8(&mut self, b: u8);
    fn varint(&mut self, v: u64) -> Result<(), WireError>;
    fn raw(&mut self, b: &[u8]);

    /// `string` / byte string: varint length, then the bytes.
    fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        self.varint(b.len() as u64)?;
        self.raw(b);
        Ok(())
    }
}

/// Counts bytes; saturates instead of overflowing (the limit check then fails).
struct Counter(usize);

impl Out for Counter {
    fn u8(&mut self, _: u8) {
        self.0 = self.0.saturating_add(1);
    }
    fn varint(&mut self, v: u64) -> Result<(), WireError> {
        let n = varint::encoded_len(v).ok_or(VarintOverflow(v))?;
        self.0 = self.0.saturating_add(n);
        Ok(())
    }
    fn raw(&mut self, b: &[u8]) {
        self.0 = self.0.saturating_add(b.len());
    }
}

impl Out for BytesMut {
    fn u8(&mut self, b: u8) {
        self.put_u8(b);
    }
    fn varint(&mut self, v: u64) -> Result<(), WireError> {
        varint::encode(v, self)?;
        Ok(())
    }
    fn raw(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Writes the payload of any frame but DATA. Layouts are in docs/protocol.md.
fn payload<O: Out>(frame: &Frame, limits: &WireLimits, out: &mut O) -> Result<(), WireError> {
    match frame {
        Frame::Hello(h) => {
            out.varint(h.version.into())?;
            out.varint(h.services.len() as u64)?;
            for s in &h.services {
                out.bytes(s.name.as_bytes())?;
            }
            out.varint(h.labels.len() as u64)?;
            for (k, v) in &h.labels {
                out.bytes(k.as_bytes())?;
                out.bytes(v.as_bytes())?;
            }
        }
        Frame::Welcome(w) => {
            out.varint(w.version.into())?;
            out.bytes(w.edge_id.as_bytes())?;
            out.varint(w.limits.max_header_bytes.into())?;
            out.varint(w.limits.max_data_frame.into())?;
            out.varint(w.limits.max_streams.into())?;
        }
        Frame::GoAway(g) => out.bytes(g.reason.as_bytes())?,
        Frame::Error(e) => {
            out.u8(e.code as u8);
            out.bytes(e.message.as_bytes())?;
            out.varint(e.retry_after_ms)?;
        }
        Frame::Open(o) => {
            out.u8(o.kind as u8);
            out.bytes(o.service.as_bytes())?;
            out.bytes(o.request_id.as_bytes())?;
            out.bytes(o.caller.as_bytes())?;
            match &o.traceparent {
                None => out.u8(0),
                Some(t) => {
                    out.u8(1);
                    out.bytes(t.as_bytes())?;
                }
            }
            out.bytes(o.method.as_str().as_bytes())?;
            out.bytes(o.scheme.as_bytes())?;
            out.bytes(o.authority.as_bytes())?;
            out.bytes(o.path.as_bytes())?;
            headers(FrameType::Open, &o.headers, limits, out)?;
        }
        Frame::Response(r) => {
            out.varint(r.status.as_u16().into())?;
            headers(FrameType::Response, &r.headers, limits, out)?;
        }
        Frame::Refuse(r) => {
            out.u8(r.code as u8);
            out.bytes(r.message.as_bytes())?;
        }
        Frame::Data(body) => out.raw(body),
        Frame::Trailers(t) => headers(FrameType::Trailers, t, limits, out)?,
        Frame::Audited => {}
    }
    Ok(())
}

/// `headers`: field count, then name and value of every field, repeated names
/// once per value, in the map's order.
fn headers<O: Out>(
    frame: FrameType,
    map: &HeaderMap,
    limits: &WireLimits,
    out: &mut O,
) -> Result<(), WireError> {
    let count = map.len();
    if count > limits.max_headers {
        return Err(WireError::TooManyHeaders {
            frame,
            count: count as u64,
            limit: limits.max_headers,
        });
    }
    out.varint(count as u64)?;
    for (name, value) in map {
        // `HeaderName` is always lowercase, as the decoder requires.
        out.bytes(name.as_str().as_bytes())?;
        out.bytes(value.as_bytes())?;
    }
    Ok(())
}
