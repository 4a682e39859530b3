//! Request bodies a call can be sent again with.
//!
//! A call refused by a draining connection, before any byte reached the
//! service, may be retried on another connection: but only if the edge
//! still has the whole request. [`prefetch`] takes what the caller has
//! already delivered, without waiting: when that is the whole body (a
//! unary gRPC call, a small POST, no body at all) and within the buffer
//! bound, the call is [`Prefetched::Complete`] and each attempt gets a
//! fresh [`ReplayBody`] of it; otherwise it is sent once, buffered frames
//! first, then the rest as it arrives ([`Prefetched::Streaming`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::BoxError;

/// One piece of a request body, cloneable for replay.
#[derive(Debug, Clone)]
enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// A request body after [`prefetch`].
pub enum Prefetched<B> {
    /// The whole body is held: the call can be sent more than once.
    Complete(ReplayBody),
    /// Not all of it has arrived (or it is larger than the bound): it is
    /// sent once.
    Streaming(Prefixed<B>),
}

/// Takes every frame `body` has ready now, up to `limit` data bytes,
/// without waiting for more.
pub fn prefetch<B>(mut body: B, limit: usize) -> Prefetched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut pieces = VecDeque::new();
    let mut held = 0usize;
    loop {
        if body.is_end_stream() {
            return Prefetched::Complete(ReplayBody::new(pieces));
        }
        if held > limit {
            break;
        }
        match body.frame().now_or_never() {
            None => break,
            Some(None) => return Prefetched::Complete(ReplayBody::new(pieces)),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    held += data.len();
                    pieces.push_back(Piece::Data(data));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        pieces.push_back(Piece::Trailers(trailers));
                    }
                }
            },
            Some(Some(Err(e))) => {
                return Prefetched::Streaming(Prefixed {
                    pieces,
                    rest: None,
                    error: Some(e.into()),
                })
            }
        }
    }
    Prefetched::Streaming(Prefixed {
        pieces,
        rest: Some(body),
        error: None,
    })
}

/// A whole request body, replayable: [`ReplayBody::again`] gives a fresh
/// copy for the next attempt.
#[derive(Debug, Clone)]
pub struct ReplayBody {
    pieces: std::sync::Arc<[Piece]>,
    next: usize,
    len: u64,
}

impl ReplayBody {
    fn new(pieces: VecDeque<Piece>) -> Self {
        let len = pieces
            .iter()
            .map(|p| match p {
                Piece::Data(d) => d.len() as u64,
                Piece::Trailers(_) => 0,
            })
            .sum();
        Self {
            pieces: pieces.into_iter().collect(),
            next: 0,
            len,
        }
    }

    /// A copy from the start for the next attempt: a reference count, no
    /// allocation or copy (calls on the hot path pay nothing for being
    /// replayable).
    pub fn again(&self) -> Self {
        Self {
            pieces: self.pieces.clone(),
            next: 0,
            len: self.len,
        }
    }
}

fn frame_of(piece: Piece) -> Frame<Bytes> {
    match piece {
        Piece::Data(d) => Frame::data(d),
        Piece::Trailers(t) => Frame::trailers(t),
    }
}

fn next_piece(pieces: &mut VecDeque<Piece>) -> Option<Frame<Bytes>> {
    pieces.pop_front().map(frame_of)
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let piece = self.pieces.get(self.next).cloned();
        self.next += 1;
        Poll::Ready(piece.map(|p| Ok(frame_of(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.pieces.len()
    }

    fn size_hint(&self) -> SizeHint {
        // What is left to send.
        let sent: u64 = self.pieces[..self.next.min(self.pieces.len())]
            .iter()
            .map(|p| match p {
                Piece::Data(d) => d.len() as u64,
                Piece::Trailers(_) => 0,
            })
            .sum();
        SizeHint::with_exact(self.len - sent)
    }
}

/// The frames already taken, then the rest of the body.
pub struct Prefixed<B> {
    pieces: VecDeque<Piece>,
    rest: Option<B>,
    error: Option<BoxError>,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = next_piece(&mut self.pieces) {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn collect<B: Body<Data = Bytes> + Unpin>(body: B) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { body.collect().await.unwrap().to_bytes().to_vec() })
    }

    #[test]
    fn a_body_that_is_all_there_is_replayable_any_number_of_times() {
        let Prefetched::Complete(body) = prefetch(Full::new(Bytes::from_static(b"hello")), 1024)
        else {
            panic!("a full body is complete");
        };
        assert_eq!(collect(body.again()), b"hello");
        assert_eq!(collect(body.again()), b"hello");
        assert_eq!(body.size_hint().exact(), Some(5));
    }

    #[test]
    fn an_empty_body_is_replayable() {
        let empty = http_body_util::Empty::<Bytes>::new();
        assert!(matches!(prefetch(empty, 0), Prefetched::Complete(_)));
    }

    #[test]
    fn a_body_still_arriving_is_sent_once_with_nothing_lost() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"ab"))))
            .unwrap();
        let body = StreamBody::new(tokio_stream_from(rx));
        let Prefetched::Streaming(rest) = prefetch(body, 1024) else {
            panic!("the body has not ended");
        };
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"cd"))))
            .unwrap();
        drop(tx);
        assert_eq!(collect(rest), b"abcd");
    }

    #[test]
    fn a_body_over_the_bound_is_not_replayable() {
        let big = Full::new(Bytes::from(vec![7u8; 100]));
        // Full delivers its one frame, which exceeds the bound; the end is
        // seen after it, so it is complete only when the bound allows it.
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..3)
            .map(|_| Ok(Frame::data(Bytes::from(vec![1u8; 100]))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let Prefetched::Streaming(rest) = prefetch(body, 150) else {
            panic!("300 bytes exceed a 150-byte bound");
        };
        assert_eq!(collect(rest).len(), 300);
        assert!(matches!(prefetch(big, 1024), Prefetched::Complete(_)));
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
