//! Body wrappers that watch a body go by without buffering it: byte counts,
//! the gRPC status in trailers, and the moment it ends — for close records.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::admission::Admitted;
use crate::probes::stages::Step;

/// Counts the data bytes of a body into a shared counter. Made only from
/// an [`Admitted`] stream ([`Counted::request`]) or inside an
/// [`AuditedBody`], so a `Counted` body is one that may be forwarded.
pub struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    /// A caller's request body, counted into `admitted`'s close record.
    pub fn request(inner: B, admitted: &mut Admitted) -> Self {
        let (body, count) = Self::new(inner);
        admitted.count_in(count);
        body
    }

    fn new(inner: B) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose end — complete, failed or abandoned — closes the stream's
/// audit trail, with the gRPC status from its trailers if any.
pub struct AuditedBody<B: Body<Data = Bytes> + Unpin> {
    inner: Counted<B>,
    audit: Option<Admitted>,
}

impl<B: Body<Data = Bytes> + Unpin> AuditedBody<B> {
    /// Wraps `inner`; the audit's close record is written when this ends.
    pub fn new(inner: B, mut audit: Admitted) -> Self {
        let (inner, count) = Counted::new(inner);
        audit.count_out(count);
        Self {
            inner,
            audit: Some(audit),
        }
    }

    /// Ends the trail with `error` before the body was sent (its head
    /// could not be): the close record says why, not "cancelled".
    pub fn fail(mut self, error: String) {
        self.finish(Some(error));
    }

    /// Marks a step of the stream this body ends ([`Admitted::mark`]).
    pub fn mark(&mut self, step: Step) {
        if let Some(audit) = self.audit.as_mut() {
            audit.mark(step);
        }
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(mut audit) = self.audit.take() {
            audit.mark(Step::Finished);
            if error.is_some() {
                audit.ending_mut().error = error;
            }
            drop(audit);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Drop for AuditedBody<B> {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            // An empty body is never polled: it ended complete.
            self.finish(None);
        } else {
            // Dropped before its end: the receiver went away mid-stream.
            self.finish(Some("cancelled: the receiver stopped reading".into()));
        }
    }
}

impl<B> Body for AuditedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_data() && self.inner.is_end_stream() {
                    self.finish(None);
                } else if let Some(trailers) = frame.trailers_ref() {
                    let status = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    if let (Some(s), Some(audit)) = (status, self.audit.as_mut()) {
                        audit.ending_mut().grpc_status = Some(s);
                    }
                    // Trailers end a body; HTTP/2 servers do not poll past them.
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = e.to_string();
                self.finish(Some(msg));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

mod sealed {
    /// Implemented only here, so no other crate can declare a body
    /// forwardable.
    pub trait Sealed {}
}

/// A body the pumps may forward ([`super::send_head`], [`super::pump_body`]):
/// only [`Counted`] (a caller's request, made from an [`Admitted`]) and
/// [`AuditedBody`] (a response owning its [`Admitted`]) are, so a body of a
/// stream that was not admitted cannot be pumped. Sealed.
pub trait ForwardBody: Body<Data = Bytes> + Unpin + sealed::Sealed {}

impl<B: Body<Data = Bytes> + Unpin> sealed::Sealed for Counted<B> {}
impl<B: Body<Data = Bytes> + Unpin> ForwardBody for Counted<B> {}
impl<B> sealed::Sealed for AuditedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
}
impl<B> ForwardBody for AuditedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
}
