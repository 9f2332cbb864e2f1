//! The request body sent upstream: small bodies are kept (bounded) so a
//! failed attempt can be retried; larger ones stream straight through and are
//! never retried. Either way the size limit (413) and the idle timeout (408)
//! are enforced while streaming.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why reading the client's body failed.
#[derive(Debug)]
pub enum BodyError {
    /// The client's connection failed mid-body.
    Client(hyper::Error),
    /// The body outgrew the listener's `max_request_body`.
    TooLarge,
    /// The client sent nothing of the body for `request_body_timeout`.
    Idle,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Client(e) => write!(f, "client body: {e}"),
            BodyError::TooLarge => f.write_str("request body over the size limit"),
            BodyError::Idle => f.write_str("request body idle timeout"),
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

/// The body of one upstream attempt. Kept small (48 bytes): hyper's
/// HTTP/1.1 client queues requests by value in blocks of 32 that each
/// upstream connection allocates when it opens, so every byte here is 32
/// bytes of every upstream connection. The parts most requests lack (a
/// streamed rest, trailers) are boxed.
pub struct UpstreamBody {
    prefix: Option<Bytes>,
    trailers: Option<Box<HeaderMap>>,
    rest: Option<Box<Rest>>,
}

/// The part of a streamed body still to come from the client, with the
/// limits that apply to it.
struct Rest {
    body: Incoming,
    remaining_limit: u64,
    /// Set when the body fails on the client's side (a kept body was
    /// checked whole and has none).
    fault: StreamFault,
    idle: IdleTimer,
}

/// Why a streamed body failed on the client's side, read after the attempt
/// so the client gets 413 or 408 rather than the 502 of a failed upstream
/// request.
#[derive(Debug, Clone, Default)]
pub struct StreamFault(Arc<AtomicU8>);

const FAULT_TOO_LARGE: u8 = 1;
const FAULT_IDLE: u8 = 2;

impl StreamFault {
    fn record(&self, e: &BodyError) {
        let code = match e {
            BodyError::TooLarge => FAULT_TOO_LARGE,
            BodyError::Idle => FAULT_IDLE,
            BodyError::Client(_) => return,
        };
        self.0.store(code, Ordering::Relaxed);
    }

    /// [`BodyError::TooLarge`] or [`BodyError::Idle`] if the stream failed so.
    pub fn get(&self) -> Option<BodyError> {
        match self.0.load(Ordering::Relaxed) {
            FAULT_TOO_LARGE => Some(BodyError::TooLarge),
            FAULT_IDLE => Some(BodyError::Idle),
            _ => None,
        }
    }
}

/// The request body idle timeout: armed when a read finds nothing to take,
/// disarmed by the next frame, so it measures the client's silence and not
/// the time an upstream took to ask for more. The timer is allocated on the
/// first wait only: a body already in the buffer costs no timer.
#[derive(Debug)]
struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    fn new(limit: Duration) -> Self {
        IdleTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// Called when the body is pending: whether the limit has passed since
    /// the wait began.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            // A limit too far out to add is no limit.
            let Some(deadline) = Instant::now().checked_add(self.limit) else {
                return false;
            };
            match self.sleep.as_mut() {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// The next frame of `body`, or [`BodyError::Idle`] after `limit` of
    /// silence.
    fn poll_frame(
        &mut self,
        body: &mut Incoming,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.disarm();
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Client)))
            }
            Poll::Pending if self.poll_expired(cx) => Poll::Ready(Some(Err(BodyError::Idle))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl PreparedBody {
    /// Reads up to `replay_limit` bytes: a body that ends within it becomes
    /// replayable; otherwise what was read is sent first and the rest
    /// streams. `max_body` is enforced either way: here as
    /// [`BodyError::TooLarge`], while streaming through the
    /// [`PreparedBody::fault`], so the caller can answer 413; the same for
    /// `idle`, the longest silence between two pieces of the body (408).
    pub async fn prepare(
        mut body: Incoming,
        replay_limit: u64,
        max_body: u64,
        idle: Duration,
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
                IdleTimer::new(idle),
            )));
        }
        let mut buf = BytesMut::new();
        let mut timer = IdleTimer::new(idle);
        loop {
            let frame = std::future::poll_fn(|cx| timer.poll_frame(&mut body, cx)).await;
            let frame = match frame {
                None => {
                    return Ok(PreparedBody::Replayable {
                        data: buf.freeze(),
                        trailers: None,
                    })
                }
                Some(f) => f?,
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
                            prefix, body, max_body, timer,
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

    /// Set when the streamed body outgrows the limit or goes idle
    /// mid-exchange (the attempt then fails, and the client gets 413 or 408,
    /// not a 502); `None` for a kept body, which cannot.
    pub fn fault(&self) -> Option<StreamFault> {
        match self {
            PreparedBody::Streaming(b) => b.rest.as_ref().map(|r| r.fault.clone()),
            _ => None,
        }
    }

    /// Whether another attempt can be sent after this one.
    pub fn is_replayable(&self) -> bool {
        matches!(self, PreparedBody::Replayable { .. })
    }

    /// A copy for a mirror when the body was kept whole and is at most
    /// `limit` bytes; `None` for a streamed (larger) body, which cannot be
    /// copied without slowing the request it belongs to.
    pub fn copy_within(&self, limit: u64) -> Option<UpstreamBody> {
        match self {
            PreparedBody::Replayable { data, trailers } if data.len() as u64 <= limit => {
                let mut copy = PreparedBody::Replayable {
                    data: data.clone(),
                    trailers: trailers.clone(),
                };
                Some(copy.attempt())
            }
            _ => None,
        }
    }

    /// The body for one attempt: a cheap copy when replayable; the stream
    /// itself (taken, leaving [`PreparedBody::Spent`]) otherwise.
    pub fn attempt(&mut self) -> UpstreamBody {
        match self {
            PreparedBody::Replayable { data, trailers } => UpstreamBody {
                prefix: (!data.is_empty()).then(|| data.clone()),
                trailers: trailers.clone().map(Box::new),
                rest: None,
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
    fn stream(prefix: Bytes, body: Incoming, max_body: u64, idle: IdleTimer) -> Self {
        let rest = Rest {
            body,
            remaining_limit: max_body.saturating_sub(prefix.len() as u64),
            fault: StreamFault::default(),
            idle,
        };
        UpstreamBody {
            prefix: (!prefix.is_empty()).then_some(prefix),
            trailers: None,
            rest: Some(Box::new(rest)),
        }
    }

    /// No body.
    pub fn empty() -> Self {
        UpstreamBody {
            prefix: None,
            trailers: None,
            rest: None,
        }
    }
}

impl Rest {
    /// Records `e` for [`PreparedBody::fault`] and hands it on.
    fn fail(&self, e: BodyError) -> BodyError {
        self.fault.record(&e);
        e
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
        let this = &mut *self;
        let Some(rest) = this.rest.as_deref_mut() else {
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))));
        };
        match rest.idle.poll_frame(&mut rest.body, cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > rest.remaining_limit {
                        return Poll::Ready(Some(Err(rest.fail(BodyError::TooLarge))));
                    }
                    rest.remaining_limit -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(rest.fail(e)))),
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
            && self.rest.as_ref().is_none_or(|r| r.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(prefix),
            Some(rest) => {
                let h = rest.body.size_hint();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's HTTP/1.1 client keeps room for 32 queued requests per
    /// upstream connection from the moment it opens: a byte of the body
    /// type is 32 bytes of every upstream connection.
    #[test]
    fn an_upstream_request_is_small() {
        assert!(std::mem::size_of::<UpstreamBody>() <= 48);
        assert!(std::mem::size_of::<http::Request<UpstreamBody>>() <= 272);
    }
}
