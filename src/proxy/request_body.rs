//! The request body sent upstream: small bodies are kept (bounded) so a
//! failed attempt can be retried; larger ones stream straight through and are
//! never retried. Either way the size limit (413) is enforced while streaming.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why reading the client's body failed.
#[derive(Debug)]
pub enum BodyError {
    /// The client's connection failed mid-body.
    Client(hyper::Error),
    /// The body outgrew the listener's `max_request_body`.
    TooLarge,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Client(e) => write!(f, "client body: {e}"),
            BodyError::TooLarge => f.write_str("request body over the size limit"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A body the retry loop can send again (`Replayable`) or only once.
pub enum PreparedBody {
    /// Fully read (at most the replay buffer): every attempt gets a copy.
    Replayable {
        /// The data.
        data: Bytes,
        /// Request trailers, if any.
        trailers: Option<HeaderMap>,
    },
    /// Too large to keep: streamed once.
    Streaming(UpstreamBody),
    /// A streamed body already handed to an attempt: it cannot be sent again.
    Spent,
}

/// The body of one upstream attempt.
pub struct UpstreamBody {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
    trailers: Option<HeaderMap>,
    remaining_limit: u64,
    /// Set when a streamed body trips the limit; only streamed bodies have
    /// one (a kept body was checked whole), which saves an allocation per
    /// attempt.
    too_large: Option<Arc<AtomicBool>>,
}

impl PreparedBody {
    /// Reads up to `replay_limit` bytes: a body that ends within it becomes
    /// replayable; otherwise what was read is sent first and the rest
    /// streams. `max_body` is enforced either way: here as
    /// [`BodyError::TooLarge`], while streaming through the flag of
    /// [`PreparedBody::too_large_flag`], so the caller can answer 413.
    pub async fn prepare(
        mut body: Incoming,
        replay_limit: u64,
        max_body: u64,
    ) -> Result<PreparedBody, BodyError> {
        if body.is_end_stream() {
            return Ok(PreparedBody::Replayable {
                data: Bytes::new(),
                trailers: None,
            });
        }
        let known = body.size_hint().exact();
        if known.is_some_and(|n| n > max_body) {
            return Err(BodyError::TooLarge);
        }
        if known.is_some_and(|n| n > replay_limit) {
            return Ok(PreparedBody::Streaming(UpstreamBody::stream(
                Bytes::new(),
                body,
                max_body,
            )));
        }
        let mut buf = BytesMut::new();
        loop {
            let frame = match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => {
                    return Ok(PreparedBody::Replayable {
                        data: buf.freeze(),
                        trailers: None,
                    })
                }
                Some(f) => f.map_err(BodyError::Client)?,
            };
            match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > max_body {
                        return Err(BodyError::TooLarge);
                    }
                    if buf.len() as u64 > replay_limit {
                        let prefix = buf.freeze();
                        return Ok(PreparedBody::Streaming(UpstreamBody::stream(
                            prefix, body, max_body,
                        )));
                    }
                }
                Err(frame) => {
                    return Ok(PreparedBody::Replayable {
                        data: buf.freeze(),
                        trailers: frame.into_trailers().ok(),
                    })
                }
            }
        }
    }

    /// Set when the streamed body outgrows the limit mid-exchange (the
    /// attempt then fails, and the client gets 413, not a 502); `None` for a
    /// kept body, which cannot.
    pub fn too_large_flag(&self) -> Option<Arc<AtomicBool>> {
        match self {
            PreparedBody::Streaming(b) => b.too_large.clone(),
            _ => None,
        }
    }

    /// Whether another attempt can be sent after this one.
    pub fn is_replayable(&self) -> bool {
        matches!(self, PreparedBody::Replayable { .. })
    }

    /// The body for one attempt: a cheap copy when replayable; the stream
    /// itself (taken, leaving [`PreparedBody::Spent`]) otherwise.
    pub fn attempt(&mut self) -> UpstreamBody {
        match self {
            PreparedBody::Replayable { data, trailers } => UpstreamBody {
                prefix: (!data.is_empty()).then(|| data.clone()),
                rest: None,
                trailers: trailers.clone(),
                remaining_limit: u64::MAX,
                too_large: None,
            },
            PreparedBody::Streaming(_) | PreparedBody::Spent => {
                match std::mem::replace(self, PreparedBody::Spent) {
                    PreparedBody::Streaming(b) => b,
                    _ => UpstreamBody::empty(),
                }
            }
        }
    }
}

impl UpstreamBody {
    fn stream(prefix: Bytes, rest: Incoming, max_body: u64) -> Self {
        UpstreamBody {
            remaining_limit: max_body.saturating_sub(prefix.len() as u64),
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest: Some(rest),
            trailers: None,
            too_large: Some(Arc::new(AtomicBool::new(false))),
        }
    }

    /// No body.
    pub fn empty() -> Self {
        UpstreamBody {
            prefix: None,
            rest: None,
            trailers: None,
            remaining_limit: u64::MAX,
            too_large: None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.remaining_limit {
                        if let Some(flag) = &self.too_large {
                            flag.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                    self.remaining_limit -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + prefix);
                if let Some(u) = h.upper() {
                    out.set_upper(u + prefix);
                }
                out
            }
        }
    }
}
