//! An HTTP body read from a tunnel stream: DATA frames become data, a
//! TRAILERS frame becomes trailers, FIN ends it. Polled by hyper, so the
//! body is read only as fast as the receiver consumes it — QUIC flow control
//! then slows the sender: backpressure end to end, no buffer in between.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame as BodyFrame, SizeHint};

use super::error::StreamError;
use super::guard::AbortOnDrop;
use super::reader::FrameReader;
use crate::wire::codes::stream as codes;
use crate::wire::Frame;

/// Most bytes joined into one body chunk from DATA pieces that arrived
/// together (one per QUIC packet): a write per 64 KiB instead of one per
/// ~1.4 KiB on the far side, for one copy.
const JOIN_BYTES: usize = 64 * 1024;

type FrameStream = Pin<Box<dyn Stream<Item = Result<BodyFrame<Bytes>, StreamError>> + Send>>;

/// Reader plus where it is in the DATA* TRAILERS? FIN sequence. When
/// dropped before the end it tells the peer to stop sending.
struct BodyState {
    reader: FrameReader,
    /// What the reader gave while DATA pieces were being joined, due next.
    pending: Option<Result<Option<Frame>, StreamError>>,
    after_trailers: bool,
    done: bool,
    bytes: Arc<AtomicU64>,
}

impl Drop for BodyState {
    fn drop(&mut self) {
        if !self.done {
            self.reader.stop(codes::CANCELLED);
        }
    }
}

impl BodyState {
    async fn next(&mut self) -> Option<Result<BodyFrame<Bytes>, StreamError>> {
        if self.done {
            return None;
        }
        let next = match self.pending.take() {
            Some(next) => next,
            None => self.reader.next().await,
        };
        let item = match next {
            Ok(None) => {
                self.done = true;
                return None;
            }
            Ok(Some(_)) if self.after_trailers => {
                Err(StreamError::Unexpected("frame after TRAILERS"))
            }
            Ok(Some(Frame::Data(data))) => {
                let data = self.join_ready(data);
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                Ok(BodyFrame::data(data))
            }
            Ok(Some(Frame::Trailers(trailers))) => {
                self.after_trailers = true;
                Ok(BodyFrame::trailers(trailers))
            }
            Ok(Some(_)) => Err(StreamError::Unexpected("non-body")),
            Err(e) => Err(e),
        };
        if let Err(e) = &item {
            // A protocol violation is ours to stop; a reset already ended it.
            if !matches!(e, StreamError::Reset { .. }) {
                self.reader.stop(e.code_for_peer());
            }
            self.done = true;
        }
        Some(item)
    }

    /// `first` followed by the DATA pieces already received, joined up to
    /// [`JOIN_BYTES`]; whatever else the reader gave is kept for the next
    /// call. A piece that is alone is passed on uncopied.
    fn join_ready(&mut self, first: Bytes) -> Bytes {
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(first.len(), BytesMut::len) < JOIN_BYTES {
            match self.reader.next_ready() {
                None => break,
                Some(Ok(Some(Frame::Data(more)))) if !self.after_trailers => {
                    // Sized for what arrived, not for the cap: a body of
                    // two small pieces should not cost a 64 KiB buffer.
                    let buf = joined.get_or_insert_with(|| {
                        let mut b = BytesMut::with_capacity(first.len() + more.len());
                        b.extend_from_slice(&first);
                        b
                    });
                    buf.extend_from_slice(&more);
                }
                Some(other) => {
                    self.pending = Some(other);
                    break;
                }
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }
}

/// An `http_body::Body` over the remaining frames of a tunnel stream.
pub struct TunnelBody {
    frames: FrameStream,
    ended: bool,
    size_hint: SizeHint,
    bytes: Arc<AtomicU64>,
    _tasks: Vec<AbortOnDrop>,
}

impl TunnelBody {
    /// Wraps the reader after its head frame. `content_length` (from the
    /// head's headers) becomes an exact size hint so HTTP/1 peers get a
    /// Content-Length rather than chunked encoding.
    pub fn new(mut reader: FrameReader, content_length: Option<u64>) -> Self {
        reader.poll_arrived();
        let ended = reader.at_clean_end();
        let bytes = Arc::new(AtomicU64::new(0));
        let state = BodyState {
            reader,
            pending: None,
            after_trailers: false,
            done: ended,
            bytes: bytes.clone(),
        };
        let frames = futures_util::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        });
        let size_hint = match (ended, content_length) {
            (true, _) => SizeHint::with_exact(0),
            (false, Some(n)) => SizeHint::with_exact(n),
            (false, None) => SizeHint::default(),
        };
        Self {
            frames: Box::pin(frames),
            ended,
            size_hint,
            bytes,
            _tasks: Vec::new(),
        }
    }

    /// Keeps `task` alive exactly as long as this body: when the body is
    /// dropped (call done or abandoned), the task is cancelled.
    pub fn tie(mut self, task: AbortOnDrop) -> Self {
        self._tasks.push(task);
        self
    }

    /// A shared count of body bytes delivered so far (for close records).
    pub fn byte_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }
}

impl Body for TunnelBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, StreamError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let polled = self.frames.as_mut().poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // With a declared length, the body is complete once that many bytes
        // were delivered; HTTP/1.1 peers stop polling there.
        self.ended
            || self.size_hint.exact().is_some_and(|n| {
                n > 0 && self.bytes.load(std::sync::atomic::Ordering::Relaxed) >= n
            })
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}
