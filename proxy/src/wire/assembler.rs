//! Frames out of a stream that arrives in arbitrary pieces (QUIC chunks),
//! without copying DATA payloads: a DATA frame is handed on piece by piece
//! as its bytes arrive, each piece a slice of the chunk it came in. Only
//! headers and non-DATA frames that straddle chunks are gathered into a
//! small buffer. Sans-IO: the reader pushes chunks and pulls frames.
//!
//! Memory is bounded: the buffer holds at most one incomplete non-DATA
//! frame (≤ `max_header_bytes` + its header) plus the chunk that completes
//! it, because lengths are checked against the limits as soon as a header
//! is readable.

use bytes::{Buf, Bytes, BytesMut};

use super::decode::{FrameDecoder, FrameHeader};
use super::error::WireError;
use super::frame::{Frame, FrameType};
use super::limits::WireLimits;

/// Reassembles frames from pushed chunks; see the module documentation.
#[derive(Debug)]
pub struct FrameAssembler {
    decoder: FrameDecoder,
    /// Older bytes: a partial header or non-DATA frame.
    buf: BytesMut,
    /// Newer bytes: the rest of the last pushed chunk.
    chunk: Bytes,
    /// Payload bytes of the current DATA frame not yet handed on.
    data_left: usize,
}

impl FrameAssembler {
    /// An assembler enforcing `limits` on what it decodes.
    pub fn new(limits: WireLimits) -> Self {
        Self {
            decoder: FrameDecoder::new(limits),
            buf: BytesMut::new(),
            chunk: Bytes::new(),
            data_left: 0,
        }
    }

    /// Adds the next piece of the stream.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
        }
        self.chunk = bytes;
    }

    /// True when no frame is partly received: the stream may end here.
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && self.chunk.is_empty() && self.data_left == 0
    }

    /// The next frame, or the next piece of a DATA frame's payload (as
    /// `Frame::Data`); `Ok(None)` when more bytes are needed. After an
    /// error the stream is broken and must be reset.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(piece) = self.data_piece() {
            return Ok(Some(piece));
        }
        if self.data_left > 0 {
            return Ok(None);
        }
        if self.buf.is_empty() {
            // Fast path: the whole header (and frame) is in the chunk.
            if let Some(head) = self.decoder.header(&self.chunk)? {
                if let Some(frame) = self.take_from_chunk(head)? {
                    return Ok(Some(frame));
                }
            }
            // Incomplete: keep what there is and wait for more.
            if !self.chunk.is_empty() {
                self.buf.extend_from_slice(&self.chunk);
                self.chunk = Bytes::new();
            }
            return Ok(None);
        }
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
        let Some(head) = self.decoder.header(&self.buf)? else {
            return Ok(None);
        };
        if head.ty == FrameType::Data {
            self.buf.advance(head.header_len);
            return Ok(self.start_data(head.len));
        }
        let end = head.header_len + head.len;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = self
            .decoder
            .payload(head, &self.buf[head.header_len..end])?;
        self.buf.advance(end);
        Ok(Some(frame))
    }

    /// A frame whose header is at the front of the chunk, if the chunk
    /// holds enough of it (any part of a DATA payload will do).
    fn take_from_chunk(&mut self, head: FrameHeader) -> Result<Option<Frame>, WireError> {
        if head.ty == FrameType::Data {
            self.chunk.advance(head.header_len);
            return Ok(self.start_data(head.len));
        }
        let end = head.header_len + head.len;
        if self.chunk.len() < end {
            return Ok(None);
        }
        let frame = self
            .decoder
            .payload(head, &self.chunk[head.header_len..end])?;
        self.chunk.advance(end);
        Ok(Some(frame))
    }

    /// Enters a DATA payload of `len` bytes and hands on its first piece:
    /// an empty frame is passed on as such; `None` when none of a non-empty
    /// payload has arrived yet (more bytes are needed).
    fn start_data(&mut self, len: usize) -> Option<Frame> {
        if len == 0 {
            return Some(Frame::Data(Bytes::new()));
        }
        self.data_left = len;
        self.data_piece()
    }

    /// The next piece of the current DATA payload already received.
    fn data_piece(&mut self) -> Option<Frame> {
        if self.data_left == 0 {
            return None;
        }
        let source = if self.buf.is_empty() {
            if self.chunk.is_empty() {
                return None;
            }
            let n = self.data_left.min(self.chunk.len());
            self.chunk.split_to(n)
        } else {
            let n = self.data_left.min(self.buf.len());
            self.buf.split_to(n).freeze()
        };
        self.data_left -= source.len();
        Some(Frame::Data(source))
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::wire::encode;

    fn sample() -> (Vec<u8>, Vec<Frame>) {
        let limits = WireLimits::default();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Frame::Data(Bytes::from(vec![1u8; 3000])),
            Frame::Data(Bytes::new()),
            Frame::Data(Bytes::from_static(b"xyz")),
            Frame::Trailers(trailers),
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &limits, &mut wire).unwrap();
        }
        (wire.to_vec(), frames)
    }

    /// Feeds `wire` cut at `cuts`, and returns the frames with DATA pieces
    /// of one frame joined (pieces of consecutive frames are joined too,
    /// so compare DATA by concatenation).
    fn assemble(wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Frame>, bool) {
        let mut a = FrameAssembler::new(WireLimits::default());
        let mut data = Vec::new();
        let mut others = Vec::new();
        let mut start = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.sort_unstable();
        points.push(wire.len());
        for end in points {
            if end < start {
                continue;
            }
            a.push(Bytes::copy_from_slice(&wire[start..end]));
            start = end;
            while let Some(f) = a.next_frame().unwrap() {
                match f {
                    Frame::Data(d) => data.extend_from_slice(&d),
                    other => others.push(other),
                }
            }
        }
        (data, others, a.at_boundary())
    }

    #[test]
    fn whole_and_byte_by_byte_agree() {
        let (wire, frames) = sample();
        let expected: Vec<u8> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Data(d) => Some(d.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        let (data, others, end) = assemble(&wire, &[]);
        assert_eq!(data, expected);
        assert_eq!(others, vec![frames[3].clone()]);
        assert!(end);
        let every: Vec<usize> = (0..wire.len()).collect();
        let (data, others, end) = assemble(&wire, &every);
        assert_eq!(data, expected);
        assert_eq!(others, vec![frames[3].clone()]);
        assert!(end);
    }

    #[test]
    fn data_pieces_are_slices_of_the_chunk() {
        let limits = WireLimits::default();
        let mut wire = BytesMut::new();
        encode(
            &Frame::Data(Bytes::from(vec![9u8; 1000])),
            &limits,
            &mut wire,
        )
        .unwrap();
        let chunk = wire.freeze();
        let mut a = FrameAssembler::new(limits);
        a.push(chunk.clone());
        let Some(Frame::Data(d)) = a.next_frame().unwrap() else {
            panic!("expected data")
        };
        assert_eq!(d.len(), 1000);
        // Zero copy: the piece points into the pushed chunk.
        assert_eq!(d.as_ptr(), chunk[chunk.len() - 1000..].as_ptr());
        assert!(a.at_boundary());
    }

    #[test]
    fn oversized_header_fails_before_its_payload() {
        let limits = WireLimits::default();
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[FrameType::Data as u8]);
        crate::wire::varint::encode((limits.max_data_frame + 1) as u64, &mut wire).unwrap();
        let mut a = FrameAssembler::new(limits);
        a.push(wire.freeze());
        assert!(matches!(
            a.next_frame(),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frame_is_not_at_a_boundary() {
        let (wire, _) = sample();
        let mut a = FrameAssembler::new(WireLimits::default());
        a.push(Bytes::copy_from_slice(&wire[..wire.len() - 1]));
        while a.next_frame().unwrap().is_some() {}
        assert!(!a.at_boundary());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_stream(cuts in proptest::collection::vec(0usize..4000, 0..40)) {
            let (wire, frames) = sample();
            let (whole_data, _, _) = assemble(&wire, &[]);
            let (data, others, end) = assemble(&wire, &cuts);
            prop_assert_eq!(data, whole_data);
            prop_assert_eq!(others.len(), 1);
            prop_assert_eq!(&others[0], &frames[3]);
            prop_assert!(end);
        }
    }
}
